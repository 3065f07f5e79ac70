package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/influencer"
)

func names(ws []Wiring) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}

func TestParseWirings(t *testing.T) {
	t.Parallel()
	all := []string{"memory", "gochannel-pg", "kafka-pg", "pg-pg", "staged-kafka-pg", "capacity-90", "overload-2x"}
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"", all, false},
		{"all", all, false},
		{"kafka-pg,memory", []string{"memory", "kafka-pg"}, false},
		{"overload-2x,capacity-90", []string{"capacity-90", "overload-2x"}, false},
		{" pg-pg , pg-pg ", []string{"pg-pg"}, false},
		{"memory,redis", nil, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseWirings(tc.in)
			if tc.err {
				require.ErrorContains(t, err, `unknown wiring "redis"`)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, names(got))
		})
	}
}

func TestWiringTable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		broker       string
		pg, staged   bool
		kafka        bool
		load         float64
		baseline     string
		describe     string
		pipelineArgs [][]string
	}{
		{"memory", config.BrokerGoChannel, false, false, false, 0, "", "run, gochannel, memory store",
			[][]string{{"bench-node", "--stage", "run", "--influencers", "7", "--meter-addr", "127.0.0.1:2"}}},
		{"gochannel-pg", config.BrokerGoChannel, true, false, false, 0, "", "run, gochannel, Postgres store",
			[][]string{{"bench-node", "--stage", "run", "--influencers", "7", "--meter-addr", "127.0.0.1:2"}}},
		{"kafka-pg", config.BrokerKafka, true, false, true, 0, "", "run, Kafka (kfake), Postgres store",
			[][]string{{"bench-node", "--stage", "run", "--influencers", "7", "--meter-addr", "127.0.0.1:2"}}},
		{"pg-pg", config.BrokerPostgres, true, false, false, 0, "", "run, Postgres broker, Postgres store",
			[][]string{{"bench-node", "--stage", "run", "--influencers", "7", "--meter-addr", "127.0.0.1:2"}}},
		{"staged-kafka-pg", config.BrokerKafka, true, true, true, 0, "", "scheduler+fetcher+recorder+api processes, Kafka (kfake), Postgres store",
			[][]string{{"bench-node", "--stage", "recorder", "--influencers", "7", "--meter-addr", "127.0.0.1:2"}, {"api"}, {"fetcher"}, {"scheduler"}}},
		{"capacity-90", config.BrokerGoChannel, false, false, false, 0.9, "",
			"run, gochannel, memory store, adaptive limit; simulator --capacity C, 90% of C × 60 influencers", [][]string{{"bench-node", "--stage", "run", "--influencers", "7", "--meter-addr", "127.0.0.1:2"}}},
		{"overload-2x", config.BrokerGoChannel, false, false, false, 1.8, "capacity-90",
			"run, gochannel, memory store, adaptive limit; simulator --capacity C, 180% of C × 60 influencers", [][]string{{"bench-node", "--stage", "run", "--influencers", "7", "--meter-addr", "127.0.0.1:2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ws, err := ParseWirings(tc.name)
			require.NoError(t, err)
			require.Len(t, ws, 1)
			w := ws[0]
			assert.Equal(t, tc.broker, w.Broker)
			assert.Equal(t, tc.pg, w.Postgres)
			assert.Equal(t, tc.staged, w.Staged)
			assert.Equal(t, tc.kafka, w.Kafka())
			assert.Equal(t, tc.describe, w.Describe())
			assert.InDelta(t, tc.load, w.Load, 1e-12)
			assert.Equal(t, tc.load > 0, w.Scenario())
			assert.Equal(t, tc.baseline, w.Baseline)

			port := 0
			procs, err := planPipeline(w, 7, func() (string, error) { port++; return fmt.Sprintf("127.0.0.1:%d", port), nil })
			require.NoError(t, err)
			var args [][]string
			apis := 0
			for _, p := range procs {
				args = append(args, p.Args)
				assert.Equal(t, []string{"MOCKSTAGRAM_HTTP_ADDR=" + p.HTTPAddr}, p.Env)
				if p.API {
					apis++
				}
			}
			assert.Equal(t, tc.pipelineArgs, args)
			assert.Equal(t, 1, apis, "one process serves the API the readers read")
			assert.NotEmpty(t, procs[0].Meter, "the first process holds the meter")
		})
	}
}

