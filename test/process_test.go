package test

// Multi-process tests: the real binary, one process per stage, over a real
// broker (Kafka via kfake, or Postgres) and one PostgreSQL database, against
// the deterministic simulator, in real time. Each test lines its faults up
// with the minute and then polls the database (never sleeps for a guessed
// time); the tests run in parallel because they mostly wait for the clock.

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/simulator"
)

func processContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test in real time; skipped with -short")
	}
}

// TestProcessScaleOutKafka: 1 scheduler, 2 fetchers, 2 recorders and 1 api as
// separate processes on Kafka: two full minutes stored exactly once with the
// simulator's values, and both fetchers (one consumer group) did work.
func TestProcessScaleOutKafka(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx := processContext(t, 4*time.Minute)
	c := newCluster(t, ctx, clusterOpts{broker: config.BrokerKafka, pks: 2000, shards: 32, latency: 5 * time.Millisecond})
	conn := c.conn()

	recorders := []*proc{c.stage("recorder"), c.stage("recorder")}
	fetchers := []*proc{c.stage("fetcher"), c.stage("fetcher")}
	api := c.stage("api")
	c.stage("scheduler")

	m0 := firstMinute(40 * time.Second)
	minutes := []time.Time{m0, m0.Add(time.Minute)}
	for _, m := range minutes {
		c.waitComplete(conn, m, true, m.Add(time.Minute+30*time.Second))
	}
	c.checkInvariants(conn, minutes, nil)

	for _, f := range fetchers {
		assert.Positive(t, f.metric(metricFetches), "%s fetched nothing: the consumer group did not share the work", f.name)
	}
	stored := 0.0
	for _, r := range recorders {
		stored += r.metric(metricStored)
	}
	assert.GreaterOrEqual(t, stored, float64(len(minutes)*c.opts.pks), "samples stored by the two recorders")

	// The api process reads the same database.
	var got struct {
		FollowerCount int64 `json:"followerCount"`
		Samples       int64 `json:"samples"`
	}
	resp, err := http.Get("http://" + api.httpAddr + "/api/v1/influencers/" + strconv.FormatInt(c.first, 10))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	var samples int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM samples WHERE pk = $1`, c.first).Scan(&samples))
	assert.Equal(t, samples, got.Samples, "api samples of pk %d", c.first)
}

// TestFailoverKafka: SIGKILL the fetcher doing work mid-minute; the other
// fetcher of the consumer group takes over.
func TestFailoverKafka(t *testing.T) { testFailover(t, config.BrokerKafka) }

// TestFailoverPostgres: on the Postgres broker only one subscriber of a
// consumer group works at a time; kill it and the standby takes over.
func TestFailoverPostgres(t *testing.T) { testFailover(t, config.BrokerPostgres) }

func testFailover(t *testing.T, brokerName string) {
	skipShort(t)
	t.Parallel()
	ctx := processContext(t, 4*time.Minute)
	// 1000 pks at 100 ms and 8 in flight: ~12 s of fetching a minute for one
	// fetcher, so there is work in progress to interrupt.
	c := newCluster(t, ctx, clusterOpts{broker: brokerName, pks: 1000, shards: 16, latency: 100 * time.Millisecond, concurrency: 8})
	conn := c.conn()
	c.stage("recorder")
	fetchers := []*proc{c.stage("fetcher"), c.stage("fetcher")}
	c.stage("scheduler")

	// The current minute if its shards are being fetched now (the scheduler
	// publishes the due shards at once when it starts), else the next one.
	mk := firstMinute(50 * time.Second)
	sleepUntil(ctx, mk.Add(1500*time.Millisecond))
	victim := pollFetching(t, mk.Add(15*time.Second), fetchers...)
	survivor := fetchers[0]
	if victim == survivor {
		survivor = fetchers[1]
	}
	killedAt := time.Now()
	victim.kill()
	before := survivor.metric(metricFetches)
	t.Logf("killed %s at %s (minute %s), %s had fetched %.0f", victim.name, killedAt.Format(time.TimeOnly), mk.Format(time.TimeOnly), survivor.name, before)

	c.waitComplete(conn, mk, false, mk.Add(time.Minute+30*time.Second))
	next := mk.Add(time.Minute)
	c.waitComplete(conn, next, true, next.Add(time.Minute+30*time.Second))
	assert.Greater(t, survivor.metric(metricFetches), before+float64(c.opts.pks)/2, "%s did not take over", survivor.name)
	t.Logf("minute of the kill: stored %d, missed %d of %d", c.storedIn(conn, mk), c.missedIn(conn, mk), c.opts.pks)
	c.checkInvariants(conn, []time.Time{next}, []time.Time{mk})
}

// TestCrashRecorderAndScheduler (Postgres broker): SIGKILL the recorder
// mid-minute and restart it; SIGKILL the active scheduler while a standby
// runs: the standby takes the lock, the minute and the next are scheduled,
// and nothing is stored or counted twice.
func TestCrashRecorderAndScheduler(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx := processContext(t, 4*time.Minute)
	c := newCluster(t, ctx, clusterOpts{broker: config.BrokerPostgres, pks: 1000, shards: 16, latency: 20 * time.Millisecond, concurrency: 16})
	// Shards are published over 30 s, so a kill lands between publications.
	c.env = append(c.env, "MOCKSTAGRAM_SPREAD_WINDOW=30s")
	conn := c.conn()
	recorder := c.stage("recorder")
	fetcher := c.stage("fetcher")
	active := c.stage("scheduler")
	waitFor(t, 30*time.Second, func() bool { return active.metric(metricPublished) > 0 }, "first scheduler leads")
	standby := c.stage("scheduler")

	m := firstMinute(45 * time.Second)
	sleepUntil(ctx, latest(time.Now().Add(time.Second), m.Add(5*time.Second)))
	if !pollUntil(40*time.Second, func() bool { return recorder.metric(metricStored) > 0 }) {
		t.Fatalf("recorder stored nothing of minute %s: tasks published %.0f, fetches %.0f, stored %.0f, samples in the database %d",
			m.Format(time.TimeOnly), active.metric(metricPublished), fetcher.metric(metricFetches), recorder.metric(metricStored), c.storedIn(conn, m))
	}
	require.Zero(t, standby.metric(metricPublished), "the standby published while the leader held the lock")

	recorder.kill()
	t.Logf("killed %s at %s", recorder.name, time.Now().Format(time.TimeOnly))
	c.stage("recorder")

	published := active.metric(metricPublished)
	active.kill()
	killedAt := time.Now()
	t.Logf("killed the active %s at %s after %.0f tasks", active.name, killedAt.Format(time.TimeOnly), published)
	waitFor(t, 20*time.Second, func() bool { return standby.metric(metricPublished) > 0 }, "standby takes the scheduler lock")
	t.Logf("standby published its first task %s after the kill", time.Since(killedAt).Round(100*time.Millisecond))

	c.waitComplete(conn, m, false, m.Add(time.Minute+30*time.Second))
	next := m.Add(time.Minute)
	c.waitComplete(conn, next, true, next.Add(time.Minute+30*time.Second))
	t.Logf("minute of the kills: stored %d, missed %d of %d", c.storedIn(conn, m), c.missedIn(conn, m), c.opts.pks)
	c.checkInvariants(conn, []time.Time{next}, []time.Time{m})
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestGracefulShutdown (Kafka): SIGTERM a fetcher and a recorder in the
// middle of a minute: both exit 0 within --shutdown-timeout, and after they
// are restarted the minute is complete (or its unfetched pks are reported
// missed): nothing was acked that was not stored.
func TestGracefulShutdown(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx := processContext(t, 4*time.Minute)
	const shutdown = 15 * time.Second
	c := newCluster(t, ctx, clusterOpts{broker: config.BrokerKafka, pks: 1000, shards: 16, latency: 50 * time.Millisecond, concurrency: 8, shutdownWait: shutdown})
	conn := c.conn()
	recorder := c.stage("recorder")
	fetcher := c.stage("fetcher")
	c.stage("scheduler")

	m := firstMinute(55 * time.Second)
	sleepUntil(ctx, m.Add(time.Second))
	pollFetching(t, m.Add(15*time.Second), fetcher)
	waitFor(t, 15*time.Second, func() bool { return recorder.metric(metricStored) > 0 }, "recorder stores minute %s", m.Format(time.TimeOnly))
	require.Less(t, c.storedIn(conn, m), int64(c.opts.pks), "the minute was already complete: nothing in flight to interrupt")

	type exit struct {
		name string
		code int
		took time.Duration
	}
	exits := make(chan exit, 2)
	for _, p := range []*proc{fetcher, recorder} {
		go func() {
			code, took := p.terminate(shutdown + 5*time.Second)
			exits <- exit{p.name, code, took}
		}()
	}
	for range 2 {
		e := <-exits
		t.Logf("%s exited %d after SIGTERM in %s", e.name, e.code, e.took.Round(10*time.Millisecond))
		assert.Equal(t, 0, e.code, "%s exit code after SIGTERM", e.name)
		assert.LessOrEqual(t, e.took, shutdown+time.Second, "%s stopped within --shutdown-timeout", e.name)
	}
	storedAtStop := c.storedIn(conn, m)

	c.stage("fetcher")
	c.stage("recorder")
	c.waitComplete(conn, m, false, m.Add(time.Minute+30*time.Second))
	t.Logf("minute %s: stored %d at the stop, finally stored %d, missed %d of %d",
		m.Format(time.TimeOnly), storedAtStop, c.storedIn(conn, m), c.missedIn(conn, m), c.opts.pks)
	c.checkInvariants(conn, nil, []time.Time{m})
}

// TestProcessSuspicionStageKafka: the stand-alone suspicion stage on Kafka.
// With one-minute rounds, the scheduler process publishes the suspicion
// tasks, the suspicion process asks the simulator process (1-10 s per
// answer, as the real server) for every pk with data, and every pk ends up
// with exactly the simulator's answer; nothing is dead-lettered.
func TestProcessSuspicionStageKafka(t *testing.T) {
	skipShort(t)
	t.Parallel()
	ctx := processContext(t, 5*time.Minute)
	c := newCluster(t, ctx, clusterOpts{broker: config.BrokerKafka, pks: 200})
	c.env = append(c.env, "MOCKSTAGRAM_SUSPICION_INTERVAL=1m")
	conn := c.conn()

	c.stage("recorder")
	c.stage("fetcher")
	checker := c.stage("suspicion")
	c.stage("scheduler")

	answered := func() (n int64) {
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM suspicion WHERE pk BETWEEN $1 AND $2`, c.first, c.last).Scan(&n))
		return n
	}
	// The first round finds data only for the shards fetched before it;
	// the next round has data for every pk.
	waitFor(t, 4*time.Minute, func() bool { return answered() == int64(c.opts.pks) }, "an answer for each of the %d pks", c.opts.pks)

	rows, err := conn.Query(ctx, `SELECT pk, suspicious FROM suspicion WHERE pk BETWEEN $1 AND $2 ORDER BY pk`, c.first, c.last)
	require.NoError(t, err)
	defer rows.Close()
	suspicious := 0
	for rows.Next() {
		var (
			pk int64
			s  bool
		)
		require.NoError(t, rows.Scan(&pk, &s))
		assert.Equal(t, simulator.Suspicious(pk), s, "pk %d", pk)
		if s {
			suspicious++
		}
	}
	require.NoError(t, rows.Err())
	t.Logf("%d of %d pks suspicious", suspicious, c.opts.pks)
	assert.Zero(t, checker.metric(`mockstagram_dead_letters_total`), "dead letters published by the suspicion stage")
	assert.GreaterOrEqual(t, checker.metric(`mockstagram_suspicion_checks_total`), float64(c.opts.pks))
}
