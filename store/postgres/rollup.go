package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Rollups are folded set-based (migration 00007): the samples of minutes
// before the watermark W (rollup_watermark.folded_before) are in
// rollup_hourly and rollup_daily, the later ones only in the timeline.
// FoldRollups moves W forward over whole hours (or days) once they are
// foldGrace old; Rollup merges the rows with the timeline's minutes >= W.
//
// Locks: Record holds a shared advisory lock on the hour and on the day of
// each sample it writes (rollupHourLockClass/rollupDayLockClass, keyed by
// hours/days since the Unix epoch), a fold an exclusive one on the hour or
// the day it folds. So a recording transaction either commits before the
// fold reads the timeline, or reads the fold's W after it committed and
// then folds its own sample into the rollups (its minute is < W).
const (
	rollupHourLockClass = 0x6d6b7368 // "mksh"
	rollupDayLockClass  = 0x6d6b7364 // "mksd"
	foldLockClass       = 0x6d6b7366 // "mksf": one fold at a time
	foldLockID          = 1
)

// foldGrace is how long after an hour ends it is folded: samples of it
// that arrive later (retries, redeliveries) are folded row by row.
const foldGrace = 10 * time.Minute

// rollupColumns are the columns of rollup_hourly and rollup_daily, and
// rollupMerge folds an inserted row (alias EXCLUDED) into an existing one
// (alias r) of the same (pk, bucket): counts and sums add, min and max
// widen, the "last" values move only forward in time. Record (a sample of
// a minute before the watermark) and foldSQL (a folded hour merged into
// its day) write the rollups with these.
const (
	rollupColumns = `(pk, bucket_start, samples, follower_sum, follower_min, follower_max,
         following_sum, following_min, following_max, last_minute, follower_last, following_last)`
	rollupMerge = `ON CONFLICT (pk, bucket_start) DO UPDATE SET
        samples        = r.samples + EXCLUDED.samples,
        follower_sum   = r.follower_sum + EXCLUDED.follower_sum,
        follower_min   = least(r.follower_min, EXCLUDED.follower_min),
        follower_max   = greatest(r.follower_max, EXCLUDED.follower_max),
        following_sum  = r.following_sum + EXCLUDED.following_sum,
        following_min  = least(r.following_min, EXCLUDED.following_min),
        following_max  = greatest(r.following_max, EXCLUDED.following_max),
        follower_last  = CASE WHEN EXCLUDED.last_minute > r.last_minute THEN EXCLUDED.follower_last ELSE r.follower_last END,
        following_last = CASE WHEN EXCLUDED.last_minute > r.last_minute THEN EXCLUDED.following_last ELSE r.following_last END,
        last_minute    = greatest(r.last_minute, EXCLUDED.last_minute)`
)

const (
	// foldSQL folds the timeline's minutes in [$1, $2) ($3 = $1 in Unix
	// seconds) into rollup_hourly (the hours are new there: only minutes
	// >= W reach this) and merges them into rollup_daily.
	foldSQL = `
WITH h AS (
    SELECT pk, date_bin('1 hour', minute, timestamptz '2000-01-01 00:00:00+00') AS b, count(*) AS n,
           sum(follower_count) AS fs, min(follower_count) AS fmin, max(follower_count) AS fmax,
           sum(following_count) AS gs, min(following_count) AS gmin, max(following_count) AS gmax,
           max(minute) AS lm,
           max((((date_part('epoch', minute)::bigint - $3::bigint) / 60) << 34) | follower_count) & 17179869183 AS fl,
           max((((date_part('epoch', minute)::bigint - $3::bigint) / 60) << 34) | following_count) & 17179869183 AS gl
    FROM samples
    WHERE minute >= $1::timestamptz AND minute < $2::timestamptz
    GROUP BY pk, b
), hourly AS (
    INSERT INTO rollup_hourly ` + rollupColumns + `
    SELECT pk, b, n, fs, fmin, fmax, gs, gmin, gmax, lm, fl, gl FROM h
    ORDER BY pk, b
    RETURNING 1
), daily AS (
    INSERT INTO rollup_daily AS r ` + rollupColumns + `
    SELECT pk, date_bin('1 day', b, timestamptz '2000-01-01 00:00:00+00'), sum(n), sum(fs), min(fmin), max(fmax),
           sum(gs), min(gmin), max(gmax), max(lm),
           max((((date_part('epoch', lm)::bigint - $3::bigint) / 60) << 34) | fl) & 17179869183,
           max((((date_part('epoch', lm)::bigint - $3::bigint) / 60) << 34) | gl) & 17179869183
    FROM h
    GROUP BY 1, 2
    ORDER BY 1, 2
    ` + rollupMerge + `
    RETURNING 1
), mark AS (
    UPDATE rollup_watermark SET folded_before = $2::timestamptz RETURNING 1
)
SELECT (SELECT count(*) FROM hourly), (SELECT count(*) FROM daily), (SELECT count(*) FROM mark)`

	// rollupBoundsSQL reads W and pk's newest minute: Rollup reads the
	// timeline between them only.
	rollupBoundsSQL = `SELECT (SELECT folded_before FROM rollup_watermark),
       (SELECT last_minute FROM influencer_summary WHERE pk = $1)`
)

