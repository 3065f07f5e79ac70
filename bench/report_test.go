package bench

import (
	"bytes"
	"encoding/json"
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

func sampleResult() Result {
	return Result{
		Started:     m1.Add(-time.Minute),
		Machine:     Machine{CPUs: 2, GoVersion: "go1.26", Host: "box"},
		Influencers: 1000, Minutes: 2, ReadRate: 20,
		Limits: Limits{
			Duration: Dur(10 * time.Second), SimulatorGETs: 30000, SimulatorP50: Dur(time.Millisecond), SimulatorP99: Dur(4 * time.Millisecond),
			SimulatorCPUPerGET: Dur(25 * time.Microsecond), MemoryWrites: 500000, PostgresWrites: 40000, PostgresServerCPUPerSample: Dur(30 * time.Microsecond),
		},
		Wirings: []WiringReport{
			{
				Name: "kafka-pg", Description: "run, Kafka (kfake), Postgres store", Influencers: 1000,
				Minutes: []MinuteRow{
					{Minute: m1, Stored: 998, Missed: 2, ByClass: map[string]int64{"timeout": 1, "expired": 1}, CompleteAfter: new(Dur(1450 * time.Millisecond))},
					{Minute: m2, Stored: 990, NotStored: 10, ByClass: map[string]int64{}},
				},
				FreshnessP50: Dur(800 * time.Millisecond), FreshnessP99: Dur(-300 * time.Millisecond),
				Reads: &Reads{Influencer: Latency{N: 2160, P50: Dur(1234567), P99: Dur(20 * time.Millisecond)}, Stats: Latency{N: 240, P50: Dur(3 * time.Millisecond), P99: Dur(9 * time.Millisecond)}},
				Processes: []ProcRow{
					{Name: "kafka-pg-run", Role: RolePipeline, CPU: Dur(time.Second), CPUPerSample: Dur(503 * time.Microsecond), Cores: 0.25, PeakRSS: 200 << 20},
					{Name: "postgres", Role: RolePostgres, CPU: Dur(time.Second / 2), CPUPerSample: Dur(251500 * time.Nanosecond), Cores: 0.125, PeakRSS: 50 << 20},
				},
				Check:            &Check{Source: "database", Checked: 2100, Duplicates: 0, Unaccounted: 10},
				OfSimulatorLimit: 0.000552, OfStoreLimit: 0.000414,
			},
			{Name: "pg-pg", Description: "run, Postgres broker, Postgres store", Influencers: 1000, Error: "pg-pg-run exited"},
		},
	}
}

func TestResultWriteText(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, sampleResult().WriteText(&buf))
	assert.Equal(t, `limits (10s each): simulator 30000 GET/s (p50 1ms, p99 4ms, 0 errors, 25.0µs CPU/GET); store writes (1000-sample batches, 4 writers): memory 500000 samples/s, Postgres 40000 samples/s (server 30.0µs CPU/sample)

wiring    minute  stored  missed  not stored  complete at  missed by class
kafka-pg  12:01   998     2       0           +1.4s        expired:1 timeout:1
kafka-pg  12:02   990     0       10          never        

wiring    stored   samples/s  fresh p50/p99  GET influencer p50/p99  GET stats p50/p99  pipeline CPU/sample  of sim limit  of store limit  check
kafka-pg  99.400%  17         +0.8s/-0.3s    1.23ms/20ms             3ms/9ms            503.0µs              0.1%          0.0%            OK (database: 2100 values, 0 wrong, 0 dup, 10 unaccounted, 0 bad summaries)
pg-pg     FAILED   -          -              -                       -                  -                    -             -               pg-pg-run exited

wiring    process       role      CPU/sample  cores  peak RSS
kafka-pg  kafka-pg-run  pipeline  503.0µs     0.25   200 MB
kafka-pg  postgres      postgres  251.5µs     0.12   50 MB
`, buf.String())
}

func TestWiringReportTotals(t *testing.T) {
	t.Parallel()
	r := sampleResult().Wirings[0]
	assert.Equal(t, int64(1988), r.Stored())
	assert.Equal(t, int64(2), r.Missed())
	assert.Equal(t, int64(2000), r.Expected())
	assert.InDelta(t, 0.994, r.StoredShare(), 1e-9)
	assert.InDelta(t, 1988.0/120, r.SamplesPerSecond(), 1e-9)
	assert.Equal(t, 503*time.Microsecond, r.PipelineCPUPerSample(), "the pipeline's processes only")
	assert.Zero(t, WiringReport{Influencers: 5}.SamplesPerSecond(), "no minutes")
	assert.Zero(t, WiringReport{Influencers: 5}.StoredShare(), "no minutes")
}

func TestResultWriteJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, sampleResult().WriteJSON(&buf))
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	assert.Equal(t, "2026-11-25T12:00:00Z", got["started"])
	limits := got["limits"].(map[string]any)
	assert.InDelta(t, 10.0, limits["duration_s"], 1e-9)
	assert.InDelta(t, 25e-6, limits["simulator_cpu_per_get_s"], 1e-12)
	wirings := got["wirings"].([]any)
	require.Len(t, wirings, 2)
	w := wirings[0].(map[string]any)
	assert.Equal(t, "kafka-pg", w["name"])
	assert.InDelta(t, -0.3, w["freshness_p99_s"], 1e-9)
	minutes := w["minutes"].([]any)
	assert.InDelta(t, 1.45, minutes[0].(map[string]any)["complete_after_s"], 1e-9)
	assert.Nil(t, minutes[1].(map[string]any)["complete_after_s"], "never complete is null")
	assert.Equal(t, map[string]any{"timeout": 1.0, "expired": 1.0}, minutes[0].(map[string]any)["missed_by_class"])
	p := w["processes"].([]any)[0].(map[string]any)
	assert.InDelta(t, 503e-6, p["cpu_per_sample_s"], 1e-12)
	assert.InDelta(t, float64(200<<20), p["peak_rss_bytes"], 0)
	assert.Equal(t, "pg-pg-run exited", wirings[1].(map[string]any)["error"])
}