func TestChildEnvironment(t *testing.T) {
	t.Parallel()
	base := []string{"PATH=/bin", "MOCKSTAGRAM_SHARDS=64", "MOCKSTAGRAM_KAFKA_BROKERS=elsewhere:9092", "MOCKSTAGRAM_API_URL=http://x"}
	memory := Wirings[0]
	got := applyEnv(base, wiringEnv(memory, "http://127.0.0.1:5", "", "", "1000000-1000009")...)
	assert.ElementsMatch(t, []string{
		"PATH=/bin", "MOCKSTAGRAM_SHARDS=64", // tuning passes on
		"MOCKSTAGRAM_API_URL=http://127.0.0.1:5", "MOCKSTAGRAM_BROKER=gochannel", "MOCKSTAGRAM_DATABASE_URL=",
		"MOCKSTAGRAM_REGISTRY_BOOTSTRAP=1000000-1000009", // KAFKA_BROKERS unset
	}, got)

	staged := Wirings[4]
	got = applyEnv(base, wiringEnv(staged, "http://s", "127.0.0.1:9", "postgres://db", "")...)
	assert.Contains(t, got, "MOCKSTAGRAM_KAFKA_BROKERS=127.0.0.1:9")
	assert.Contains(t, got, "MOCKSTAGRAM_REGISTRY_BOOTSTRAP=", "registered before the start: no bootstrap")
	assert.Contains(t, got, "MOCKSTAGRAM_BROKER=kafka")
}

func TestBuildReport(t *testing.T) {
	t.Parallel()
	done := m1.Add(time.Minute + 2*time.Second)
	meter := []MeterMinute{
		{Minute: m1.Add(-time.Minute), Stored: 3, Checked: 3, Commits: [][2]int64{{int64(9 * time.Second), 3}}}, // the partial minute
		{Minute: m1, Stored: 9, Missed: 1, ByClass: map[string]int{"timeout": 1}, Checked: 9, Completed: &done,
			Commits: [][2]int64{{int64(time.Second), 6}, {int64(2 * time.Second), 3}}},
		{Minute: m2, Stored: 8, Checked: 9, Wrong: 1, Commits: [][2]int64{{int64(-time.Second), 8}}},
	}
	procs := []procRow{
		{name: "memory-run", role: RolePipeline, usage: procUsage{CPU: 17 * time.Millisecond, Peak: 1 << 30}},
		{name: "memory-simulator", role: RoleSimulator, usage: procUsage{CPU: 34 * time.Millisecond}},
	}
	limits := Limits{SimulatorGETs: 1, MemoryWrites: 2, PostgresWrites: 4}
	wr := buildReport(WiringReport{Name: "memory", Influencers: 10}, m1, 2, meter, nil, procs, 2*time.Minute, limits, false)

	assert.Equal(t, []MinuteRow{
		{Minute: m1, Stored: 9, Missed: 1, ByClass: map[string]int64{"timeout": 1}, NotStored: 0, StoredShare: 0.9, CompleteAfter: new(Dur(2 * time.Second)),
			FreshnessP50: Dur(time.Second), FreshnessP99: Dur(2 * time.Second)},
		{Minute: m2, Stored: 8, ByClass: map[string]int64{}, NotStored: 2, StoredShare: 0.8, FreshnessP50: Dur(-time.Second), FreshnessP99: Dur(-time.Second)},
	}, wr.Minutes)
	// 17 samples: 8 at -1 s, 6 at +1 s, 3 at +2 s; the partial minute's are not counted.
	assert.Equal(t, Dur(time.Second), wr.FreshnessP50)
	assert.Equal(t, Dur(2*time.Second), wr.FreshnessP99)
	assert.Equal(t, &Check{Source: "meter", Checked: 21, Wrong: 1, Unaccounted: 2}, wr.Check)
	assert.Equal(t, []ProcRow{
		{Name: "memory-run", Role: RolePipeline, CPU: Dur(17 * time.Millisecond), CPUPerSample: Dur(time.Millisecond), Cores: 0.017 / 120, PeakRSS: 1 << 30},
		{Name: "memory-simulator", Role: RoleSimulator, CPU: Dur(34 * time.Millisecond), CPUPerSample: Dur(2 * time.Millisecond), Cores: 0.034 / 120},
	}, wr.Processes)
	rate := 17.0 / 120
	assert.InDelta(t, rate/1, wr.OfSimulatorLimit, 1e-12)
	assert.InDelta(t, rate/2, wr.OfStoreLimit, 1e-12, "the memory store's limit")

	// On Postgres the database's counts replace the meter's.
	check := &DBCheck{Rows: 30, Duplicates: 1, Minutes: []DBMinute{
		{Minute: m1, Stored: 10, ByClass: map[string]int64{}},
		{Minute: m2, Stored: 7, ByClass: map[string]int64{"expired": 2}, Unaccounted: 1},
	}}
	wr = buildReport(WiringReport{Name: "pg-pg", Influencers: 10}, m1, 2, meter, check, procs, 2*time.Minute, limits, true)
	assert.Equal(t, []int64{10, 7}, []int64{wr.Minutes[0].Stored, wr.Minutes[1].Stored})
	assert.Equal(t, []float64{1, 0.7}, []float64{wr.Minutes[0].StoredShare, wr.Minutes[1].StoredShare}, "the database's counts")
	assert.Equal(t, map[string]int64{"expired": 2}, wr.Minutes[1].ByClass)
	assert.Equal(t, int64(1), wr.Minutes[1].NotStored)
	assert.Equal(t, &Check{Source: "database", Checked: 30, Duplicates: 1, Unaccounted: 1}, wr.Check)
	assert.False(t, wr.Check.OK())
	assert.InDelta(t, rate/4, wr.OfStoreLimit, 1e-12, "the Postgres store's limit")
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	ms := []MeterMinute{{Minute: m1, Stored: 5, Missed: 1}, {Minute: m2, Stored: 2}}
	assert.Equal(t, "w minute 2/3 (12:02:30): measured minutes stored 7, missed 1; minute "+m2.Local().Format("15:04")+" so far stored 2, missed 0",
		progressLine("w", m2.Add(30*time.Second).Local(), m1, 3, ms))
	assert.Contains(t, progressLine("w", m1.Add(-time.Second), m1, 3, nil), "w warm-up")
	assert.Contains(t, progressLine("w", m1.Add(3*time.Minute), m1, 3, nil), "waiting for the last minute")
}

