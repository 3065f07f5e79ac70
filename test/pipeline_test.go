// Package test holds the end-to-end tests: the whole application built from
// the same fx modules as 'mockstagram run', with only the clock (and, where
// named, the store or the API) swapped.
package test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/broker/kafkatest"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

const (
	firstPK = 1_000_000
	numPKs  = 300
	minutes = 3
)

// start is a minute boundary; the fake clock starts there.
var start = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type pipeline struct {
	clock   *clockwork.FakeClock
	store   store.Store
	pub     message.Publisher
	metrics *metrics.Pipeline
	http    *app.HTTPServer
	// published is the TasksPublished counter at the end of each minute.
	published map[time.Time]float64
}

// setup is one combination of broker and store.
type setup struct{ broker, store string }

func (s setup) String() string { return s.broker + "/" + s.store }

// setups are the combinations the end-to-end tests run on.
var setups = []setup{
	{config.BrokerGoChannel, "memory"},
	{config.BrokerGoChannel, "postgres"},
	{config.BrokerPostgres, "postgres"},
	{config.BrokerKafka, "postgres"},
}

func testConfig(t *testing.T, su setup) config.Config {
	cfg := testConfigStore(t, su.store)
	cfg.Broker = su.broker
	if su.broker == config.BrokerKafka {
		cfg.KafkaBrokers = kafkatest.Start(t, 16)
	}
	return cfg
}

func testConfigStore(t *testing.T, storeKind string) config.Config {
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Shards = 16
	cfg.SimulatorMode = config.SimulatorDeterministic
	cfg.RegistryBootstrap = fmt.Sprintf("%d-%d", firstPK, firstPK+numPKs-1)
	cfg.LogLevel = "warn"
	cfg.ShutdownTimeout = 10 * time.Second
	// The built-in simulator answers is_suspicious at once (its 1-10 s
	// latency would run on the fake clock).
	cfg.SimulatorSuspiciousDelayMin, cfg.SimulatorSuspiciousDelayMax = 0, 0
	if storeKind == "postgres" {
		cfg.DatabaseURL = pgtest.NewDatabase(t)
	}
	return cfg
}

// startPipeline builds the application exactly as 'run' does, with a fake clock.
// opts are added last (a test decorates the tracer provider).
func startPipeline(t *testing.T, cfg config.Config, opts ...fx.Option) *pipeline {
	p := &pipeline{clock: clockwork.NewFakeClockAt(start), published: map[time.Time]float64{}}
	a := fxtest.New(t,
		app.Options(cfg, app.AllRoles()),
		fx.Decorate(func(clockwork.Clock) clockwork.Clock { return p.clock }),
		fx.Populate(&p.store, &p.pub, &p.metrics, &p.http),
		fx.Options(opts...),
	)
	a.RequireStart()
	t.Cleanup(a.RequireStop)
	return p
}

// runMinute advances the fake clock through minute m in one-second steps,
// after each step waiting (briefly, in real time) until the scheduler has
// published every shard due by then; at 58 s it waits until every pk of the
// minute is stored, then moves to the end of the minute. The minute's
// deadline (60 s) never passes before the fetches are done.
func (p *pipeline) runMinute(t *testing.T, cfg config.Config, m time.Time, pks int) {
	t.Helper()
	shards := handlers.Assign(influencer.Range{From: firstPK, To: firstPK + int64(pks) - 1}.PKs(), cfg.Shards)
	sched := handlers.NewScheduler(nil, nil, nil, handlers.SchedulerConfig{Shards: cfg.Shards, SpreadWindow: cfg.SpreadWindow}, nil, nil)
	due := func(elapsed time.Duration) float64 {
		n := 0
		for s, pks := range shards {
			if len(pks) > 0 && sched.Offset(s) <= elapsed {
				n++
			}
		}
		return float64(n)
	}
	for p.clock.Now().Before(m.Add(58 * time.Second)) {
		p.clock.Advance(time.Second)
		elapsed := p.clock.Now().Sub(m)
		want := publishedBefore(p, m) + due(elapsed)
		// A scheduler timer registered just after an Advance fires one step
		// late; the next steps catch it up, so a miss here is not an error.
		pollUntil(2*time.Second, func() bool { return testutil.ToFloat64(p.metrics.TasksPublished) >= want })
	}
	waitFor(t, 60*time.Second, func() bool { return stored(t, p.store, m) == pks },
		"all samples of minute %s stored", m.Format(time.RFC3339))
	p.published[m] = testutil.ToFloat64(p.metrics.TasksPublished)
}

