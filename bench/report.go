package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Dur is a duration that is written to JSON in seconds.
type Dur time.Duration

// MarshalJSON writes d in seconds.
func (d Dur) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(d).Seconds(), 'g', -1, 64), nil
}

// D is d as a time.Duration.
func (d Dur) D() time.Duration { return time.Duration(d) }

// MinuteRow is what a wiring stored for one measured minute.
type MinuteRow struct {
	Minute    time.Time        `json:"minute"` // the samples' minute, not the commit time
	Stored    int64            `json:"stored"`
	Missed    int64            `json:"missed"`
	ByClass   map[string]int64 `json:"missed_by_class"`
	NotStored int64            `json:"not_stored"` // neither stored nor missed
	// StoredShare is Stored of the wiring's influencers.
	StoredShare float64 `json:"stored_share"`
	// CompleteAfter is when every influencer was stored or missed, after the
	// end of the minute; nil: never.
	CompleteAfter *Dur `json:"complete_after_s"`
	// Freshness of the minute's samples (commit time − end of the minute);
	// 0 when none was committed.
	FreshnessP50 Dur `json:"freshness_p50_s"`
	FreshnessP99 Dur `json:"freshness_p99_s"`
}

// Latency summarises the requests to one endpoint.
type Latency struct {
	N   int64 `json:"n"` // answered requests (200 or 404)
	P50 Dur   `json:"p50_s"`
	P99 Dur   `json:"p99_s"`
}

// Reads is the read load that ran while the pipeline ingested.
type Reads struct {
	Influencer Latency `json:"influencer"` // GET /api/v1/influencers/{pk}
	Stats      Latency `json:"stats"`      // GET /api/v1/stats
	// Database is a primary-key lookup straight on a Postgres wiring's
	// database (dbLookupSQL), the floor under the API's reads there.
	Database *Latency `json:"database,omitempty"`
	Errors   int64    `json:"errors"` // neither 200 nor 404, or failed in transport (or a failed database lookup)
}

// Process roles in a report.
const (
	RolePipeline  = "pipeline"
	RoleSimulator = "simulator"
	RoleBroker    = "broker"
	RolePostgres  = "postgres"
)

// ProcRow is one process (or the PostgreSQL server) over the measured minutes.
type ProcRow struct {
	Name         string  `json:"name"`
	Role         string  `json:"role"`
	CPU          Dur     `json:"cpu_s"`
	CPUPerSample Dur     `json:"cpu_per_sample_s"` // per stored sample
	Cores        float64 `json:"cores"`            // CPU / wall time
	// PeakRSS: VmHWM of a process; for PostgreSQL the largest sum of its
	// processes' private memory (RssAnon) at one sample (shared buffers excluded).
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// Check is how the stored values were checked against the simulator.
type Check struct {
	// Source: "database" (CheckDB after the run) or "meter" (each committed
	// batch compared in the pipeline process; the memory store keys its
	// timeline by (pk, minute), so it cannot hold a duplicate).
	Source       string `json:"source"`
	Checked      int64  `json:"checked"` // samples compared
	Wrong        int64  `json:"wrong"`
	Duplicates   int64  `json:"duplicates"`
	Unaccounted  int64  `json:"unaccounted"` // (pk, minute) neither stored nor missed in the measured minutes
	Both         int64  `json:"stored_and_missed"`
	BadSummaries int64  `json:"bad_summaries"`
}

// OK reports whether no invariant is broken (the share stored aside).
func (c Check) OK() bool {
	return c.Wrong == 0 && c.Duplicates == 0 && c.Both == 0 && c.BadSummaries == 0
}

// WiringReport is the outcome of one wiring.
type WiringReport struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Error       string      `json:"error,omitempty"`
	Influencers int         `json:"influencers"`
	Minutes     []MinuteRow `json:"minutes"`
	// Freshness: sample commit time minus the end of the sample's minute,
	// over every sample stored for the measured minutes.
	FreshnessP50 Dur       `json:"freshness_p50_s"`
	FreshnessP99 Dur       `json:"freshness_p99_s"`
	Reads        *Reads    `json:"reads,omitempty"`
	Processes    []ProcRow `json:"processes"`
	Check        *Check    `json:"check,omitempty"`
	// Rates relative to the limits (0: limit not measured).
	OfSimulatorLimit float64 `json:"of_simulator_limit"`
	OfStoreLimit     float64 `json:"of_store_limit"`
	// Capacity is a capacity scenario's outcome; nil for the other wirings.
	Capacity *CapacityReport `json:"capacity,omitempty"`
}