func wiring(t *testing.T, name string) Wiring {
	t.Helper()
	ws, err := ParseWirings(name)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	return ws[0]
}

func TestScenarioInfluencers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		wiring   string
		capacity float64
		want     int
	}{
		{"memory", 4800, 1000}, // the run's --influencers
		{"capacity-90", 4800, 259_200},
		{"overload-2x", 4800, 518_400}, // twice the sustainable load
		{"capacity-90", 1000, 54_000},
		{"overload-2x", 1000, 108_000},
		{"capacity-90", 0.01, 1}, // rounded
	} {
		t.Run(fmt.Sprintf("%s at %g", tc.wiring, tc.capacity), func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.want, wiring(t, tc.wiring).Influencers(1000, tc.capacity))
		})
	}
}

func TestSimulatorArgs(t *testing.T) {
	t.Parallel()
	pks := influencer.Range{From: FirstPK, To: FirstPK + 53_999}
	assert.Equal(t, []string{"simulate", "--mode", "deterministic", "--addr", "127.0.0.1:7", "--range", "1000000-1053999"},
		simulatorArgs("127.0.0.1:7", pks, 0), "unlimited")
	assert.Equal(t, []string{"simulate", "--mode", "deterministic", "--addr", "127.0.0.1:7", "--range", "1000000-1053999", "--capacity", "4800"},
		simulatorArgs("127.0.0.1:7", pks, 4800))
	assert.Equal(t, []string{"simulate", "--mode", "deterministic", "--addr", "a", "--range", "1000000-1053999", "--capacity", "1234.5"},
		simulatorArgs("a", pks, 1234.5))
}