// publishedBefore is the number of tasks published before minute m.
func publishedBefore(p *pipeline, m time.Time) float64 {
	return p.published[m.Add(-time.Minute)]
}

// pollUntil polls cond until it holds or timeout passes; it reports which.
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

func stored(t *testing.T, s store.Store, minute time.Time) int {
	n := 0
	for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
		pts, err := s.Timeline(context.Background(), pk, minute, minute.Add(time.Minute), 10)
		require.NoError(t, err)
		n += len(pts)
	}
	return n
}

// waitNudging polls cond for up to 60 s of real time while moving the fake
// clock on by 50 ms every 50 ms, up to limit, so that timers of the waited-for
// work (a retry's backoff) fire. 60 s, as runMinute's wait: a loaded CI
// machine is slow (the scheduler's lease check has timed out there).
func (p *pipeline) waitNudging(t *testing.T, limit time.Time, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s (clock %s; %s)", what, p.clock.Now(), p.state())
		}
		if p.clock.Now().Before(limit) {
			p.clock.Advance(50 * time.Millisecond)
		}
		<-tick.C
	}
}

// state is the pipeline's counters, for a timeout's message: it says which
// stage the waited-for work stopped in.
func (p *pipeline) state() string {
	m := p.metrics
	v := testutil.ToFloat64
	return fmt.Sprintf("tasks published %.0f, publish failures %.0f, tasks expired %.0f, fetch retries %.0f, fetch failures %s, "+
		"breaker state %.0f, adaptive limit %.0f in flight %.0f waiting %.0f, samples stored %.0f duplicate %.0f missed %.0f rejected %.0f, batches written %d",
		v(m.TasksPublished), v(m.ScheduleFailures), v(m.TasksExpired), v(m.FetchRetries), labelled(m, "fetch"),
		v(m.BreakerState), v(m.AdaptiveLimit), v(m.AdaptiveInFlight), v(m.AdaptiveWaiting),
		v(m.SamplesStored), v(m.SamplesDuplicate), v(m.SamplesMissed), v(m.SamplesRejected), histogramCount(m.WriteDuration))
}

func histogramCount(h prometheus.Histogram) uint64 {
	var pb dto.Metric
	if h.Write(&pb) != nil {
		return 0
	}
	return pb.GetHistogram().GetSampleCount()
}

// waitFor polls cond until it holds or the real-time deadline passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !pollUntil(timeout, cond) {
		t.Fatalf("timed out waiting for: "+format, args...)
	}
}