// CapacityReport is how a capacity scenario did against the simulator's
// capacity and, for the overload, against the sustainable scenario.
type CapacityReport struct {
	Capacity    float64 `json:"capacity_per_s"` // the simulator's requests per second (simulate --capacity)
	Load        float64 `json:"load"`           // influencers per minute / (capacity × 60 s)
	SamplesPerS float64 `json:"samples_per_s"`  // stored samples per second over the measured minutes
	OfCapacity  float64 `json:"of_capacity"`    // SamplesPerS / Capacity
	// Baseline is the scenario this one's rate is compared with; "" = none.
	Baseline string `json:"baseline,omitempty"`
	// BaselineSamplesPerS is the baseline's stored rate in the same run, and
	// OfBaseline SamplesPerS / BaselineSamplesPerS; both 0 when the baseline
	// did not run or stored nothing.
	BaselineSamplesPerS float64 `json:"baseline_samples_per_s,omitempty"`
	OfBaseline          float64 `json:"of_baseline,omitempty"`
	// Target is the least OfBaseline of graceful degradation (0: no target).
	Target float64 `json:"target,omitempty"`
}

// Verdict is "OK" when the scenario's rate is at least Target of its
// baseline's, "BELOW TARGET" when it is not, "-" without a target and "no
// baseline" when the baseline did not run.
func (c CapacityReport) Verdict() string {
	switch {
	case c.Baseline == "" || c.Target == 0:
		return "-"
	case c.BaselineSamplesPerS == 0:
		return "no baseline"
	case c.OfBaseline >= c.Target:
		return "OK"
	}
	return "BELOW TARGET"
}

// capacityReport is the capacity outcome of scenario w's report wr against
// a simulator of capacity requests per second (the baseline filled in later
// by relateBaselines).
func capacityReport(wr WiringReport, w Wiring, capacity float64) *CapacityReport {
	c := &CapacityReport{Capacity: capacity, SamplesPerS: wr.SamplesPerSecond(), Baseline: w.Baseline}
	if capacity > 0 {
		c.Load = float64(wr.Influencers) / (capacity * 60)
		c.OfCapacity = c.SamplesPerS / capacity
	}
	if w.Baseline != "" {
		c.Target = GracefulTarget
	}
	return c
}

// relateBaselines sets each capacity report's baseline rate and ratio from
// the report of its baseline scenario among ws (none that failed without
// a measured minute).
func relateBaselines(ws []WiringReport) {
	rates := map[string]float64{}
	for _, wr := range ws {
		if wr.Capacity != nil && len(wr.Minutes) > 0 {
			rates[wr.Name] = wr.Capacity.SamplesPerS
		}
	}
	for _, wr := range ws {
		c := wr.Capacity
		if c == nil || c.Baseline == "" {
			continue
		}
		c.BaselineSamplesPerS, c.OfBaseline = 0, 0
		if base := rates[c.Baseline]; base > 0 {
			c.BaselineSamplesPerS, c.OfBaseline = base, c.SamplesPerS/base
		}
	}
}

// Stored is the samples stored for the measured minutes.
func (r WiringReport) Stored() int64 {
	return sumRows(r.Minutes, func(m MinuteRow) int64 { return m.Stored })
}

// Missed is the pks recorded missed for the measured minutes.
func (r WiringReport) Missed() int64 {
	return sumRows(r.Minutes, func(m MinuteRow) int64 { return m.Missed })
}

