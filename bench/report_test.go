package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWeightedQuantile(t *testing.T) {
	t.Parallel()
	s := time.Second
	for _, tc := range []struct {
		name string
		xs   []weighted
		p    float64
		want time.Duration
	}{
		{"none", nil, 0.5, 0},
		{"one value", []weighted{{3 * s, 7}}, 0.99, 3 * s},
		{"unweighted median", []weighted{{3 * s, 1}, {1 * s, 1}, {2 * s, 1}, {4 * s, 1}}, 0.5, 2 * s},
		{"weight moves the median", []weighted{{1 * s, 1}, {5 * s, 9}}, 0.5, 5 * s},
		{"p99 of a heavy head", []weighted{{1 * s, 99}, {9 * s, 1}}, 0.99, 1 * s},
		{"p99 of a heavier tail", []weighted{{1 * s, 98}, {9 * s, 2}}, 0.99, 9 * s},
		{"negative lags sort first", []weighted{{2 * s, 5}, {-1 * s, 5}}, 0.5, -1 * s},
		{"p0 is the smallest", []weighted{{2 * s, 1}, {1 * s, 1}}, 0, 1 * s},
		{"p100 is the largest", []weighted{{2 * s, 1}, {1 * s, 1}}, 1, 2 * s},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, weightedQuantile(tc.xs, tc.p))
		})
	}
}

var (
	m1 = time.Date(2026, 11, 25, 12, 1, 0, 0, time.UTC)
	m2 = m1.Add(time.Minute)
)

func sampleReport(reads *Reads) Report {
	return Report{
		Influencers: 1000,
		Minutes: []Minute{
			{Minute: m1, Stored: 998, Missed: 2, NotStored: 0, AllStored: true, AllStoredAfter: 1450 * time.Millisecond},
			{Minute: m2, Stored: 990, Missed: 0, NotStored: 10},
		},
		FreshnessP50: 800 * time.Millisecond,
		FreshnessP99: -300 * time.Millisecond,
		Reads:        reads,
	}
}

func TestReportWriteText(t *testing.T) {
	t.Parallel()
	const table = `  minute  stored  missed  not stored  all stored at (s after minute end)
   12:01     998       2           0                                +1.4
   12:02     990       0          10                               never
sustained 17 samples/s stored (1988 of 2000 expected, 99.400%), 2 missed
freshness (sample commit time minus end of its minute): p50 +0.8s, p99 -0.3s
`
	for _, tc := range []struct {
		name  string
		reads *Reads
		want  string
	}{
		{"without reads", nil, table},
		{"reads that got no answer", &Reads{Errors: 3}, table},
		{"with reads", &Reads{
			Influencer: Latency{N: 12000, P50: 123456 * time.Nanosecond, P99: 2345678 * time.Nanosecond},
			Stats:      Latency{N: 1300, P50: 3 * time.Millisecond, P99: 40 * time.Millisecond},
			Errors:     4,
		}, table + "reads while ingesting: GET /api/v1/influencers/{pk} n=12000 p50 120µs p99 2.35ms; GET /api/v1/stats n=1300 p50 3ms p99 40ms; errors 4\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			require.NoError(t, sampleReport(tc.reads).WriteText(&buf))
			assert.Equal(t, tc.want, buf.String())
		})
	}
}

func TestReportTotals(t *testing.T) {
	t.Parallel()
	r := sampleReport(nil)
	assert.Equal(t, 1988, r.Stored())
	assert.Equal(t, 2, r.Missed())
	assert.Equal(t, 2000, r.Expected())
	assert.InDelta(t, 1988.0/120, r.SamplesPerSecond(), 1e-9)
	assert.Zero(t, Report{Influencers: 5}.SamplesPerSecond(), "no minutes")
}

func TestReportWriteJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, sampleReport(&Reads{
		Influencer: Latency{N: 10, P50: time.Millisecond, P99: 2 * time.Millisecond},
		Stats:      Latency{N: 1, P50: 5 * time.Millisecond, P99: 5 * time.Millisecond},
		Errors:     1,
	}).WriteJSON(&buf))
	assert.JSONEq(t, `{
		"influencers": 1000,
		"minutes": [
			{"minute": "2026-11-25T12:01:00Z", "stored": 998, "missed": 2, "not_stored": 0, "all_stored_after_s": 1.45},
			{"minute": "2026-11-25T12:02:00Z", "stored": 990, "missed": 0, "not_stored": 10, "all_stored_after_s": null}
		],
		"stored": 1988, "missed": 2, "expected": 2000, "samples_per_second": 16.566666666666666,
		"freshness_p50_s": 0.8, "freshness_p99_s": -0.3,
		"reads": {
			"influencer": {"n": 10, "p50_s": 0.001, "p99_s": 0.002},
			"stats": {"n": 1, "p50_s": 0.005, "p99_s": 0.005},
			"errors": 1
		}
	}`, buf.String())

	buf.Reset()
	require.NoError(t, sampleReport(nil).WriteJSON(&buf))
	assert.NotContains(t, buf.String(), `"reads"`, "no read load, no reads")
}
