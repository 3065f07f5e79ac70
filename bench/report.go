package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// Minute is what the pipeline stored for one measured minute.
type Minute struct {
	Minute    time.Time // the minute (the samples' minute, not the commit time)
	Stored    int       // samples committed for it
	Missed    int       // pks recorded as missed for it
	NotStored int       // influencers neither stored nor missed
	// AllStored reports whether every influencer was stored or missed, and
	// AllStoredAfter when, after the end of the minute.
	AllStored      bool
	AllStoredAfter time.Duration
}

// Latency summarises the requests to one endpoint.
type Latency struct {
	N        int64 // answered requests (200 or 404)
	P50, P99 time.Duration
}

// Reads is the read load that ran while the pipeline ingested.
type Reads struct {
	Influencer Latency // GET /api/v1/influencers/{pk}
	Stats      Latency // GET /api/v1/stats
	Errors     int64   // neither 200 nor 404, or failed in transport
}

// Report is the outcome of a run over the measured minutes.
type Report struct {
	Influencers int
	Minutes     []Minute
	// Freshness is the distribution of sample commit time minus the end of
	// the sample's minute, over every stored sample.
	FreshnessP50, FreshnessP99 time.Duration
	Reads                      *Reads // nil: no read load
}

// Stored is the samples stored over the measured minutes.
func (r Report) Stored() int { return sumOf(r.Minutes, func(m Minute) int { return m.Stored }) }

// Missed is the pks recorded as missed over the measured minutes.
func (r Report) Missed() int { return sumOf(r.Minutes, func(m Minute) int { return m.Missed }) }

// Expected is one sample per influencer and measured minute.
func (r Report) Expected() int { return r.Influencers * len(r.Minutes) }

// SamplesPerSecond is the sustained rate of stored samples.
func (r Report) SamplesPerSecond() float64 {
	if len(r.Minutes) == 0 {
		return 0
	}
	return float64(r.Stored()) / float64(len(r.Minutes)*60)
}

func sumOf(ms []Minute, f func(Minute) int) int {
	n := 0
	for _, m := range ms {
		n += f(m)
	}
	return n
}

// WriteText writes the report as 'mockstagram bench' prints it: a table
// of the minutes, then the throughput, freshness and read lines.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tstored\tmissed\tnot stored\tall stored at (s after minute end)\t")
	for _, m := range r.Minutes {
		done := "never"
		if m.AllStored {
			done = fmt.Sprintf("%+.1f", m.AllStoredAfter.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", m.Minute.Format("15:04"), m.Stored, m.Missed, m.NotStored, done)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	stored, expected := r.Stored(), r.Expected()
	share := 0.0
	if expected > 0 {
		share = 100 * float64(stored) / float64(expected)
	}
	fmt.Fprintf(w, "sustained %.0f samples/s stored (%d of %d expected, %.3f%%), %d missed\n",
		r.SamplesPerSecond(), stored, expected, share, r.Missed())
	fmt.Fprintf(w, "freshness (sample commit time minus end of its minute): p50 %+.1fs, p99 %+.1fs\n",
		r.FreshnessP50.Seconds(), r.FreshnessP99.Seconds())
	if rd := r.Reads; rd != nil && rd.Influencer.N+rd.Stats.N > 0 {
		const unit = 10 * time.Microsecond
		_, err := fmt.Fprintf(w, "reads while ingesting: GET /api/v1/influencers/{pk} n=%d p50 %s p99 %s; GET /api/v1/stats n=%d p50 %s p99 %s; errors %d\n",
			rd.Influencer.N, rd.Influencer.P50.Round(unit), rd.Influencer.P99.Round(unit),
			rd.Stats.N, rd.Stats.P50.Round(unit), rd.Stats.P99.Round(unit), rd.Errors)
		return err
	}
	return nil
}

// The JSON form: times in RFC 3339, durations in seconds.
type (
	jsonReport struct {
		Influencers      int          `json:"influencers"`
		Minutes          []jsonMinute `json:"minutes"`
		Stored           int          `json:"stored"`
		Missed           int          `json:"missed"`
		Expected         int          `json:"expected"`
		SamplesPerSecond float64      `json:"samples_per_second"`
		FreshnessP50     float64      `json:"freshness_p50_s"`
		FreshnessP99     float64      `json:"freshness_p99_s"`
		Reads            *jsonReads   `json:"reads,omitempty"`
	}
	jsonMinute struct {
		Minute         time.Time `json:"minute"`
		Stored         int       `json:"stored"`
		Missed         int       `json:"missed"`
		NotStored      int       `json:"not_stored"`
		AllStoredAfter *float64  `json:"all_stored_after_s"` // null: never
	}
	jsonReads struct {
		Influencer jsonLatency `json:"influencer"`
		Stats      jsonLatency `json:"stats"`
		Errors     int64       `json:"errors"`
	}
	jsonLatency struct {
		N   int64   `json:"n"`
		P50 float64 `json:"p50_s"`
		P99 float64 `json:"p99_s"`
	}
)

// WriteJSON writes the report as one JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	out := jsonReport{
		Influencers: r.Influencers, Minutes: make([]jsonMinute, 0, len(r.Minutes)),
		Stored: r.Stored(), Missed: r.Missed(), Expected: r.Expected(), SamplesPerSecond: r.SamplesPerSecond(),
		FreshnessP50: r.FreshnessP50.Seconds(), FreshnessP99: r.FreshnessP99.Seconds(),
	}
	for _, m := range r.Minutes {
		jm := jsonMinute{Minute: m.Minute.UTC(), Stored: m.Stored, Missed: m.Missed, NotStored: m.NotStored}
		if m.AllStored {
			jm.AllStoredAfter = new(m.AllStoredAfter.Seconds())
		}
		out.Minutes = append(out.Minutes, jm)
	}
	if rd := r.Reads; rd != nil {
		lat := func(l Latency) jsonLatency { return jsonLatency{N: l.N, P50: l.P50.Seconds(), P99: l.P99.Seconds()} }
		out.Reads = &jsonReads{Influencer: lat(rd.Influencer), Stats: lat(rd.Stats), Errors: rd.Errors}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// weighted is a value that counts weight times.
type weighted struct {
	v time.Duration
	w int
}

// weightedQuantile is the smallest value at or below which at least
// p of the total weight lies (0 when there is none). It sorts xs.
func weightedQuantile(xs []weighted, p float64) time.Duration {
	slices.SortFunc(xs, func(a, b weighted) int { return cmp.Compare(a.v, b.v) })
	total := 0
	for _, x := range xs {
		total += x.w
	}
	target, acc := int(p*float64(total)), 0
	for _, x := range xs {
		acc += x.w
		if acc >= target {
			return x.v
		}
	}
	return 0
}