// Expected is one sample per influencer and measured minute.
func (r WiringReport) Expected() int64 { return int64(r.Influencers) * int64(len(r.Minutes)) }

// StoredShare is Stored / Expected (0 without minutes).
func (r WiringReport) StoredShare() float64 {
	if r.Expected() == 0 {
		return 0
	}
	return float64(r.Stored()) / float64(r.Expected())
}

// SamplesPerSecond is the sustained rate of stored samples.
func (r WiringReport) SamplesPerSecond() float64 {
	if len(r.Minutes) == 0 {
		return 0
	}
	return float64(r.Stored()) / float64(len(r.Minutes)*60)
}

// PipelineCPUPerSample is the CPU per stored sample of the pipeline's own
// processes (not the simulator, broker or database).
func (r WiringReport) PipelineCPUPerSample() time.Duration {
	var d time.Duration
	for _, p := range r.Processes {
		if p.Role == RolePipeline {
			d += p.CPUPerSample.D()
		}
	}
	return d
}

func sumRows(ms []MinuteRow, f func(MinuteRow) int64) int64 {
	var n int64
	for _, m := range ms {
		n += f(m)
	}
	return n
}

// Machine is where the benchmark ran.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Host      string `json:"host"`
}

// Result is a whole benchmark: the limits, then every wiring.
type Result struct {
	Started     time.Time      `json:"started"`
	Machine     Machine        `json:"machine"`
	Influencers int            `json:"influencers"`
	Minutes     int            `json:"minutes"`
	ReadRate    float64        `json:"read_rate"`
	Limits      Limits         `json:"limits"`
	Wirings     []WiringReport `json:"wirings"`
}

// WriteText writes the result as tables: the limits, every measured
// minute of every wiring, one summary row per wiring, and the processes.
func (r Result) WriteText(w io.Writer) error {
	l := r.Limits
	fmt.Fprintf(w, "limits (%s each): simulator %.0f GET/s (p50 %s, p99 %s, %d errors, %s CPU/GET); store writes (%d-sample batches, %d writers): memory %.0f samples/s",
		l.Duration.D(), l.SimulatorGETs, roundLat(l.SimulatorP50), roundLat(l.SimulatorP99), l.SimulatorErrors, micros(l.SimulatorCPUPerGET),
		WriteBatch, WriteWorkers, l.MemoryWrites)
	if l.PostgresWrites > 0 {
		fmt.Fprintf(w, ", Postgres %.0f samples/s (server %s CPU/sample)", l.PostgresWrites, micros(l.PostgresServerCPUPerSample))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "wiring\tminute\tstored\tstored %\tmissed\tnot stored\tcomplete at\tfresh p50/p99\tmissed by class")
	for _, wr := range r.Wirings {
		for _, m := range wr.Minutes {
			done := "never"
			if m.CompleteAfter != nil {
				done = fmt.Sprintf("%+.1fs", m.CompleteAfter.D().Seconds())
			}
			fresh := "-"
			if m.Stored > 0 {
				fresh = fmt.Sprintf("%+.1fs/%+.1fs", m.FreshnessP50.D().Seconds(), m.FreshnessP99.D().Seconds())
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.3f%%\t%d\t%d\t%s\t%s\t%s\n", wr.Name, m.Minute.Format("15:04"), m.Stored, 100*m.StoredShare,
				m.Missed, m.NotStored, done, fresh, strings.Join(ClassList(m.ByClass), " "))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "wiring\tstored\tsamples/s\tfresh p50/p99\tGET influencer p50/p99\tGET stats p50/p99\tdb lookup p50/p99\tpipeline CPU/sample\tof sim limit\tof store limit\tcheck")
	for _, wr := range r.Wirings {
		if wr.Error != "" && len(wr.Minutes) == 0 {
			fmt.Fprintf(tw, "%s\tFAILED\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", wr.Name, wr.Error)
			continue
		}
		reads := [3]string{"-", "-", "-"}
		if rd := wr.Reads; rd != nil {
			reads = [3]string{latPair(rd.Influencer), latPair(rd.Stats), "-"}
			if rd.Database != nil {
				reads[2] = latPair(*rd.Database)
			}
			if rd.Errors > 0 {
				reads[1] += fmt.Sprintf(" (%d errors)", rd.Errors)
			}
		}
		fmt.Fprintf(tw, "%s\t%.3f%%\t%.0f\t%+.1fs/%+.1fs\t%s\t%s\t%s\t%s\t%.1f%%\t%.1f%%\t%s\n",
			wr.Name, 100*wr.StoredShare(), wr.SamplesPerSecond(), wr.FreshnessP50.D().Seconds(), wr.FreshnessP99.D().Seconds(),
			reads[0], reads[1], reads[2], micros(Dur(wr.PipelineCPUPerSample())), 100*wr.OfSimulatorLimit, 100*wr.OfStoreLimit, checkText(wr))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	if err := writeCapacity(w, r.Wirings); err != nil {
		return err
	}

	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "wiring\tprocess\trole\tCPU/sample\tcores\tpeak RSS")
	for _, wr := range r.Wirings {
		for _, p := range wr.Processes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%d MB\n", wr.Name, p.Name, p.Role, micros(p.CPUPerSample), p.Cores, p.PeakRSS>>20)
		}
	}
	return tw.Flush()
}

