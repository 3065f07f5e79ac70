package test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

// A transaction held open in another database of the same server for the
// whole run (it has a transaction id, so it is the oldest in every snapshot
// of the server, which watermill-sql's offset schema would wait for) does
// not hold the Postgres broker back: with the Postgres store and the
// suspicion stage on, every (pk, minute) of three minutes is stored within
// its minute (runMinute waits at 58 s of each), once, with the simulator's
// values.
func TestLongTransactionInAnotherDatabaseOnPostgres(t *testing.T) {
	cfg := testConfig(t, setup{config.BrokerPostgres, "postgres"})
	cfg.SuspicionInterval = 3 * time.Minute
	ctx := context.Background()

	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	long, err := conn.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = long.Rollback(context.Background()) })
	var xid string
	require.NoError(t, long.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid))

	p := startPipeline(t, cfg) // stopped (cleanup) before the long transaction ends
	db, err := pgxpool.New(ctx, cfg.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	for i := range minutes {
		p.runMinute(t, cfg, start.Add(time.Duration(i)*time.Minute), numPKs)
	}

	// The long transaction is still open and still the server's oldest.
	var open, oldest bool
	require.NoError(t, long.QueryRow(ctx, `SELECT true`).Scan(&open))
	require.NoError(t, db.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot()) <= $1::xid8`, xid).Scan(&oldest))
	require.True(t, open)
	require.True(t, oldest, "transaction %s is no longer the oldest of the server", xid)

	for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
		pts, err := p.store.Timeline(ctx, pk, start.Add(-time.Hour), start.Add(time.Hour), 1000)
		require.NoError(t, err)
		require.Len(t, pts, minutes, "pk %d", pk)
		for i, pt := range pts {
			m := start.Add(time.Duration(i) * time.Minute)
			f, g := simulator.Counts(pk, m)
			require.Equal(t, influencer.Point{Minute: m, FollowerCount: f, FollowingCount: g}, normalize(pt), "pk %d minute %d", pk, i)
		}
		s, err := p.store.Summary(ctx, pk)
		require.NoError(t, err)
		assert.Equal(t, int64(minutes), s.Samples, "pk %d", pk)
	}
	missed, err := p.store.MissedSince(ctx, start.Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, missed)
	// Counted once each, just after its commit.
	waitFor(t, 10*time.Second, func() bool { return testutil.ToFloat64(p.metrics.SamplesStored) == numPKs*minutes }, "samples stored counted")
	assert.Zero(t, testutil.ToFloat64(p.metrics.SamplesDuplicate), "a result delivered twice")

	// The suspicion stage ran on the same broker meanwhile.
	answered := 0
	for pk := int64(firstPK); pk < firstPK+numPKs; pk++ {
		s, err := p.store.Summary(ctx, pk)
		require.NoError(t, err)
		if s.Suspicion != nil {
			answered++
			assert.Equal(t, simulator.Suspicious(pk), s.Suspicion.Suspicious, "pk %d", pk)
		}
	}
	assert.Positive(t, answered, "suspicion answers stored")
}

// Exactly once on the Postgres broker: the recorder writes the batch in the
// message's read transaction, which commits with the ack. A fault after the
// write and before the commit (the transaction's connection terminated, as
// a crash of the process ends it) leaves neither the rows nor the ack: the
// message comes again, and its second delivery inserts every row (none is a
// duplicate of the first). Its commit stores the rows and deletes the queue
// row at once: no observation sees one without the other, and nothing is
// left to deliver again.
func TestRecorderExactlyOnceOnPostgresBroker(t *testing.T) {
	ctx := context.Background()
	_, s, b, sub := recorderOnPostgresBroker(t)
	subCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	deliveries, err := sub.Subscribe(subCtx, messages.TopicFetcherResults)
	require.NoError(t, err)
	m := metrics.New(prometheus.NewRegistry())
	r := handlers.NewRecorder(s, slog.New(slog.DiscardHandler), m)

	const n = 20
	batch := influencer.Batch{Minute: start, Shard: 3}
	for pk := int64(firstPK); pk < firstPK+n; pk++ {
		f, g := simulator.Counts(pk, start)
		batch.Samples = append(batch.Samples, influencer.Sample{PK: pk, Username: simulator.Username(pk),
			FollowerCount: f, FollowingCount: g, Minute: start, FetchedAt: start})
	}
	msg, err := messages.NewResult(batch)
	require.NoError(t, err)
	require.NoError(t, b.Publisher().Publish(messages.TopicFetcherResults, msg))

	type state struct{ rows, queued int }
	observe := func() state {
		var st state
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM samples WHERE minute = $1),
	(SELECT count(*) FROM watermill_queue_fetcher_results)`, start).Scan(&st.rows, &st.queued))
		return st
	}
	next := func() *message.Message {
		t.Helper()
		select {
		case d := <-deliveries:
			return d
		case <-time.After(30 * time.Second):
			t.Fatal("no delivery within 30 s")
			return nil
		}
	}

	first := next()
	require.NoError(t, r.Handle(first))
	assert.Equal(t, state{0, 1}, observe(), "rows visible before the commit")
	// The fault: the read transaction's connection ends before the commit.
	// It is the only one with a transaction id (the row lock).
	var pid int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND backend_xid IS NOT NULL AND state = 'idle in transaction'`).Scan(&pid))
	var terminated bool
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&terminated))
	require.True(t, terminated)
	waitFor(t, 30*time.Second, func() bool {
		var gone bool
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&gone))
		return gone
	}, "backend %d gone", pid)
	first.Ack() // the router acks: the broker's ack fails with the connection
	assert.Equal(t, state{0, 1}, observe(), "neither the rows nor the ack")
	assert.Zero(t, testutil.ToFloat64(m.SamplesStored), "counted although its commit failed")

	second := next()
	require.Equal(t, first.UUID, second.UUID)
	require.NoError(t, r.Handle(second))
	assert.Zero(t, testutil.ToFloat64(m.SamplesDuplicate), "the first write left no row behind")
	second.Ack()
	waitFor(t, 30*time.Second, func() bool {
		st := observe()
		require.Contains(t, []state{{0, 1}, {n, 0}}, st, "rows and ack commit together")
		return st == state{n, 0}
	}, "second delivery committed")
	// Counted after the commit, by the goroutine that commits.
	waitFor(t, 30*time.Second, func() bool { return testutil.ToFloat64(m.SamplesStored) >= float64(n) }, "second delivery counted")
	assert.Equal(t, float64(n), testutil.ToFloat64(m.SamplesStored), "counted once")
	for _, smp := range batch.Samples {
		pts, err := s.Timeline(ctx, smp.PK, start, start.Add(time.Minute), 10)
		require.NoError(t, err)
		require.Equal(t, []influencer.Point{{Minute: start, FollowerCount: smp.FollowerCount, FollowingCount: smp.FollowingCount}},
			normalizeAll(pts), "pk %d", smp.PK)
		sum, err := s.Summary(ctx, smp.PK)
		require.NoError(t, err)
		assert.Equal(t, int64(1), sum.Samples, "pk %d", smp.PK)
	}
	require.NoError(t, sub.Close())
}

func normalizeAll(pts []influencer.Point) []influencer.Point {
	out := make([]influencer.Point, len(pts))
	for i, p := range pts {
		out[i] = normalize(p)
	}
	return out
}

// Closing the Postgres broker's subscriber (the router does on shutdown)
// while the recorder writes in a message's read transaction: Close waits
// for the handler's ack instead of ending the transaction under the write
// (the loop's commit on the connection the write uses), and the write
// commits with its ack. Run with -race: nothing touches the connection
// from two goroutines.
func TestPostgresBrokerCloseWaitsForTheRecordersWrite(t *testing.T) {
	ctx := context.Background()
	dsn, s, b, sub := recorderOnPostgresBroker(t)
	deliveries, err := sub.Subscribe(ctx, messages.TopicFetcherResults)
	require.NoError(t, err)
	r := handlers.NewRecorder(s, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	f, g := simulator.Counts(firstPK, start)
	msg, err := messages.NewResult(influencer.Batch{Minute: start, Shard: 3, Samples: []influencer.Sample{
		{PK: firstPK, Username: simulator.Username(firstPK), FollowerCount: f, FollowingCount: g, Minute: start, FetchedAt: start}}})
	require.NoError(t, err)
	require.NoError(t, b.Publisher().Publish(messages.TopicFetcherResults, msg))
	var d *message.Message
	select {
	case d = <-deliveries:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery within 30 s")
	}

	// Another session holds every table lock the write needs (the
	// registry lock Record takes shared), so the write waits in the
	// transaction while Close is called.
	blocker, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = blocker.Close(context.Background()) })
	_, err = blocker.Exec(ctx, `SELECT pg_advisory_lock(x'6d6b7374'::int, 1)`)
	require.NoError(t, err)
	handled := make(chan error, 1)
	go func() {
		err := r.Handle(d)
		if err == nil {
			d.Ack()
		} else {
			d.Nack()
		}
		handled <- err
	}()
	waitFor(t, 30*time.Second, func() bool {
		var waiting bool
		require.NoError(t, s.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND state = 'active')`).Scan(&waiting))
		return waiting
	}, "the write waiting for the lock")
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	_, err = blocker.Exec(ctx, `SELECT pg_advisory_unlock(x'6d6b7374'::int, 1)`)
	require.NoError(t, err)
	require.NoError(t, <-handled)
	require.NoError(t, <-closed)

	var rows, queued int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM samples),
	(SELECT count(*) FROM watermill_queue_fetcher_results)`).Scan(&rows, &queued))
	assert.Equal(t, 1, rows, "the write committed")
	assert.Zero(t, queued, "with its ack")
}

// recorderOnPostgresBroker opens a Postgres store on a fresh database, the
// Postgres broker on its pool and a subscriber of the recorder's consumer
// group, all closed when the test ends.
func recorderOnPostgresBroker(t *testing.T) (string, *postgres.Store, *broker.Broker, message.Subscriber) {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	dsn := pgtest.NewDatabase(t)
	s, err := postgres.New(ctx, dsn, logger, clockwork.NewFakeClockAt(start))
	require.NoError(t, err)
	t.Cleanup(s.Close)
	cfg := config.Default()
	cfg.Broker = config.BrokerPostgres
	b, err := broker.New(ctx, cfg, broker.Deps{Pool: s.Pool(), Logger: logger})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	sub, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerRecorder))
	require.NoError(t, err)
	return dsn, s, b, sub
}
