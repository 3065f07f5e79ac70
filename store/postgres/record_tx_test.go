package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/storetest"
)

// txBatch is a batch of n samples of minute m from pk 1000 on.
func txBatch(m time.Time, n int) influencer.Batch {
	b := influencer.Batch{Minute: m, Shard: 3}
	for i := range n {
		pk := int64(1000 + i)
		b.Samples = append(b.Samples, influencer.Sample{PK: pk, Username: "u", FollowerCount: 10 * pk, FollowingCount: pk, Minute: m, FetchedAt: m})
	}
	return b
}

func storedPoints(t *testing.T, s *postgres.Store, b influencer.Batch) int {
	t.Helper()
	n := 0
	for _, smp := range b.Samples {
		pts, err := s.Timeline(context.Background(), smp.PK, b.Minute, b.Minute.Add(time.Minute), 10)
		require.NoError(t, err)
		for _, p := range pts {
			assert.Equal(t, smp.FollowerCount, p.FollowerCount, "pk %d", smp.PK)
		}
		n += len(pts)
	}
	return n
}

// RecordInTx writes the batch in the caller's transaction: it is stored if
// and only if that transaction commits, and a batch stored so is a
// duplicate for the idempotent Record afterwards.
func TestRecordInTxCommitsWithTheTransaction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		commit bool
	}{{"commit", true}, {"rollback", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
			ctx := context.Background()
			b := txBatch(storetest.Now(), 5)
			tx, err := s.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
			require.NoError(t, err)
			res, err := s.RecordInTx(ctx, tx, b)
			require.NoError(t, err)
			assert.Equal(t, store.RecordResult{Inserted: 5}, res)
			assert.Zero(t, storedPoints(t, s, b), "visible before the commit")
			if tc.commit {
				require.NoError(t, tx.Commit(ctx))
			} else {
				require.NoError(t, tx.Rollback(ctx))
			}
			want := 0
			if tc.commit {
				want = 5
			}
			assert.Equal(t, want, storedPoints(t, s, b))
			res, err = s.Record(ctx, b)
			require.NoError(t, err)
			assert.Equal(t, store.RecordResult{Inserted: 5 - want, Duplicates: want}, res)
			sum, err := s.Summary(ctx, 1000)
			require.NoError(t, err)
			assert.Equal(t, int64(1), sum.Samples, "the minute counts once")
		})
	}
}

// A failed attempt (the store rejects a row) rolls back to its savepoint:
// the transaction stays usable for the next batch and for the broker's own
// statements, and only what succeeded commits.
func TestRecordInTxFailureLeavesTheTransactionUsable(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	m := storetest.Now()
	bad := txBatch(m, 3)
	bad.Failures = []influencer.Failure{{PK: 2000, Minute: m, Class: "http_5xx", Reason: "a\x00b"}}
	good := txBatch(m.Add(time.Minute), 3)

	tx, err := s.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	require.NoError(t, err)
	_, err = s.RecordInTx(ctx, tx, bad)
	require.ErrorIs(t, err, store.ErrInvalid)
	res, err := s.RecordInTx(ctx, tx, good)
	require.NoError(t, err)
	assert.Equal(t, store.RecordResult{Inserted: 3}, res)
	var one int
	require.NoError(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&one), "the transaction is not aborted")
	require.NoError(t, tx.Commit(ctx))

	assert.Zero(t, storedPoints(t, s, bad), "the rejected batch")
	assert.Equal(t, 3, storedPoints(t, s, good))
	missed, err := s.MissedSince(ctx, m.Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, missed)
}

// A sample of a day without a partition: the partition is created (by
// another connection) and the attempt retried inside the transaction.
func TestRecordInTxCreatesPartitions(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClockAt(time.Date(2024, 2, 29, 23, 59, 0, 0, time.UTC)))
	ctx := context.Background()
	b := txBatch(storetest.Now(), 4)
	tx, err := s.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	require.NoError(t, err)
	res, err := s.RecordInTx(ctx, tx, b)
	require.NoError(t, err)
	assert.Equal(t, store.RecordResult{Inserted: 4}, res)
	require.NoError(t, tx.Commit(ctx))
	assert.Equal(t, 4, storedPoints(t, s, b))
}

// A transaction whose connection is gone: the error is returned, nothing
// is stored.
func TestRecordInTxLostConnection(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	ctx := context.Background()
	b := txBatch(storetest.Now(), 2)
	conn, err := s.Pool().Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	require.NoError(t, err)
	var pid int
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	_, err = s.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
	require.NoError(t, err)
	_, err = s.RecordInTx(ctx, tx, b)
	require.Error(t, err)
	assert.NotErrorIs(t, err, store.ErrInvalid)
	assert.Zero(t, storedPoints(t, s, b))
}
