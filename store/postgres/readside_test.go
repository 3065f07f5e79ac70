package postgres_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/migrations"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
	"github.com/mockstagram/pipeline/store/storetest"
)

// TestRankBucketSQL checks that the SQL rank_bucket and store.RankBucket
// agree, around every power of two and at the limits.
func TestRankBucketSQL(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	var counts []int64
	for c := range int64(5000) {
		counts = append(counts, c)
	}
	for e := 11; e <= 34; e++ {
		p := int64(1) << e
		for d := int64(-3); d <= 3; d++ {
			counts = append(counts, p-1+d)
		}
		counts = append(counts, p+p/3, p+p/2+7)
	}
	counts = append(counts, influencer.MaxCount, influencer.MaxCount-1, 999_999, 1_000_000, 1_000_001)
	rows, err := s.Pool().Query(context.Background(), `SELECT rank_bucket(c) FROM unnest($1::bigint[]) WITH ORDINALITY AS u(c, i) ORDER BY i`, counts)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Len(t, got, len(counts))
	prev := 0
	for i, c := range counts {
		want := store.RankBucket(c)
		assert.Equal(t, want, int(got[i]), "count %d", c)
		if i > 0 && c > counts[i-1] {
			assert.GreaterOrEqual(t, want, prev, "monotonic at %d", c)
		}
		prev = want
	}
	assert.Less(t, store.RankBucket(influencer.MaxCount), 1<<15)
	// Buckets are at most ~0.1 % wide.
	for _, c := range []int64{2047, 50_000, 1_000_000, influencer.MaxCount / 2} {
		hi := c
		for store.RankBucket(hi+1) == store.RankBucket(c) {
			hi++
		}
		assert.LessOrEqual(t, float64(hi-c), math.Max(1, float64(c)/1000), "width at %d", c)
	}
}