// writeCapacity writes the table of the capacity scenarios among ws, if
// any, and a blank line after it.
func writeCapacity(w io.Writer, ws []WiringReport) error {
	if !slices.ContainsFunc(ws, func(wr WiringReport) bool { return wr.Capacity != nil }) {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tcapacity\tload\tinfluencers\tstored\tsamples/s\tof capacity\tof baseline\tgraceful (target)")
	for _, wr := range ws {
		c := wr.Capacity
		if c == nil {
			continue
		}
		base := "-"
		if c.BaselineSamplesPerS > 0 {
			base = fmt.Sprintf("%.1f%% of %s (%.0f/s)", 100*c.OfBaseline, c.Baseline, c.BaselineSamplesPerS)
		}
		verdict := c.Verdict()
		if c.Target > 0 {
			verdict += fmt.Sprintf(" (>= %.0f%%)", 100*c.Target)
		}
		fmt.Fprintf(tw, "%s\t%.0f/s\t%.2f\t%d\t%.3f%%\t%.0f\t%.1f%%\t%s\t%s\n", wr.Name, c.Capacity, c.Load, wr.Influencers,
			100*wr.StoredShare(), c.SamplesPerS, 100*c.OfCapacity, base, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

func checkText(wr WiringReport) string {
	c := wr.Check
	if c == nil {
		return "not checked"
	}
	verdict := "OK"
	if !c.OK() {
		verdict = "BROKEN"
	}
	s := fmt.Sprintf("%s (%s: %d values, %d wrong, %d dup, %d unaccounted", verdict, c.Source, c.Checked, c.Wrong, c.Duplicates, c.Unaccounted)
	if c.Both > 0 {
		s += fmt.Sprintf(", %d stored+missed", c.Both)
	}
	if c.Source == "database" {
		s += fmt.Sprintf(", %d bad summaries", c.BadSummaries)
	}
	if wr.Error != "" {
		s += "; error: " + wr.Error
	}
	return s + ")"
}

func latPair(l Latency) string {
	if l.N == 0 {
		return "-"
	}
	return roundLat(l.P50) + "/" + roundLat(l.P99)
}

func roundLat(d Dur) string {
	const unit = 10 * time.Microsecond
	return d.D().Round(unit).String()
}

// micros is d in µs, one decimal.
func micros(d Dur) string { return fmt.Sprintf("%.1fµs", float64(d.D())/float64(time.Microsecond)) }

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
	target, acc := int(math.Ceil(p*float64(total))), 0
	for _, x := range xs {
		acc += x.w
		if acc >= target {
			return x.v
		}
	}
	return 0
}

// WriteJSON writes the result as one indented JSON object (durations in
// seconds, times in RFC 3339).
func (r Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