// rollupReadSQL reads pk's buckets of table (step: "1 hour", "1 day")
// starting in [$2, $3), at most $4: the folded rows, merged bucket by
// bucket with the timeline's minutes in [$5, $6) (from W on; Rollup
// computes the bounds, which prune the timeline's partitions).
func rollupReadSQL(table, step string) string {
	return `
WITH r AS (
    SELECT bucket_start, samples, follower_sum, follower_min, follower_max, follower_last,
           following_sum, following_min, following_max, following_last, last_minute
    FROM ` + table + `
    WHERE pk = $1 AND bucket_start >= $2 AND bucket_start < $3
    ORDER BY bucket_start LIMIT $4
), t AS (
    SELECT date_bin('` + step + `', minute, timestamptz '2000-01-01 00:00:00+00') AS bucket_start, count(*) AS samples,
           sum(follower_count)::bigint AS follower_sum, min(follower_count) AS follower_min,
           max(follower_count) AS follower_max, (array_agg(follower_count ORDER BY minute DESC))[1] AS follower_last,
           sum(following_count)::bigint AS following_sum, min(following_count) AS following_min,
           max(following_count) AS following_max, (array_agg(following_count ORDER BY minute DESC))[1] AS following_last,
           max(minute) AS last_minute
    FROM samples
    WHERE pk = $1 AND minute >= $5 AND minute < $6
    GROUP BY 1
)
SELECT bucket_start, sum(samples)::bigint, sum(follower_sum)::bigint, min(follower_min), max(follower_max),
       (array_agg(follower_last ORDER BY last_minute DESC))[1],
       sum(following_sum)::bigint, min(following_min), max(following_max),
       (array_agg(following_last ORDER BY last_minute DESC))[1], max(last_minute)
FROM (SELECT * FROM r UNION ALL SELECT * FROM t WHERE bucket_start >= $2 AND bucket_start < $3) x
GROUP BY bucket_start
ORDER BY bucket_start
LIMIT $4`
}

var (
	rollupHourlySQL = rollupReadSQL("rollup_hourly", "1 hour")
	rollupDailySQL  = rollupReadSQL("rollup_daily", "1 day")
)