func TestRetentionDropsPartitions(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	s, _ := newStore(t, clock, postgres.WithRetention(48*time.Hour))
	ctx := context.Background()
	_, err := s.Track(ctx, []int64{1})
	require.NoError(t, err)
	for d := range 5 {
		m := start.AddDate(0, 0, d)
		_, err := s.Record(ctx, influencer.Batch{Minute: m, Samples: []influencer.Sample{
			{PK: 1, Username: "u", FollowerCount: int64(100 + d), FollowingCount: 1, Minute: m},
		}, Failures: []influencer.Failure{{PK: 2, Minute: m, Class: "timeout"}}})
		require.NoError(t, err)
	}
	clock.Advance(4 * 24 * time.Hour) // 2026-03-05 12:00: keep from 03-03 00:00 on
	require.NoError(t, s.Maintain(ctx))
	assert.Equal(t, []string{"samples_20260303", "samples_20260304", "samples_20260305", "samples_20260306", "samples_20260307"},
		partitions(t, s))
	tl, err := s.Timeline(ctx, 1, start.AddDate(0, 0, -1), start.AddDate(0, 0, 10), 100)
	require.NoError(t, err)
	require.Len(t, tl, 3)
	assert.Equal(t, start.AddDate(0, 0, 2), tl[0].Minute)
	n, err := s.MissedSince(ctx, time.Time{})
	require.NoError(t, err)
	assert.EqualValues(t, 3, n)
	var progressRows int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM minute_progress`).Scan(&progressRows))
	assert.Equal(t, 2, progressRows, "progress older than a day is pruned")
	daily, err := s.Rollup(ctx, 1, 24*time.Hour, start.AddDate(0, 0, -1), start.AddDate(0, 0, 10), 100)
	require.NoError(t, err)
	assert.Len(t, daily, 5, "rollups are kept")
	sum, err := s.Summary(ctx, 1)
	require.NoError(t, err)
	assert.EqualValues(t, 5, sum.Samples)
	st, err := s.Stats(ctx, start.AddDate(0, 0, 4))
	require.NoError(t, err)
	assert.Equal(t, start.AddDate(0, 0, 4), st.LastCompleteMinute, "the registry baseline survives pruning")
}

// TestMigrationBackfill checks that migrations 00004 and 00007 derive the read side
// from data written before it exactly as Record maintains it: one database
// gets the data through Record on the final schema, another gets the same
// version-3 rows at version 3 and is then migrated.
func TestMigrationBackfill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	recorded, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	_, err := recorded.Track(ctx, []int64{1, 2, 3})
	require.NoError(t, err)
	var samples []influencer.Sample
	for m := range 3 {
		minute := storetest.Now().Add(time.Duration(m*40) * time.Minute)
		batch := []influencer.Sample{
			{PK: 1, Username: "a", FollowerCount: int64(100*m + 5000), FollowingCount: int64(5 + m), Minute: minute},
			{PK: 2, Username: "b", FollowerCount: 3000, FollowingCount: 6, Minute: minute},
			{PK: 4, Username: "d", FollowerCount: int64(9 - m), FollowingCount: 7, Minute: minute},
		}
		samples = append(samples, batch...)
		_, err := recorded.Record(ctx, influencer.Batch{Minute: minute, Samples: batch})
		require.NoError(t, err)
	}

	dsn := pgtest.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	require.NoError(t, migrations.UpTo(ctx, db, discard(), 3))
	old, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer old.Close()
	for _, q := range []string{
		`SELECT ensure_sample_partitions($1::date, 2)`,
		`INSERT INTO influencers (pk, active, updated_at) VALUES (1, true, $1), (2, true, $1), (3, true, $1)`,
	} {
		_, err = old.Exec(ctx, q, storetest.Now())
		require.NoError(t, err)
	}
	for _, smp := range samples { // what version 3's Record wrote
		_, err := old.Exec(ctx, `
WITH ins AS (INSERT INTO samples VALUES ($1, $2, $3, $4))
INSERT INTO influencer_summary AS s (pk, username, follower_count, following_count, last_minute, samples, follower_sum)
VALUES ($1, $5, $3, $4, $2, 1, $3)
ON CONFLICT (pk) DO UPDATE SET samples = s.samples + 1, follower_sum = s.follower_sum + EXCLUDED.follower_sum,
    username = EXCLUDED.username, follower_count = EXCLUDED.follower_count,
    following_count = EXCLUDED.following_count, last_minute = EXCLUDED.last_minute`,
			smp.PK, smp.Minute, smp.FollowerCount, smp.FollowingCount, smp.Username)
		require.NoError(t, err)
	}
	require.NoError(t, migrations.Up(ctx, db, discard()))

	snapshot := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) map[string]string {
		out := map[string]string{}
		for name, sql := range map[string]string{
			"buckets": `SELECT array_agg(level || ':' || bucket || ':' || n ORDER BY level, bucket)::text FROM rank_buckets WHERE n <> 0`,
			"stats":   `SELECT sum(influencers) || '/' || sum(follower_total) FROM global_stats`,
			"summary": `SELECT array_agg(pk || ':' || active || ':' || rank_bucket || ':' || follower_count ORDER BY pk)::text FROM influencer_summary`,
			"tracked": `SELECT tracked::text FROM registry_meta`,
		} {
			var v string
			require.NoError(t, q.QueryRow(ctx, sql).Scan(&v), name)
			out[name] = v
		}
		return out
	}
	assert.Equal(t, snapshot(recorded.Pool()), snapshot(old))

	// The rollups read the same (the migrated database's are folded up to
	// the real clock's hour, the recorded one's are not).
	migrated, err := postgres.New(ctx, dsn, discard(), clockwork.NewFakeClockAt(storetest.Now()))
	require.NoError(t, err)
	defer migrated.Close()
	for _, pk := range []int64{1, 2, 3, 4} {
		for _, step := range []time.Duration{time.Hour, 24 * time.Hour} {
			from, to := storetest.Now().Add(-48*time.Hour), storetest.Now().Add(48*time.Hour)
			want, err := recorded.Rollup(ctx, pk, step, from, to, 100)
			require.NoError(t, err)
			got, err := migrated.Rollup(ctx, pk, step, from, to, 100)
			require.NoError(t, err)
			assert.Equal(t, want, got, "pk %d step %s", pk, step)
			if pk == 1 && step == time.Hour {
				require.Len(t, want, 2, "sanity: rollups recorded")
				assert.EqualValues(t, 5200, want[1].FollowerLast)
			}
		}
	}
}

// TestSummaryRank checks that SummaryRank reads what Summary and Rank do:
// a tracked pk with its rank, an untracked pk with history and no rank,
// and store.ErrNotFound for a pk without data.
func TestSummaryRank(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, clockwork.NewFakeClockAt(storetest.Now()))
	_, err := s.Track(ctx, []int64{1, 2, 3})
	require.NoError(t, err)
	minute := storetest.Now().Add(-time.Minute)
	_, err = s.Record(ctx, influencer.Batch{Minute: minute, Samples: []influencer.Sample{
		{PK: 1, Username: "one", FollowerCount: 500, FollowingCount: 10, Minute: minute},
		{PK: 2, Username: "two", FollowerCount: 900, FollowingCount: 20, Minute: minute},
		{PK: 3, Username: "three", FollowerCount: 700, FollowingCount: 30, Minute: minute},
	}})
	require.NoError(t, err)
	_, err = s.Untrack(ctx, []int64{3})
	require.NoError(t, err)
	checked := storetest.Now().Add(-2 * time.Minute)
	require.NoError(t, s.SaveSuspicion(ctx, []influencer.Suspicion{{PK: 1, Suspicious: true, CheckedAt: checked}}))

	tests := []struct {
		name   string
		pk     int64
		rank   int64
		ranked bool
	}{
		{"tracked, with suspicion", 1, 2, true},
		{"tracked, the top", 2, 1, true},
		{"untracked with history", 3, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := s.Summary(ctx, tt.pk)
			require.NoError(t, err)
			got, rank, ranked, err := s.SummaryRank(ctx, tt.pk)
			require.NoError(t, err)
			assert.Equal(t, want, got)
			assert.Equal(t, tt.ranked, ranked)
			assert.Equal(t, tt.rank, rank)
			if tt.ranked {
				r, err := s.Rank(ctx, tt.pk)
				require.NoError(t, err)
				assert.Equal(t, r, rank)
			}
		})
	}
	got, _, _, err := s.SummaryRank(ctx, 1)
	require.NoError(t, err)
	require.NotNil(t, got.Suspicion)
	assert.True(t, got.Suspicion.Suspicious)
	assert.Equal(t, checked, got.Suspicion.CheckedAt)

	_, _, _, err = s.SummaryRank(ctx, 99)
	assert.ErrorIs(t, err, store.ErrNotFound)
}
