package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mockstagram/pipeline/influencer"
)

// FixtureFirstPK is the first pk LoadFixture creates.
const FixtureFirstPK = 1_000_000

// The fixture's counts, as SQL over a column pk and a minute index m:
// followers are log-distributed over ~100..~10,000,000 (skewed to small
// accounts, with many ties at the low end) and grow by one step
// (1 + base/100,000) a minute; following is constant per pk.
const (
	fixtureBaseSQL      = `floor(100 * exp(ln(100000) * power(((pk * 2654435761) % 1000003) / 1000003.0, 2)))::bigint`
	fixtureFollowingSQL = `(10 + (pk * 40503) % 7490)::bigint`
)

type fixtureStep struct {
	sql  string
	args []any
}

// fixtureSteps builds the fixture in one transaction with set-based
// statements over pks first..last. Every derived table is computed from the
// same closed forms, so it agrees with what Record would have produced for
// the same samples.
func fixtureSteps(first, last int64, minutes int, start time.Time) []fixtureStep {
	pks := []any{first, last}
	all := []any{first, last, minutes, start}
	return []fixtureStep{
		{`SET LOCAL synchronous_commit = off`, nil},
		{`CREATE TEMP TABLE fixture_base (
    pk bigint PRIMARY KEY, base bigint, step bigint, following bigint, last bigint
) ON COMMIT DROP`, nil},
		{`INSERT INTO fixture_base (pk, base, step, following, last)
SELECT pk, base, 1 + base / 100000, following, base + ($3::integer - 1) * (1 + base / 100000)
FROM (SELECT pk, ` + fixtureBaseSQL + ` AS base, ` + fixtureFollowingSQL + ` AS following
      FROM generate_series($1::bigint, $2::bigint) AS pk) x`, []any{first, last, minutes}},
		{`INSERT INTO influencers (pk, active, updated_at)
SELECT pk, true, $3::timestamptz FROM generate_series($1::bigint, $2::bigint) AS pk`, []any{first, last, start}},
		{`INSERT INTO samples (pk, minute, follower_count, following_count)
SELECT b.pk, $2::timestamptz + m * interval '1 minute', b.base + m * b.step, b.following
FROM fixture_base b CROSS JOIN generate_series(0, $1::integer - 1) AS m`, []any{minutes, start}},
		{`INSERT INTO influencer_summary
    (pk, username, follower_count, following_count, last_minute, samples, follower_sum,
     active, rank_bucket, prev_follower_count)
SELECT pk, 'influencer-' || pk, last, following, $2::timestamptz + ($1::integer - 1) * interval '1 minute',
       $1::integer, $1::integer * base + step * ($1::integer * ($1::integer - 1) / 2),
       true, rank_bucket(last), last
FROM fixture_base`, []any{minutes, start}},
		{fixtureRollupSQL("rollup_hourly", "1 hour"), []any{minutes, start}},
		{fixtureRollupSQL("rollup_daily", "1 day"), []any{minutes, start}},
		{`INSERT INTO rank_buckets AS r (level, bucket, n)
SELECT level, bucket, count(*) FROM (
    SELECT 0 AS level, rank_bucket AS bucket FROM influencer_summary WHERE pk BETWEEN $1 AND $2
    UNION ALL
    SELECT 1, rank_bucket >> 7 FROM influencer_summary WHERE pk BETWEEN $1 AND $2
) x
GROUP BY level, bucket ORDER BY level, bucket
ON CONFLICT (level, bucket) DO UPDATE SET n = r.n + EXCLUDED.n`, pks},
		{`UPDATE global_stats g SET influencers = g.influencers + d.n, follower_total = g.follower_total + d.t
FROM (SELECT count(*) AS n, sum(last) AS t FROM fixture_base) d
WHERE g.stripe = 0`, nil},
		{`WITH m AS (
    UPDATE registry_meta SET version = version + 1, tracked = tracked + ($2::bigint - $1::bigint + 1)
    RETURNING version, tracked
)
INSERT INTO registry_history (at, version, tracked) SELECT $3::timestamptz, version, tracked FROM m`,
			[]any{first, last, start}},
		// Every influencer has been checked once in the day before start
		// (one in 50 suspicious), as in a running store that re-checks daily.
		{`INSERT INTO suspicion (pk, suspicious, checked_at)
SELECT pk, pk % 50 = 0, $3::timestamptz - (1 + (pk * 7919) % 1440) * interval '1 minute'
FROM generate_series($1::bigint, $2::bigint) AS pk`, []any{first, last, start}},
		// The rollups hold every fixture minute: they are folded up to the
		// hour after the last one.
		{`UPDATE rollup_watermark SET folded_before =
    date_bin('1 hour', $2::timestamptz + ($1::integer - 1) * interval '1 minute', timestamptz '2000-01-01 00:00:00+00')
    + interval '1 hour'`, []any{minutes, start}},
		{`INSERT INTO minute_progress AS p (minute, stripe, stored, missed)
SELECT $4::timestamptz + m * interval '1 minute', 0, $2::bigint - $1::bigint + 1, 0
FROM generate_series(0, $3::integer - 1) AS m
ON CONFLICT (minute, stripe) DO UPDATE SET stored = p.stored + EXCLUDED.stored`, all},
	}
}

