package postgres

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
)

// TestExplainRecordMillion (MOCKSTAGRAM_EXPLAIN_RECORD=1; it loads a
// million influencers) logs EXPLAIN (ANALYZE, BUFFERS, WAL) of recordSQL
// for one shard's batch of the third minute, after two minutes recorded
// shard by shard: where a batch's buffer accesses and WAL go, node by
// node. The batch is rolled back.
func TestExplainRecordMillion(t *testing.T) {
	if os.Getenv("MOCKSTAGRAM_EXPLAIN_RECORD") == "" {
		t.Skip("set MOCKSTAGRAM_EXPLAIN_RECORD=1 to run (loads one million influencers)")
	}
	ctx := context.Background()
	start := time.Date(2026, 11, 25, 11, 58, 0, 0, time.UTC)
	s, err := New(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler), clockwork.NewFakeClockAt(start.Add(3*time.Minute)))
	require.NoError(t, err)
	t.Cleanup(s.Close)
	const n, shards = 1_000_000, 1024
	require.NoError(t, LoadFixture(ctx, s.pool, n, 1, start))
	_, err = s.pool.Exec(ctx, `UPDATE rollup_watermark SET folded_before = $1`, start.Truncate(time.Hour))
	require.NoError(t, err)
	byShard := make([][]int64, shards)
	for pk := int64(FixtureFirstPK); pk < FixtureFirstPK+n; pk++ {
		sh := influencer.ShardOf(pk, shards)
		byShard[sh] = append(byShard[sh], pk)
	}
	batch := func(minute time.Time, shard int) influencer.Batch {
		b := influencer.Batch{Minute: minute, Shard: shard}
		for _, pk := range byShard[shard] {
			f, g := simulator.Counts(pk, minute)
			b.Samples = append(b.Samples, influencer.Sample{PK: pk, Username: simulator.Username(pk),
				FollowerCount: f, FollowingCount: g, Minute: minute})
		}
		return b
	}
	for m := 1; m <= 2; m++ {
		for shard := range shards {
			_, err := s.Record(ctx, batch(start.Add(time.Duration(m)*time.Minute), shard))
			require.NoError(t, err)
		}
	}
	b := batch(start.Add(3*time.Minute), 7)
	var (
		pks, followers, following []int64
		minutes                   []time.Time
		usernames                 []string
		buckets                   []int32
	)
	for _, smp := range b.Samples {
		pks, minutes, followers, following = append(pks, smp.PK), append(minutes, smp.Minute),
			append(followers, smp.FollowerCount), append(following, smp.FollowingCount)
		usernames, buckets = append(usernames, smp.Username), append(buckets, int32(store.MissedBucket(smp.PK)))
	}
	tx, err := s.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	classes, keys, excl := recordLocks(b.Samples, nil)
	_, err = tx.Exec(ctx, recordLockSQL, classes, keys, excl)
	require.NoError(t, err)
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) "+recordSQL,
		pks, minutes, followers, following, usernames, buckets,
		[]time.Time{}, []int32{}, []string{}, []string{}, []int64{}, []int64{}, start, stripeOf(7), []time.Time{})
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, l := range lines {
		t.Log(l)
	}
}