func TestPipelineEndToEnd(t *testing.T) {
	for _, su := range setups {
		t.Run(su.String(), func(t *testing.T) {
			cfg := testConfig(t, su)
			p := startPipeline(t, cfg)
			ctx := context.Background()

			for i := range minutes {
				p.runMinute(t, cfg, start.Add(time.Duration(i)*time.Minute), numPKs)
			}

			// Every (pk, minute) exactly once, with exactly the simulator's values;
			// the average equals the mean of the stored points.
			for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
				pts, err := p.store.Timeline(ctx, pk, start.Add(-time.Hour), start.Add(time.Hour), 1000)
				require.NoError(t, err)
				require.Len(t, pts, minutes, "pk %d", pk)
				var sum int64
				for i, pt := range pts {
					m := start.Add(time.Duration(i) * time.Minute)
					f, g := simulator.Counts(pk, m)
					require.Equal(t, influencer.Point{Minute: m, FollowerCount: f, FollowingCount: g}, normalize(pt), "pk %d minute %d", pk, i)
					sum += f
				}
				s, err := p.store.Summary(ctx, pk)
				require.NoError(t, err)
				last := start.Add((minutes - 1) * time.Minute)
				f, g := simulator.Counts(pk, last)
				assert.Equal(t, int64(minutes), s.Samples)
				assert.Equal(t, f, s.FollowerCount)
				assert.Equal(t, g, s.FollowingCount)
				assert.Equal(t, simulator.Username(pk), s.Username)
				assert.True(t, s.LastMinute.Equal(last))
				assert.InDelta(t, float64(sum)/minutes, s.AverageFollowerCount(), 1e-9)
			}
			missed, err := p.store.MissedSince(ctx, start.Add(-time.Hour))
			require.NoError(t, err)
			assert.Zero(t, missed)
			// Counted once each; on the Postgres broker just after its commit.
			waitFor(t, 10*time.Second, func() bool { return testutil.ToFloat64(p.metrics.SamplesStored) == numPKs*minutes }, "samples stored counted")

			// A redelivered task inside its minute: the first delivery stores, the
			// redelivery is refetched but changes nothing. The clock moves to the
			// next minute's second 0, where the scheduler publishes only shard 0;
			// the test's task is for the last shard, which is not due yet.
			cur := start.Add(minutes * time.Minute)
			p.clock.Advance(cur.Sub(p.clock.Now()))
			shards := handlers.Assign(influencer.Range{From: firstPK, To: firstPK + numPKs - 1}.PKs(), cfg.Shards)
			// A fetch retried (or an adaptive-limit window closing) on a busy
			// machine waits on the fake clock: let it creep on, less than the
			// next shard's offset, while waiting.
			p.waitNudging(t, cur.Add(2*time.Second), func() bool {
				n := 0
				for _, pk := range shards[0] {
					pts, err := p.store.Timeline(ctx, pk, cur, cur.Add(time.Minute), 10)
					require.NoError(t, err)
					n += len(pts)
				}
				// The recorder counts a batch after its commit: wait for both.
				return n == len(shards[0]) && testutil.ToFloat64(p.metrics.SamplesStored) == float64(numPKs*minutes+len(shards[0]))
			}, "shard 0 of minute "+cur.Format(time.RFC3339)+" stored")
			storedBefore := testutil.ToFloat64(p.metrics.SamplesStored)
			before := snapshot(t, p.store)
			last := cfg.Shards - 1
			require.GreaterOrEqual(t, len(shards[last]), 2)
			task := messages.Task{Minute: cur, Shard: last, Deadline: cur.Add(time.Minute), PKs: shards[last][:2]}
			publishTask(t, p.pub, task)
			// A fetch retried on a busy machine backs off on the fake clock: the
			// clock creeps on (less than the next shard's offset) while waiting.
			nudge := cur.Add(2 * time.Second)
			p.waitNudging(t, nudge, func() bool { return testutil.ToFloat64(p.metrics.SamplesStored) == storedBefore+2 }, "first delivery stored")
			afterFirst := snapshot(t, p.store)
			for _, pk := range task.PKs {
				assert.Equal(t, before[pk].Samples+1, afterFirst[pk].Samples, "the first delivery stored pk %d", pk)
				f, _ := simulator.Counts(pk, cur)
				assert.Equal(t, f, afterFirst[pk].FollowerCount)
			}
			dupBefore := testutil.ToFloat64(p.metrics.SamplesDuplicate)
			publishTask(t, p.pub, task)
			p.waitNudging(t, nudge, func() bool { return testutil.ToFloat64(p.metrics.SamplesDuplicate) == dupBefore+2 }, "redelivered task processed")
			assert.Equal(t, afterFirst, snapshot(t, p.store), "redelivered task changed the store")

			// A redelivered result changes nothing.
			var samples []influencer.Sample
			for pk := int64(firstPK); pk < firstPK+10; pk++ {
				f, g := simulator.Counts(pk, start)
				samples = append(samples, influencer.Sample{PK: pk, Username: simulator.Username(pk), FollowerCount: f, FollowingCount: g, Minute: start, FetchedAt: start})
			}
			res, err := messages.NewResult(influencer.Batch{Minute: start, Shard: 3, Samples: samples})
			require.NoError(t, err)
			dupBefore = testutil.ToFloat64(p.metrics.SamplesDuplicate)
			require.NoError(t, p.pub.Publish(messages.TopicFetcherResults, res))
			waitFor(t, 30*time.Second, func() bool { return testutil.ToFloat64(p.metrics.SamplesDuplicate) >= dupBefore+10 }, "redelivered result processed")
			assert.Equal(t, afterFirst, snapshot(t, p.store), "redelivered result changed the store")

			// An expired task stores nothing and is reported as missed.
			old := start.Add(-5 * time.Minute)
			expiredPKs := []int64{firstPK, firstPK + 1, firstPK + 2, firstPK + 3, firstPK + 4}
			publishTask(t, p.pub, messages.Task{Minute: old, Shard: 1, Deadline: old.Add(time.Minute), PKs: expiredPKs})
			waitFor(t, 30*time.Second, func() bool {
				n, err := p.store.MissedSince(ctx, old)
				return err == nil && n == int64(len(expiredPKs))
			}, "expired task reported as missed")
			for _, pk := range expiredPKs {
				pts, err := p.store.Timeline(ctx, pk, old, old.Add(time.Minute), 10)
				require.NoError(t, err)
				assert.Empty(t, pts, "expired task stored a value for pk %d", pk)
			}
			assert.Equal(t, afterFirst, snapshot(t, p.store), "expired task changed the summaries")
			assert.Equal(t, float64(1), testutil.ToFloat64(p.metrics.TasksExpired))
		})
	}
}