// fixtureRollupSQL fills a rollup table: minutes fall into buckets as
// contiguous ranges [lo, hi] of minute indexes, and counts grow with the
// minute, so min, max and last are closed forms.
func fixtureRollupSQL(table, step string) string {
	return `WITH bk AS (
    SELECT date_bin('` + step + `', $2::timestamptz + m * interval '1 minute', timestamptz '2000-01-01 00:00:00+00') AS start,
           min(m) AS lo, max(m) AS hi, count(*) AS k, sum(m) AS sm
    FROM generate_series(0, $1::integer - 1) AS m GROUP BY 1
)
INSERT INTO ` + table + `
    (pk, bucket_start, samples, follower_sum, follower_min, follower_max,
     following_sum, following_min, following_max, last_minute, follower_last, following_last)
SELECT b.pk, bk.start, bk.k, bk.k * b.base + b.step * bk.sm, b.base + b.step * bk.lo, b.base + b.step * bk.hi,
       bk.k * b.following, b.following, b.following, $2::timestamptz + bk.hi * interval '1 minute',
       b.base + b.step * bk.hi, b.following
FROM fixture_base b CROSS JOIN bk
`
}

// LoadFixture bulk-loads n tracked influencers (pks FixtureFirstPK..) with
// minutes stored minutes each, from start on, into an empty store: registry,
// timeline, summaries, rollups, rank counters, global stats and progress,
// consistent with what Record would produce for the same samples (username
// "influencer-<pk>"), and one suspicion answer per influencer, checked in
// the day before start. It is for read benchmarks and plan tests, not
// production: one transaction of set-based statements, then ANALYZE.
func LoadFixture(ctx context.Context, pool *pgxpool.Pool, n int, minutes int, start time.Time) error {
	switch {
	case n < 1:
		return fmt.Errorf("load fixture: n %d is not positive", n)
	case minutes < 1:
		return fmt.Errorf("load fixture: minutes %d is not positive", minutes)
	case !influencer.IsMinute(start):
		return fmt.Errorf("load fixture: start: %w", influencer.ValidateMinute(start))
	}
	first, last := int64(FixtureFirstPK), int64(FixtureFirstPK+n-1)
	end := start.Add(time.Duration(minutes-1) * time.Minute)
	firstDay := start.UTC().Truncate(24 * time.Hour)
	days := int(end.UTC().Truncate(24*time.Hour).Sub(firstDay)/(24*time.Hour)) + 1

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM influencers) OR EXISTS (SELECT 1 FROM influencer_summary)`).Scan(&used); err != nil {
			return err
		}
		if used {
			return errors.New("the store is not empty")
		}
		if _, err := tx.Exec(ctx, `SELECT ensure_sample_partitions($1::date, $2::integer)`, firstDay, days); err != nil {
			return err
		}
		for _, st := range fixtureSteps(first, last, minutes, start) {
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return fmt.Errorf("%.50q: %w", st.sql, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load fixture of %d influencers: %w", n, err)
	}
	for _, table := range []string{"influencers", "samples", "influencer_summary", "rollup_hourly", "rollup_daily", "rank_buckets", "global_stats", "minute_progress", "registry_history", "suspicion"} {
		if _, err := pool.Exec(ctx, "ANALYZE "+table); err != nil {
			return fmt.Errorf("load fixture: analyze %s: %w", table, err)
		}
	}
	return nil
}