// Rollup returns the hourly (step time.Hour) or daily (24h) buckets of pk
// whose start is in [from, to), oldest first, at most limit of them; no
// buckets is an empty, non-nil slice.
func (s *Store) Rollup(ctx context.Context, pk int64, step time.Duration, from, to time.Time, limit int) ([]store.Bucket, error) {
	if err := store.ValidateRollup(step, limit); err != nil {
		return nil, fmt.Errorf("rollup of pk %d: %w", pk, err)
	}
	args, err := s.rollupArgs(ctx, pk, step, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("rollup of pk %d: %w", pk, err)
	}
	query := rollupHourlySQL
	if step == store.Daily {
		query = rollupDailySQL
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("rollup of pk %d: %w", pk, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Bucket, error) {
		var (
			b                         store.Bucket
			followerSum, followingSum int64
		)
		err := row.Scan(&b.Start, &b.Samples, &followerSum, &b.FollowerMin, &b.FollowerMax, &b.FollowerLast,
			&followingSum, &b.FollowingMin, &b.FollowingMax, &b.FollowingLast, &b.LastMinute)
		b.Start, b.LastMinute = b.Start.UTC(), b.LastMinute.UTC()
		if b.Samples > 0 {
			b.FollowerAvg = float64(followerSum) / float64(b.Samples)
			b.FollowingAvg = float64(followingSum) / float64(b.Samples)
		}
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("rollup of pk %d: %w", pk, err)
	}
	return out, nil
}

// rollupArgs returns the arguments of rollupHourlySQL/rollupDailySQL: the
// timeline is read from W (or the first bucket starting at or after from)
// up to pk's newest minute (or the end of the last bucket starting before
// to); an empty range when pk has no data.
func (s *Store) rollupArgs(ctx context.Context, pk int64, step time.Duration, from, to time.Time, limit int) ([]any, error) {
	var watermark, last *time.Time
	if err := s.pool.QueryRow(ctx, rollupBoundsSQL, pk).Scan(&watermark, &last); err != nil {
		return nil, err
	}
	lo, hi := ceilTo(from, step), ceilTo(to, step)
	if watermark != nil && watermark.After(lo) {
		lo = watermark.UTC()
	}
	switch {
	case last == nil:
		hi = lo
	case last.Add(time.Minute).Before(hi):
		hi = last.Add(time.Minute).UTC()
	}
	if hi.Before(lo) {
		hi = lo
	}
	return []any{pk, from, to, limit, lo, hi}, nil
}

// ceilTo is the first instant at or after t that starts a UTC bucket of
// step (an hour or a day).
func ceilTo(t time.Time, step time.Duration) time.Time {
	b := store.BucketStart(t, step)
	if b.Before(t) {
		b = b.Add(step)
	}
	return b
}

// FoldRollups folds the timeline's whole hours that ended foldGrace or
// more before the clock's now into the rollups, one hour (or, from a day's
// start, one whole day) per transaction, and moves the watermark past them.
// Concurrent callers take turns. Maintain and Prune call it; it is cheap
// when there is nothing to fold.
func (s *Store) FoldRollups(ctx context.Context) error {
	return s.foldRollups(ctx, s.clock.Now())
}

func (s *Store) foldRollups(ctx context.Context, now time.Time) error {
	target := now.Add(-foldGrace).UTC().Truncate(time.Hour)
	var hours, folds int
	began := time.Now()
	for {
		done, span, err := s.foldOnce(ctx, target)
		if err != nil {
			return fmt.Errorf("fold rollups up to %s: %w", target.Format(time.RFC3339), err)
		}
		if done {
			break
		}
		hours += int(span / time.Hour)
		folds++
	}
	if folds > 0 {
		s.logger.InfoContext(ctx, "rollups folded", slog.Time("through", target),
			slog.Int("hours", hours), slog.Duration("took", time.Since(began)))
	}
	return nil
}

// foldOnce folds the next hour or day before target, if any, in one
// transaction.
func (s *Store) foldOnce(ctx context.Context, target time.Time) (done bool, span time.Duration, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::integer, $2::integer)`, foldLockClass, foldLockID); err != nil {
			return err
		}
		var w *time.Time
		if err := tx.QueryRow(ctx, `SELECT folded_before FROM rollup_watermark FOR UPDATE`).Scan(&w); err != nil {
			return err
		}
		if w == nil || !w.Before(target) {
			done = true
			return nil
		}
		lo := w.UTC()
		span, class, key := time.Hour, rollupHourLockClass, hourKey(lo)
		if lo.Equal(lo.Truncate(24*time.Hour)) && !lo.Add(24*time.Hour).After(target) {
			span, class, key = 24*time.Hour, rollupDayLockClass, dayKey(lo)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::integer, $2::integer)`, class, key); err != nil {
			return err
		}
		var hourly, daily, marked int64
		if err := tx.QueryRow(ctx, foldSQL, lo, lo.Add(span), lo.Unix()).Scan(&hourly, &daily, &marked); err != nil {
			return err
		}
		if marked != 1 {
			return errors.New("rollup watermark row missing")
		}
		return nil
	})
	return done, span, err
}

// initWatermark sets W to the clock's hour on a store that has never had
// one (a new database): nothing before it has data.
func (s *Store) initWatermark(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `UPDATE rollup_watermark SET folded_before = $1 WHERE folded_before IS NULL`,
		s.clock.Now().UTC().Truncate(time.Hour))
	if err != nil {
		return fmt.Errorf("init rollup watermark: %w", err)
	}
	return nil
}

// foldedBefore returns W (zero when unset).
func (s *Store) foldedBefore(ctx context.Context) (time.Time, error) {
	var w *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT folded_before FROM rollup_watermark`).Scan(&w); err != nil {
		return time.Time{}, fmt.Errorf("rollup watermark: %w", err)
	}
	if w == nil {
		return time.Time{}, nil
	}
	return w.UTC(), nil
}

func hourKey(t time.Time) int32 { return int32(floorDiv(t.Unix(), 3600)) }
func dayKey(t time.Time) int32  { return int32(floorDiv(t.Unix(), 86400)) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// recordLocks returns the (class, key) pairs Record locks, in the order it
// takes them, and whether each is exclusive: shared, the registry, then the
// samples' hours, then their days, each ascending; exclusive, the missed
// lock keys given (see missedLockKey), ascending.
func recordLocks(samples []influencer.Sample, missKeys []int32) (classes, keys []int32, exclusive []bool) {
	var hours, days []int32
	for _, smp := range samples {
		hours = append(hours, hourKey(smp.Minute))
		days = append(days, dayKey(smp.Minute))
	}
	slices.Sort(hours)
	slices.Sort(days)
	hours, days = slices.Compact(hours), slices.Compact(days)
	missKeys = slices.Compact(slices.Sorted(slices.Values(missKeys)))
	add := func(class, key int32, x bool) {
		classes, keys, exclusive = append(classes, class), append(keys, key), append(exclusive, x)
	}
	add(registryLockClass, registryLockID, false)
	for _, h := range hours {
		add(rollupHourLockClass, h, false)
	}
	for _, d := range days {
		add(rollupDayLockClass, d, false)
	}
	for _, k := range missKeys {
		add(missedLockClass, k, true)
	}
	return classes, keys, exclusive
}
