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
					{Minute: m1, Stored: 998, Missed: 2, ByClass: map[string]int64{"timeout": 1, "expired": 1}, StoredShare: 0.998, CompleteAfter: new(Dur(1450 * time.Millisecond)),
						FreshnessP50: Dur(700 * time.Millisecond), FreshnessP99: Dur(1200 * time.Millisecond)},
					{Minute: m2, Stored: 990, NotStored: 10, ByClass: map[string]int64{}, StoredShare: 0.99, FreshnessP50: Dur(900 * time.Millisecond), FreshnessP99: Dur(-300 * time.Millisecond)},
				},
				FreshnessP50: Dur(800 * time.Millisecond), FreshnessP99: Dur(-300 * time.Millisecond),
				Reads: &Reads{Influencer: Latency{N: 2160, P50: Dur(1234567), P99: Dur(20 * time.Millisecond)}, Stats: Latency{N: 240, P50: Dur(3 * time.Millisecond), P99: Dur(9 * time.Millisecond)},
					Database: &Latency{N: 1200, P50: Dur(400 * time.Microsecond), P99: Dur(12 * time.Millisecond)}},
				Processes: []ProcRow{
					{Name: "kafka-pg-run", Role: RolePipeline, CPU: Dur(time.Second), CPUPerSample: Dur(503 * time.Microsecond), Cores: 0.25, PeakRSS: 200 << 20},
					{Name: "postgres", Role: RolePostgres, CPU: Dur(time.Second / 2), CPUPerSample: Dur(251500 * time.Nanosecond), Cores: 0.125, PeakRSS: 50 << 20},
				},
				Check:            &Check{Source: "database", Checked: 2100, Duplicates: 0, Unaccounted: 10},
				OfSimulatorLimit: 0.000552, OfStoreLimit: 0.000414,
			},
			{Name: "pg-pg", Description: "run, Postgres broker, Postgres store", Influencers: 1000, Error: "pg-pg-run exited"},
			{
				Name: "capacity-90", Influencers: 540,
				Minutes:  []MinuteRow{{Minute: m1, Stored: 540, ByClass: map[string]int64{}, StoredShare: 1, FreshnessP50: Dur(-10 * time.Second), FreshnessP99: Dur(-2 * time.Second)}},
				Check:    &Check{Source: "meter", Checked: 540},
				Capacity: &CapacityReport{Capacity: 10, Load: 0.9, SamplesPerS: 9, OfCapacity: 0.9},
			},
			{
				Name: "overload-2x", Influencers: 1080,
				Minutes: []MinuteRow{{Minute: m1, Stored: 480, Missed: 600, ByClass: map[string]int64{"expired": 600}, StoredShare: 480.0 / 1080,
					CompleteAfter: new(Dur(100 * time.Millisecond)), FreshnessP50: Dur(-20 * time.Second), FreshnessP99: Dur(-time.Second)}},
				Check: &Check{Source: "meter", Checked: 480},
				Capacity: &CapacityReport{Capacity: 10, Load: 1.8, SamplesPerS: 8, OfCapacity: 0.8, Baseline: "capacity-90",
					BaselineSamplesPerS: 9, OfBaseline: 8.0 / 9, Target: 0.9},
			},
		},
	}
}

