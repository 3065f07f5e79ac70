package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/storetest"
)

// TestReadsUseTheReadPool: with every connection of the write pool held
// (as by the recorder's batches and the broker), the API's reads still
// answer, each from one acquire of the read pool.
func TestReadsUseTheReadPool(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()), postgres.WithReadConns(2))
	_, err := s.Track(ctx, []int64{1, 2})
	require.NoError(t, err)
	m := storetest.Now().Truncate(time.Minute)
	_, err = s.Record(ctx, influencer.Batch{Minute: m, Samples: []influencer.Sample{
		{PK: 1, Username: "one", FollowerCount: 10, FollowingCount: 1, Minute: m},
		{PK: 2, Username: "two", FollowerCount: 20, FollowingCount: 2, Minute: m},
	}})
	require.NoError(t, err)

	assert.Equal(t, int32(2), s.ReadPoolStat().MaxConns())
	writes := s.Pool()
	for range writes.Config().MaxConns {
		c, err := writes.Acquire(ctx)
		require.NoError(t, err)
		t.Cleanup(c.Release)
	}
	require.Equal(t, writes.Config().MaxConns, writes.Stat().AcquiredConns(), "write pool exhausted")
	writeAcquires := writes.Stat().AcquireCount()
	readAcquires := s.ReadPoolStat().AcquireCount()

	// A read that waited for the write pool would end with this deadline.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sum, err := s.Summary(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, "one", sum.Username)
	rank, err := s.Rank(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(2), rank)
	points, err := s.Timeline(ctx, 2, m, m.Add(time.Minute), 10)
	require.NoError(t, err)
	assert.Equal(t, []influencer.Point{{Minute: m.UTC(), FollowerCount: 20, FollowingCount: 2}}, points)
	board, err := s.Leaderboard(ctx, nil, 10)
	require.NoError(t, err)
	require.Len(t, board, 2)
	assert.Equal(t, int64(2), board[0].PK)
	st, err := s.Stats(ctx, m)
	require.NoError(t, err)
	assert.Equal(t, int64(2), st.Tracked)
	missed, err := s.MissedSince(ctx, m.Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, missed)

	assert.Equal(t, readAcquires+6, s.ReadPoolStat().AcquireCount(), "one read-pool acquire per read")
	assert.Equal(t, writeAcquires, writes.Stat().AcquireCount(), "no read from the write pool")
}
