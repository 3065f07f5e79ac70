package postgres_test

import (
	"context"
	"fmt"
	"sync"
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
	"github.com/mockstagram/pipeline/store/memory"
	"github.com/mockstagram/pipeline/store/postgres"
	"github.com/mockstagram/pipeline/store/postgres/pgtest"
	"github.com/mockstagram/pipeline/store/storetest"
)

// TestFoldRollups checks that folding the timeline into the rollups changes
// no read: the memory store, which keeps its rollups row by row, is the
// oracle, before and after folds, for samples recorded before the fold
// (folded set-based), after it into folded hours (late: row by row) and
// concurrently with it.
func TestFoldRollups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := storetest.Now() // 12:00 UTC: the watermark starts here
	clock := clockwork.NewFakeClockAt(start)
	pg, _ := newStore(t, clock)
	mem := memory.New(clock)
	pks := []int64{1, 2, 3}
	for _, s := range []interface {
		Track(context.Context, []int64) (int, error)
	}{pg, mem} {
		_, err := s.Track(ctx, pks)
		require.NoError(t, err)
	}
	record := func(minutes ...int) {
		for _, m := range minutes {
			minute := start.Add(time.Duration(m) * time.Minute)
			b := influencer.Batch{Minute: minute, Shard: m}
			for _, pk := range pks {
				if (m+int(pk))%5 == 0 {
					continue // a gap
				}
				b.Samples = append(b.Samples, influencer.Sample{PK: pk, Username: "u", Minute: minute,
					FollowerCount: 1000 + int64((m*7919+int(pk)*31)%500), FollowingCount: 10 + int64((m+int(pk))%9)})
			}
			want, err := mem.Record(ctx, b)
			require.NoError(t, err)
			got, err := pg.Record(ctx, b)
			require.NoError(t, err)
			require.Equal(t, want, got, "minute %d", m)
		}
	}
	watermark := func() time.Time {
		t.Helper()
		var w time.Time
		require.NoError(t, pg.Pool().QueryRow(ctx, `SELECT folded_before FROM rollup_watermark`).Scan(&w))
		return w.UTC()
	}
	check := func(msg string) {
		t.Helper()
		from, to := start.Add(-48*time.Hour), start.Add(72*time.Hour)
		for _, pk := range append(pks, 4) {
			for _, step := range []time.Duration{time.Hour, 24 * time.Hour} {
				want, err := mem.Rollup(ctx, pk, step, from, to, 1000)
				require.NoError(t, err)
				got, err := pg.Rollup(ctx, pk, step, from, to, 1000)
				require.NoError(t, err)
				require.Equal(t, len(want), len(got), "%s: pk %d step %s", msg, pk, step)
				for i := range want {
					assert.InDelta(t, want[i].FollowerAvg, got[i].FollowerAvg, 1e-9)
					assert.InDelta(t, want[i].FollowingAvg, got[i].FollowingAvg, 1e-9)
					want[i].FollowerAvg, got[i].FollowerAvg, want[i].FollowingAvg, got[i].FollowingAvg = 0, 0, 0, 0
				}
				assert.Equal(t, want, got, "%s: pk %d step %s", msg, pk, step)
				// Windows that start and end inside buckets.
				want, err = mem.Rollup(ctx, pk, step, start.Add(90*time.Minute), start.Add(13*time.Hour+time.Minute), 3)
				require.NoError(t, err)
				got, err = pg.Rollup(ctx, pk, step, start.Add(90*time.Minute), start.Add(13*time.Hour+time.Minute), 3)
				require.NoError(t, err)
				require.Equal(t, len(want), len(got), "%s: pk %d step %s, partial window", msg, pk, step)
			}
		}
	}

	// Hours 12..14 and the next day (minute 720 is 00:00), out of order,
	// plus a minute before the watermark (folded row by row at once).
	assert.Equal(t, start, watermark())
	record(5, 0, 59, 30, 60, 150, 61, 119, 100, 719, 720, 725, 12, -30)
	check("nothing folded")

	clock.Advance(2*time.Hour + 15*time.Minute) // 14:15: 12:00 and 13:00 fold
	require.NoError(t, pg.FoldRollups(ctx))
	assert.Equal(t, start.Add(2*time.Hour), watermark())
	check("two hours folded")
	record(30, 61, 62, 63, 130) // late (folded hours), a redelivery, the open hour
	check("late samples into folded hours")

	// Folds while recorders write into the hour being folded.
	clock.Advance(time.Hour) // 15:15: 14:00 folds
	var wg sync.WaitGroup
	wg.Go(func() { record(140, 141, 142, 143, 144, 145, 146, 147) })
	wg.Go(func() { assert.NoError(t, pg.FoldRollups(ctx)) })
	wg.Wait()
	assert.Equal(t, start.Add(3*time.Hour), watermark())
	check("concurrent fold")

	clock.Advance(36 * time.Hour) // whole next day folds, by hours then as a day
	require.NoError(t, pg.Maintain(ctx))
	assert.Equal(t, start.Add(39*time.Hour), watermark())
	check("all folded")
	record(721, 726, 1500)
	check("late into a folded day")
}