func TestResultWriteText(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, sampleResult().WriteText(&buf))
	assert.Equal(t, `limits (10s each): simulator 30000 GET/s (p50 1ms, p99 4ms, 0 errors, 25.0µs CPU/GET); store writes (1000-sample batches, 4 writers): memory 500000 samples/s, Postgres 40000 samples/s (server 30.0µs CPU/sample)

wiring       minute  stored  stored %  missed  not stored  complete at  fresh p50/p99  missed by class
kafka-pg     12:01   998     99.800%   2       0           +1.4s        +0.7s/+1.2s    expired:1 timeout:1
kafka-pg     12:02   990     99.000%   0       10          never        +0.9s/-0.3s    
capacity-90  12:01   540     100.000%  0       0           never        -10.0s/-2.0s   
overload-2x  12:01   480     44.444%   600     0           +0.1s        -20.0s/-1.0s   expired:600

wiring       stored    samples/s  fresh p50/p99  GET influencer p50/p99  GET stats p50/p99  db lookup p50/p99  pipeline CPU/sample  of sim limit  of store limit  check
kafka-pg     99.400%   17         +0.8s/-0.3s    1.23ms/20ms             3ms/9ms            400µs/12ms         503.0µs              0.1%          0.0%            OK (database: 2100 values, 0 wrong, 0 dup, 10 unaccounted, 0 bad summaries)
pg-pg        FAILED    -          -              -                       -                  -                  -                    -             -               pg-pg-run exited
capacity-90  100.000%  9          +0.0s/+0.0s    -                       -                  -                  0.0µs                0.0%          0.0%            OK (meter: 540 values, 0 wrong, 0 dup, 0 unaccounted)
overload-2x  44.444%   8          +0.0s/+0.0s    -                       -                  -                  0.0µs                0.0%          0.0%            OK (meter: 480 values, 0 wrong, 0 dup, 0 unaccounted)

scenario     capacity  load  influencers  stored    samples/s  of capacity  of baseline                 graceful (target)
capacity-90  10/s      0.90  540          100.000%  9          90.0%        -                           -
overload-2x  10/s      1.80  1080         44.444%   8          80.0%        88.9% of capacity-90 (9/s)  BELOW TARGET (>= 90%)

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
	require.Len(t, wirings, 4)
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
	assert.InDelta(t, 0.998, minutes[0].(map[string]any)["stored_share"], 1e-12)
	assert.InDelta(t, 1.2, minutes[0].(map[string]any)["freshness_p99_s"], 1e-12)
	assert.NotContains(t, w, "capacity", "not a capacity scenario")
	assert.Equal(t, map[string]any{"capacity_per_s": 10.0, "load": 1.8, "samples_per_s": 8.0, "of_capacity": 0.8, "baseline": "capacity-90",
		"baseline_samples_per_s": 9.0, "of_baseline": 8.0 / 9, "target": 0.9}, wirings[3].(map[string]any)["capacity"])
	assert.Equal(t, map[string]any{"capacity_per_s": 10.0, "load": 0.9, "samples_per_s": 9.0, "of_capacity": 0.9},
		wirings[2].(map[string]any)["capacity"], "no baseline, no target")
}

func TestRelateBaselines(t *testing.T) {
	t.Parallel()
	minute := []MinuteRow{{Minute: m1}}
	scenario := func(name string, rate float64, baseline string, minutes []MinuteRow) WiringReport {
		c := &CapacityReport{Capacity: 100, SamplesPerS: rate, Baseline: baseline}
		if baseline != "" {
			c.Target = GracefulTarget
		}
		return WiringReport{Name: name, Minutes: minutes, Capacity: c}
	}
	for _, tc := range []struct {
		name     string
		ws       []WiringReport
		wantBase float64
		wantOf   float64
		verdict  string
	}{
		{"graceful", []WiringReport{scenario("capacity-90", 90, "", minute), scenario("overload-2x", 99, "capacity-90", minute)}, 90, 1.1, "OK"},
		{"exactly at the target", []WiringReport{scenario("capacity-90", 80, "", minute), scenario("overload-2x", 72, "capacity-90", minute)}, 80, 0.9, "OK"},
		{"collapsed", []WiringReport{scenario("capacity-90", 90, "", minute), scenario("overload-2x", 30, "capacity-90", minute)}, 90, 1.0 / 3, "BELOW TARGET"},
		{"baseline after it", []WiringReport{scenario("overload-2x", 45, "capacity-90", minute), scenario("capacity-90", 90, "", minute)}, 90, 0.5, "BELOW TARGET"},
		{"baseline not run", []WiringReport{{Name: "memory", Minutes: minute}, scenario("overload-2x", 99, "capacity-90", minute)}, 0, 0, "no baseline"},
		{"baseline failed before a minute", []WiringReport{scenario("capacity-90", 0, "", nil), scenario("overload-2x", 99, "capacity-90", minute)}, 0, 0, "no baseline"},
		{"baseline stored nothing", []WiringReport{scenario("capacity-90", 0, "", minute), scenario("overload-2x", 99, "capacity-90", minute)}, 0, 0, "no baseline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			relateBaselines(tc.ws)
			var c *CapacityReport
			for _, wr := range tc.ws {
				if wr.Name == "overload-2x" {
					c = wr.Capacity
				}
			}
			require.NotNil(t, c)
			assert.InDelta(t, tc.wantBase, c.BaselineSamplesPerS, 1e-12)
			assert.InDelta(t, tc.wantOf, c.OfBaseline, 1e-12)
			assert.Equal(t, tc.verdict, c.Verdict())
			for _, wr := range tc.ws {
				if wr.Name == "capacity-90" {
					assert.Zero(t, wr.Capacity.OfBaseline, "the baseline has none")
				}
			}
		})
	}
}

func TestWriteTextWithoutScenarios(t *testing.T) {
	t.Parallel()
	r := sampleResult()
	r.Wirings = r.Wirings[:2]
	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	assert.NotContains(t, buf.String(), "scenario", "no capacity table without a scenario")
}