func publishTask(t *testing.T, pub message.Publisher, task messages.Task) {
	t.Helper()
	msg, err := messages.NewTask(task)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(messages.TopicFetchTasks, msg))
}

func normalize(p influencer.Point) influencer.Point {
	p.Minute = p.Minute.UTC()
	return p
}

// snapshot is every summary, by pk.
func snapshot(t *testing.T, s store.Store) map[int64]influencer.Summary {
	out := map[int64]influencer.Summary{}
	for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
		sum, err := s.Summary(context.Background(), pk)
		require.NoError(t, err)
		sum.LastMinute = sum.LastMinute.UTC()
		out[pk] = sum
	}
	return out
}

// recordingAPI is "any server that implements the Mockstagram API": a
// random-walk simulator behind a recorder of every value it served, by
// (pk, minute of the shared clock).
type recordingAPI struct {
	sim   *simulator.Server
	clock clockwork.Clock
	mu    sync.Mutex
	seen  map[int64]map[time.Time][]byte
}

func (r *recordingAPI) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rec := httptest.NewRecorder()
	r.sim.ServeHTTP(rec, req)
	var pk int64
	_, _ = fmt.Sscanf(req.URL.Path, "/api/v1/influencers/%d", &pk)
	if rec.Code == http.StatusOK && pk > 0 {
		m := r.clock.Now().Truncate(time.Minute)
		r.mu.Lock()
		if r.seen[pk] == nil {
			r.seen[pk] = map[time.Time][]byte{}
		}
		r.seen[pk][m] = rec.Body.Bytes()
		r.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// TestRunAgainstExternalAPI: with MOCKSTAGRAM_API_URL set, the pipeline
// stores, for every tracked pk and minute, exactly what that server returned
// in that minute.
func TestRunAgainstExternalAPI(t *testing.T) {
	for _, su := range setups {
		t.Run(su.String(), func(t *testing.T) {
			cfg := testConfig(t, su)
			p := &pipeline{clock: clockwork.NewFakeClockAt(start), published: map[time.Time]float64{}}
			sim, err := simulator.New(simulator.Config{Mode: simulator.RandomWalk, Range: influencer.Range{From: firstPK, To: firstPK + numPKs - 1}, Seed: 7, SuspiciousNoDelay: true}, p.clock)
			require.NoError(t, err)
			api := &recordingAPI{sim: sim, clock: p.clock, seen: map[int64]map[time.Time][]byte{}}
			srv := httptest.NewServer(api)
			t.Cleanup(srv.Close)
			cfg.APIURL = srv.URL

			a := fxtest.New(t, app.Options(cfg, app.AllRoles()),
				fx.Decorate(func(clockwork.Clock) clockwork.Clock { return p.clock }),
				fx.Populate(&p.store, &p.pub, &p.metrics, &p.http))
			a.RequireStart()
			t.Cleanup(a.RequireStop)

			for i := range minutes {
				p.runMinute(t, cfg, start.Add(time.Duration(i)*time.Minute), numPKs)
			}
			api.mu.Lock()
			defer api.mu.Unlock()
			for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
				pts, err := p.store.Timeline(context.Background(), pk, start, start.Add(minutes*time.Minute), 100)
				require.NoError(t, err)
				require.Len(t, pts, minutes)
				for _, pt := range pts {
					body := api.seen[pk][pt.Minute.UTC()]
					want := fmt.Sprintf(`{"pk":%d,"username":"%s","followerCount":%d,"followingCount":%d}`, pk, simulator.Username(pk), pt.FollowerCount, pt.FollowingCount)
					require.JSONEq(t, want, string(body), "pk %d minute %s", pk, pt.Minute)
				}
			}
		})
	}
}
