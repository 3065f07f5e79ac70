package test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// startPipelineAt is startPipeline with the fake clock at at; the caller
// stops the returned app (a stop registered with t.Cleanup as well is
// harmless).
func startPipelineAt(t *testing.T, cfg config.Config, at time.Time) (*pipeline, *fxtest.App) {
	p := &pipeline{clock: clockwork.NewFakeClockAt(at), published: map[time.Time]float64{}}
	a := fxtest.New(t,
		app.Options(cfg, app.AllRoles()),
		fx.Decorate(func(clockwork.Clock) clockwork.Clock { return p.clock }),
		fx.Populate(&p.store, &p.pub, &p.metrics, &p.http),
	)
	a.RequireStart()
	return p, a
}

// TestRestartMidMinuteReportsUnscheduledMinutes is issue 10's sequence:
// 'run' stops at second 30 of a minute (SIGTERM; with the gochannel broker
// the tasks not yet fetched are lost as with kill -9) and starts again 80 s
// later. The shards of that minute nobody scheduled are recorded as missed
// with class not-scheduled, so that every (pk, minute) is stored or missed,
// and the last complete minute never passes the incomplete minute.
func TestRestartMidMinuteReportsUnscheduledMinutes(t *testing.T) {
	cfg := testConfigStore(t, "postgres")
	cfg.Broker = config.BrokerGoChannel
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(ctx) }()
	count := func(sql string, m time.Time) int {
		var n int
		require.NoError(t, conn.QueryRow(ctx, sql, m).Scan(&n))
		return n
	}
	storedIn := func(m time.Time) int { return count(`SELECT count(*) FROM samples WHERE minute = $1`, m) }
	missedIn := func(m time.Time) int { return count(`SELECT count(*) FROM missed WHERE minute = $1`, m) }

	m0, m1, m2, m3 := start, start.Add(time.Minute), start.Add(2*time.Minute), start.Add(3*time.Minute)
	shards := handlers.Assign(influencer.Range{From: firstPK, To: firstPK + numPKs - 1}.PKs(), cfg.Shards)
	sched := handlers.NewScheduler(nil, nil, nil, handlers.SchedulerConfig{Shards: cfg.Shards, SpreadWindow: cfg.SpreadWindow}, nil, nil)
	stopAt := m1.Add(30 * time.Second)
	dueAtStop, lost := 0, map[int64]bool{}
	for s, pks := range shards {
		if sched.Offset(s) <= stopAt.Sub(m1) {
			dueAtStop += len(pks)
			continue
		}
		for _, pk := range pks {
			lost[pk] = true
		}
	}
	require.NotEmpty(t, lost)

	// First run: minute 0 in full, minute 1 up to second 30.
	p, a := startPipelineAt(t, cfg, m0)
	// advance moves the clock to until in one-second steps, after each
	// waiting (briefly) until the shards due by then are published.
	advance := func(until time.Time) {
		t.Helper()
		for p.clock.Now().Before(until) {
			p.clock.Advance(time.Second)
			now := p.clock.Now()
			m := now.Truncate(time.Minute)
			published := testutil.ToFloat64(p.metrics.TasksPublished)
			due := 0
			for s, pks := range shards {
				if len(pks) > 0 && sched.Offset(s) <= now.Sub(m) && sched.Offset(s) > now.Add(-time.Second).Sub(m) {
					due++
				}
			}
			// As runMinute: a timer registered just after an Advance fires
			// a step late, so a miss here is not an error.
			pollUntil(2*time.Second, func() bool { return testutil.ToFloat64(p.metrics.TasksPublished) >= published+float64(due) })
		}
	}
	p.runMinute(t, cfg, m0, numPKs)
	advance(stopAt)
	p.waitNudging(t, stopAt, func() bool { return storedIn(m1) == dueAtStop }, "the shards due by second 30 stored")
	a.RequireStop()
	require.Equal(t, dueAtStop, storedIn(m1))
	require.Zero(t, missedIn(m1))

	// Restart 80 s later. Whenever the last complete minute is at or past
	// minute 1, every pk of minute 1 is stored or missed.
	p, a = startPipelineAt(t, cfg, stopAt.Add(80*time.Second))
	defer a.RequireStop()
	checkNeverPasses := func(what string) {
		t.Helper()
		st, err := p.store.Stats(ctx, p.clock.Now())
		require.NoError(t, err)
		if !st.LastCompleteMinute.Before(m1) {
			assert.Equal(t, numPKs, storedIn(m1)+missedIn(m1),
				"%s: the last complete minute %s passed minute 1 before it was accounted for", what, st.LastCompleteMinute.Format(time.TimeOnly))
		}
	}
	checkNeverPasses("restarted")
	p.waitNudging(t, m3, func() bool {
		checkNeverPasses("minute 2 being fetched")
		return storedIn(m2) == numPKs
	}, "minute 2 stored after the restart")
	checkNeverPasses("minute 2 stored")
	// Minute 3 in full (its deadline passes minute 2's reconciliation):
	// fetches retried or waiting for an adaptive-limit window wait on the
	// fake clock, so it creeps on while waiting.
	advance(m3.Add(50 * time.Second))
	p.waitNudging(t, m3.Add(59*time.Second), func() bool { return storedIn(m3) == numPKs }, "minute 3 stored")
	waitFor(t, 30*time.Second, func() bool { return storedIn(m1)+missedIn(m1) == numPKs }, "minute 1 accounted for")

	// Every (pk, minute) exactly once: stored or missed; the misses are the
	// pks of the shards nobody scheduled, class not-scheduled.
	for _, m := range []time.Time{m0, m1, m2, m3} {
		assert.Equal(t, numPKs, count(`
SELECT count(*) FROM generate_series(1000000, 1000299) AS g(pk)
WHERE (SELECT count(*) FROM samples s WHERE s.pk = g.pk AND s.minute = $1)
    + (SELECT count(*) FROM missed x WHERE x.pk = g.pk AND x.minute = $1) = 1`, m), "minute %s", m.Format(time.TimeOnly))
	}
	rows, err := conn.Query(ctx, `SELECT pk, class, reason FROM missed WHERE minute = $1 ORDER BY pk`, m1)
	require.NoError(t, err)
	missed := map[int64]bool{}
	for rows.Next() {
		var (
			pk            int64
			class, reason string
		)
		require.NoError(t, rows.Scan(&pk, &class, &reason))
		assert.Equal(t, store.ClassNotScheduled, class, "pk %d", pk)
		assert.Equal(t, handlers.ReasonNotScheduled, reason, "pk %d", pk)
		missed[pk] = true
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, lost, missed, "the pks of the shards not scheduled before the stop")
	assert.Zero(t, missedIn(m0)+missedIn(m2)+missedIn(m3))
	assert.Equal(t, float64(len(lost)), testutil.ToFloat64(p.metrics.MissedNotScheduled))

	st, err := p.store.Stats(ctx, p.clock.Now())
	require.NoError(t, err)
	assert.Equal(t, m3, st.LastCompleteMinute)
	assert.EqualValues(t, len(lost), st.MissedLastHour)
}
