package postgres_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/migrations"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
	"github.com/mockstagram/pipeline/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newStore(t testing.TB, clock clockwork.Clock, opts ...postgres.Option) (*postgres.Store, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	s, err := postgres.New(context.Background(), dsn, discard(), clock, opts...)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s, dsn
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
		return s
	})
}

// TestContractRealClock runs the suite with a clock far from the suite's
// minutes: every sample lands in a day without a partition, which Record
// must create on demand.
func TestContractRealClock(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newStore(t, clockwork.NewFakeClockAt(time.Date(2024, 2, 29, 23, 59, 0, 0, time.UTC)))
		return s
	})
}

func partitions(t *testing.T, s *postgres.Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'samples'::regclass ORDER BY c.relname`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()

	require.NoError(t, migrations.Up(ctx, db, discard()))
	require.NoError(t, migrations.Up(ctx, db, discard()))
	var version int64
	require.NoError(t, db.QueryRowContext(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&version))
	assert.EqualValues(t, 13, version)
	var metaRows int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM registry_meta`).Scan(&metaRows))
	assert.Equal(t, 1, metaRows)
}

func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.Migrate(context.Background(), dsn, discard()) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

func TestLeanTimeline(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	// Only the primary key indexes the (partitioned) timeline.
	var indexes []string
	rows, err := s.Pool().Query(context.Background(), `SELECT indexname FROM pg_indexes WHERE tablename = 'samples'`)
	require.NoError(t, err)
	indexes, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"samples_pkey"}, indexes)
}

func TestPartitions(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC))
	s, _ := newStore(t, clock)
	want := []string{"samples_20261230", "samples_20261231", "samples_20270101", "samples_20270102"}
	assert.Equal(t, want, partitions(t, s), "after New")

	require.NoError(t, s.Maintain(context.Background()), "Maintain is idempotent")
	assert.Equal(t, want, partitions(t, s))

	clock.Advance(time.Hour) // 2027-01-01 00:30
	require.NoError(t, s.Maintain(context.Background()))
	assert.Equal(t, append(want, "samples_20270103"), partitions(t, s), "Maintain after midnight")
}

func TestConcurrentMaintain(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(storetest.Now())
	s, _ := newStore(t, clock)
	clock.Advance(30 * 24 * time.Hour) // four new partitions to race for, four old ones to drop
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Maintain(context.Background()) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, []string{"samples_20261224", "samples_20261225", "samples_20261226", "samples_20261227"}, partitions(t, s))
}

func TestRecordCreatesPartition(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	tests := []struct {
		name      string
		minute    time.Time
		partition string
	}{
		{"far past", time.Date(2001, 1, 2, 3, 4, 0, 0, time.UTC), "samples_20010102"},
		{"far future", time.Date(2040, 6, 30, 23, 59, 0, 0, time.UTC), "samples_20400630"},
		{"non-UTC minute", time.Date(2030, 3, 1, 0, 30, 0, 0, time.FixedZone("x", 3600)), "samples_20300228"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Record(ctx, influencer.Batch{Minute: tc.minute, Samples: []influencer.Sample{
				{PK: 1, Username: "a", FollowerCount: 1, FollowingCount: 1, Minute: tc.minute},
				{PK: 2, Username: "b", FollowerCount: 2, FollowingCount: 2, Minute: tc.minute.Add(-24 * time.Hour)},
			}})
			require.NoError(t, err)
			assert.Equal(t, 2, res.Inserted)
			assert.Contains(t, partitions(t, s), tc.partition)
			tl, err := s.Timeline(ctx, 1, tc.minute, tc.minute.Add(time.Minute), 10)
			require.NoError(t, err)
			require.Len(t, tl, 1)
			assert.True(t, tl[0].Minute.Equal(tc.minute))
		})
	}
}

func TestLeaseLostWhenConnectionKilled(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()), postgres.WithLeaseCheckInterval(50*time.Millisecond))
	ctx := context.Background()
	lease, ok, err := s.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok)

	var terminated bool
	require.NoError(t, s.Pool().QueryRow(ctx, `
SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&terminated))
	require.True(t, terminated)

	select {
	case <-lease.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed after the lock's connection was killed")
	}
	assert.NoError(t, lease.Release(ctx))

	next, ok, err := s.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok, "the lock died with the connection")
	require.NoError(t, next.Release(ctx))
}

func TestLeaseAcrossStores(t *testing.T) {
	t.Parallel()
	a, dsn := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	b, err := postgres.New(context.Background(), dsn, discard(), clockwork.NewFakeClockAt(storetest.Now()))
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()

	la, ok, err := a.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = b.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	assert.False(t, ok, "another process holds it")
	require.NoError(t, la.Release(ctx))
	lb, ok, err := b.TryLead(ctx, "scheduler")
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, lb.Release(ctx))
}