// TestMigrationFoldsExistingRollups migrates a database with data under
// version 6 (rollups maintained row by row, here by migration 00004's
// backfill) around the real clock's hour, which migration 00007 makes the
// watermark, and checks that every rollup read returns what version 6 had.
func TestMigrationFoldsExistingRollups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	require.NoError(t, migrations.UpTo(ctx, db, discard(), 3))
	old, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer old.Close()

	now := time.Now().UTC()
	hour := now.Truncate(time.Hour)
	// Minutes in the previous, the current and the next hour, the previous
	// and the next day.
	var minutes []time.Time
	for _, d := range []time.Duration{-25 * time.Hour, -61 * time.Minute, -time.Minute, 0, 7 * time.Minute, 59 * time.Minute, 60 * time.Minute, 26 * time.Hour} {
		minutes = append(minutes, hour.Add(d))
	}
	_, err = old.Exec(ctx, `SELECT ensure_sample_partitions($1::date, 4)`, hour.Add(-25*time.Hour))
	require.NoError(t, err)
	for i, m := range minutes {
		for pk := int64(1); pk <= 2; pk++ {
			_, err := old.Exec(ctx, `INSERT INTO samples VALUES ($1, $2, $3, $4)`, pk, m, 1000+int64(i*37)%11*pk, 5+i)
			require.NoError(t, err)
		}
	}
	require.NoError(t, migrations.UpTo(ctx, db, discard(), 6))
	rows, err := old.Query(ctx, `
SELECT 'h', pk, bucket_start, samples, follower_sum, follower_min, follower_max, follower_last,
       following_sum, following_min, following_max, following_last, last_minute FROM rollup_hourly
UNION ALL
SELECT 'd', pk, bucket_start, samples, follower_sum, follower_min, follower_max, follower_last,
       following_sum, following_min, following_max, following_last, last_minute FROM rollup_daily
ORDER BY 1, 2, 3`)
	require.NoError(t, err)
	want := map[string][]store.Bucket{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var (
			table      string
			pk, fs, gs int64
			b          store.Bucket
		)
		err := r.Scan(&table, &pk, &b.Start, &b.Samples, &fs, &b.FollowerMin, &b.FollowerMax, &b.FollowerLast,
			&gs, &b.FollowingMin, &b.FollowingMax, &b.FollowingLast, &b.LastMinute)
		b.Start, b.LastMinute = b.Start.UTC(), b.LastMinute.UTC()
		b.FollowerAvg, b.FollowingAvg = float64(fs)/float64(b.Samples), float64(gs)/float64(b.Samples)
		key := fmt.Sprintf("%s/%d", table, pk)
		want[key] = append(want[key], b)
		return struct{}{}, err
	})
	require.NoError(t, err)
	require.Len(t, want["h/1"], 6, "sanity: version 6 rollups")
	// Version 6's summaries, so that reads know each pk's newest minute.
	_, err = old.Exec(ctx, `
INSERT INTO influencer_summary (pk, username, follower_count, following_count, last_minute, samples, follower_sum, rank_bucket)
SELECT pk, 'u', 0, 0, max(minute), count(*), sum(follower_count), 0 FROM samples GROUP BY pk`)
	require.NoError(t, err)

	s, err := postgres.New(ctx, dsn, discard(), clockwork.NewRealClock())
	require.NoError(t, err)
	defer s.Close()
	var folded time.Time
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT folded_before FROM rollup_watermark`).Scan(&folded))
	assert.True(t, !folded.Before(hour) && !folded.After(hour.Add(time.Hour)), "watermark %s is the migration's hour", folded)
	var kept int
	require.NoError(t, s.Pool().QueryRow(ctx, `SELECT count(*) FROM rollup_hourly WHERE bucket_start >= $1`, folded).Scan(&kept))
	assert.Zero(t, kept, "rollups from the watermark on are the timeline's")
	for pk := int64(1); pk <= 2; pk++ {
		for table, step := range map[string]time.Duration{"h": time.Hour, "d": 24 * time.Hour} {
			got, err := s.Rollup(ctx, pk, step, hour.Add(-72*time.Hour), hour.Add(72*time.Hour), 100)
			require.NoError(t, err)
			assert.Equal(t, want[fmt.Sprintf("%s/%d", table, pk)], got, "pk %d step %s", pk, step)
		}
	}
}