func TestSimulatorEnvironment(t *testing.T) {
	t.Parallel()
	r := runner{c: Config{Env: []string{"PATH=/bin", "MOCKSTAGRAM_SIMULATOR_CAPACITY=40", "MOCKSTAGRAM_LOG_LEVEL=debug"}}}
	assert.ElementsMatch(t, []string{"PATH=/bin", "MOCKSTAGRAM_LOG_LEVEL=debug", "MOCKSTAGRAM_LOG_FORMAT=text", "MOCKSTAGRAM_SHUTDOWN_TIMEOUT=10s"},
		r.simulatorEnv(), "the capacity comes from the arguments only")
}

func TestScenarioEnvironment(t *testing.T) {
	t.Parallel()
	base := []string{"PATH=/bin", "MOCKSTAGRAM_FETCH_ADAPTIVE=false", "MOCKSTAGRAM_FETCH_CONCURRENCY=64"}
	got := applyEnv(base, wiringEnv(wiring(t, "overload-2x"), "http://127.0.0.1:5", "", "", "1000000-1107999")...)
	assert.ElementsMatch(t, []string{
		"PATH=/bin", "MOCKSTAGRAM_FETCH_CONCURRENCY=64",
		"MOCKSTAGRAM_API_URL=http://127.0.0.1:5", "MOCKSTAGRAM_BROKER=gochannel", "MOCKSTAGRAM_DATABASE_URL=",
		"MOCKSTAGRAM_REGISTRY_BOOTSTRAP=1000000-1107999",
		"MOCKSTAGRAM_FETCH_ADAPTIVE=true", // the scenarios measure the adaptive limit
	}, got)
	got = applyEnv(base, wiringEnv(wiring(t, "memory"), "http://127.0.0.1:5", "", "", "")...)
	assert.Contains(t, got, "MOCKSTAGRAM_FETCH_ADAPTIVE=false", "the other wirings take the environment's")
}

func TestValidateCapacity(t *testing.T) {
	t.Parallel()
	c := func(names string, capacity float64) Config {
		ws, err := ParseWirings(names)
		require.NoError(t, err)
		return Config{Influencers: 1000, Minutes: 1, Wirings: ws, Capacity: capacity, LimitDuration: time.Second}
	}
	require.NoError(t, c("capacity-90,overload-2x", 4800).Validate())
	require.NoError(t, c("memory", 0).Validate(), "no scenario: the capacity is not used")
	require.ErrorContains(t, c("capacity-90", 0).Validate(), "capacity-90: --capacity 0 makes 0 influencers")
	require.ErrorContains(t, c("overload-2x", 50_000).Validate(), "overload-2x: --capacity 50000 makes 5400000 influencers (180% of capacity × 60 s): want 1..5000000")
	require.NoError(t, c("capacity-90", 50_000).Validate(), "2,700,000 influencers")
}

func TestScenarioReport(t *testing.T) {
	t.Parallel()
	// 90 influencers at capacity 2/s: load 0.75. 2 minutes, 150 stored: 1.25/s.
	meter := []MeterMinute{
		{Minute: m1, Stored: 90, Checked: 90, Commits: [][2]int64{{int64(-time.Second), 90}}},
		{Minute: m2, Stored: 60, Missed: 30, ByClass: map[string]int{"expired": 30}, Checked: 60, Commits: [][2]int64{{int64(-2 * time.Second), 60}}},
	}
	over := wiring(t, "overload-2x")
	wr := buildReport(WiringReport{Name: over.Name, Influencers: 90}, m1, 2, meter, nil, nil, 2*time.Minute, Limits{}, false)
	c := capacityReport(wr, over, 2)
	assert.Equal(t, &CapacityReport{Capacity: 2, Load: 0.75, SamplesPerS: 1.25, OfCapacity: 0.625, Baseline: "capacity-90", Target: GracefulTarget}, c)
	assert.Equal(t, "no baseline", c.Verdict(), "not related yet")
	assert.Equal(t, map[string]int64{"expired": 30}, wr.Minutes[1].ByClass)
	assert.InDelta(t, 2.0/3, wr.Minutes[1].StoredShare, 1e-12)

	base := capacityReport(WiringReport{Influencers: 10}, wiring(t, "capacity-90"), 0)
	assert.Equal(t, &CapacityReport{}, base, "no capacity, no minutes: zeros, no division by zero")
	assert.Equal(t, "-", base.Verdict(), "the sustainable scenario has no target")
}
