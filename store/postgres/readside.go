package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Read-side queries. Each one reads a primary-key lookup or a bounded index
// range (see migration 00004 for the structures); TestReadPlans EXPLAINs
// exactly these constants over one million influencers.
const (
	// rankExpr is 1 + the number of active influencers with a count
	// greater than c.v, whose rank bucket is c.b: the level-1 groups above
	// c.b's group, the level-0 buckets above c.b inside its group, and the
	// active rows of bucket c.b with a greater count (a range of
	// influencer_summary_rank_idx no wider than the bucket).
	rankExpr = `1
    + coalesce((SELECT sum(r.n) FROM rank_buckets r
                WHERE r.level = 1 AND r.bucket > c.b >> 7), 0)
    + coalesce((SELECT sum(r.n) FROM rank_buckets r
                WHERE r.level = 0 AND r.bucket > c.b AND r.bucket < ((c.b >> 7) + 1) << 7), 0)
    + (SELECT count(*) FROM influencer_summary x
       WHERE x.active AND -x.rank_bucket = -c.b AND -x.follower_count < -c.v)`

	// rankSQL is the rank of pk $1 (no row: no data or not active).
	rankSQL = `SELECT ` + rankExpr + `
FROM (SELECT follower_count AS v, rank_bucket AS b FROM influencer_summary
      WHERE pk = $1 AND active) c`

	// summaryRankSQL is summarySQL and rankSQL in one statement (one
	// round trip, one snapshot): the rank is NULL when pk is not active.
	summaryRankSQL = `
SELECT c.username, c.follower_count, c.following_count, c.last_minute, c.samples, c.follower_sum,
       q.suspicious, q.checked_at,
       CASE WHEN c.active THEN ` + rankExpr + ` END
FROM (SELECT pk, username, follower_count, following_count, last_minute, samples, follower_sum, active,
             follower_count AS v, rank_bucket AS b
      FROM influencer_summary WHERE pk = $1) c
LEFT JOIN suspicion q ON q.pk = c.pk`

	// leaderboardFirstSQL and leaderboardAfterSQL return a page in the order
	// count DESC, pk ASC, which is the order of influencer_summary_rank_idx
	// ((-rank_bucket), (-follower_count), pk) because rank_bucket is
	// monotonic; the keyset condition of a later page is a row comparison
	// on the index columns, so the page starts with an index seek. Every
	// row of the page's first two distinct counts carries the rank of its
	// count (NULL otherwise); Leaderboard derives the others (fillRanks).
	leaderboardFirstSQL = leaderboardHead + leaderboardTail
	leaderboardAfterSQL = leaderboardHead +
		`AND (-rank_bucket, -follower_count, pk) > (-rank_bucket($2::bigint), -$2::bigint, $3::bigint)` +
		leaderboardTail
	leaderboardHead = `
WITH page AS MATERIALIZED (
    SELECT pk, username, follower_count, following_count, rank_bucket,
           row_number() OVER (ORDER BY -rank_bucket, -follower_count, pk) AS i
    FROM influencer_summary
    WHERE active `
	leaderboardTail = `
    ORDER BY -rank_bucket, -follower_count, pk
    LIMIT $1
), heads AS (
    SELECT DISTINCT ON (follower_count) follower_count AS v, rank_bucket AS b
    FROM page ORDER BY follower_count DESC LIMIT 2
), ranks AS (
    SELECT c.v, ` + rankExpr + ` AS rank FROM heads c
)
SELECT p.pk, p.username, p.follower_count, p.following_count, r.rank
FROM page p LEFT JOIN ranks r ON r.v = p.follower_count
ORDER BY p.i`

	// statsSQL reads counters only: registry_meta, the 16 global_stats
	// stripes, and one range of minute_progress rows, the last hour's
	// ($1 = now-1h, $2 = now; at most 61 minutes x 16 stripes), with one
	// registry_history lookup per minute of the window ($3 its first whole
	// minute, $4 the last). The last complete minute stops at the first
	// incomplete minute (reconciled or not, with data or without) after
	// the window's first minute with data.
	statsSQL = `
WITH p AS MATERIALIZED (
    SELECT minute, sum(stored + missed) AS done, sum(missed) AS missed, bool_or(reconciled) AS reconciled
    FROM minute_progress WHERE minute >= $1 AND minute <= $2
    GROUP BY minute
), m AS MATERIALIZED (
    SELECT g.minute, p.minute IS NOT NULL AS seen,
           coalesce(p.reconciled, false) OR coalesce(p.done, 0) >= ` + trackedAtExpr + ` AS complete
    FROM generate_series($3::timestamptz, $4::timestamptz, interval '1 minute') AS g(minute)
    LEFT JOIN p ON p.minute = g.minute
), gap AS (
    SELECT min(minute) AS at FROM m
    WHERE NOT complete AND minute >= (SELECT min(minute) FROM m WHERE seen)
)
SELECT (SELECT tracked FROM registry_meta),
       g.n, g.t,
       (SELECT max(m.minute) FROM m, gap WHERE m.seen AND m.complete AND (gap.at IS NULL OR m.minute < gap.at)),
       (SELECT coalesce(sum(p.missed), 0)::bigint FROM p)
FROM (SELECT coalesce(sum(influencers), 0)::bigint AS n, coalesce(sum(follower_total), 0)::bigint AS t
      FROM global_stats) g`
)

// Rank returns 1 + the number of active influencers with data whose current
// follower count is strictly greater than pk's; store.ErrNotFound when
// pk has no data or is not tracked.
func (s *Store) Rank(ctx context.Context, pk int64) (int64, error) {
	var rank int64
	err := s.readPool.QueryRow(ctx, rankSQL, pk).Scan(&rank)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("rank of pk %d: %w", pk, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("rank of pk %d: %w", pk, err)
	}
	return rank, nil
}

// SummaryRank returns Summary(pk) and Rank(pk), read in one statement;
// ranked is false when pk is not tracked (Rank's store.ErrNotFound).
// store.ErrNotFound when pk has no data.
func (s *Store) SummaryRank(ctx context.Context, pk int64) (sum influencer.Summary, rank int64, ranked bool, err error) {
	var (
		suspicious *bool
		checkedAt  *time.Time
		r          *int64
	)
	sum.PK = pk
	err = s.readPool.QueryRow(ctx, summaryRankSQL, pk).Scan(
		&sum.Username, &sum.FollowerCount, &sum.FollowingCount, &sum.LastMinute, &sum.Samples, &sum.FollowerSum,
		&suspicious, &checkedAt, &r)
	if errors.Is(err, pgx.ErrNoRows) {
		return influencer.Summary{}, 0, false, fmt.Errorf("summary of pk %d: %w", pk, store.ErrNotFound)
	}
	if err != nil {
		return influencer.Summary{}, 0, false, fmt.Errorf("summary of pk %d: %w", pk, err)
	}
	sum.LastMinute = sum.LastMinute.UTC()
	if suspicious != nil && checkedAt != nil {
		sum.Suspicion = &influencer.Suspicion{PK: pk, Suspicious: *suspicious, CheckedAt: checkedAt.UTC()}
	}
	if r == nil {
		return sum, 0, false, nil
	}
	return sum, *r, true, nil
}

// Leaderboard returns up to limit (1..store.MaxLeaderboardLimit) active
// influencers with data after the cursor (from the top when nil), by
// follower count descending then pk, each with its rank.
func (s *Store) Leaderboard(ctx context.Context, after *store.Cursor, limit int) ([]store.Ranked, error) {
	if err := store.ValidateLeaderboardLimit(limit); err != nil {
		return nil, fmt.Errorf("leaderboard: %w", err)
	}
	var (
		rows pgx.Rows
		err  error
	)
	if after == nil {
		rows, err = s.readPool.Query(ctx, leaderboardFirstSQL, limit)
	} else {
		if after.FollowerCount < 0 || after.FollowerCount > influencer.MaxCount {
			return nil, fmt.Errorf("leaderboard: %w: cursor follower count %d out of range", store.ErrInvalid, after.FollowerCount)
		}
		rows, err = s.readPool.Query(ctx, leaderboardAfterSQL, limit, after.FollowerCount, after.PK)
	}
	if err != nil {
		return nil, fmt.Errorf("leaderboard: %w", err)
	}
	type row struct {
		store.Ranked
		rank *int64
	}
	page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.PK, &x.Username, &x.FollowerCount, &x.FollowingCount, &x.rank)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("leaderboard: %w", err)
	}
	out := make([]store.Ranked, len(page))
	for i, r := range page {
		out[i] = r.Ranked
		if r.rank != nil {
			out[i].Rank = *r.rank
		}
	}
	fillRanks(out, func(i int) bool { return page[i].rank != nil })
	return out, nil
}

// fillRanks completes the ranks of a leaderboard page ordered by count
// descending. known(i) says out[i].Rank is set; it is for every row of the
// page's first two distinct counts. A row whose count differs from the row
// before it has rank 1 + (its position in the whole order), and positions
// advance by one per row, so from the first known tie-group start after row
// 0 on, rank = position-in-page + offset; ties repeat the rank before.
func fillRanks(out []store.Ranked, known func(int) bool) {
	var (
		offset    int64
		offsetSet bool
	)
	for i := range out {
		switch {
		case i > 0 && out[i].FollowerCount == out[i-1].FollowerCount:
			out[i].Rank = out[i-1].Rank
		case known(i):
			if i > 0 && !offsetSet {
				offset, offsetSet = out[i].Rank-int64(i), true
			}
		default:
			out[i].Rank = int64(i) + offset
		}
	}
}

// Stats implements store.Store: counters only, no scan.
func (s *Store) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	var (
		st   store.Stats
		last *time.Time
	)
	err := s.readPool.QueryRow(ctx, statsSQL, statsArgs(now)...).Scan(
		&st.Tracked, &st.Influencers, &st.FollowerTotal, &last, &st.MissedLastHour)
	if err != nil {
		return store.Stats{}, fmt.Errorf("stats: %w", err)
	}
	if last != nil {
		st.LastCompleteMinute = last.UTC()
	}
	return st, nil
}

// statsArgs are statsSQL's arguments at now: the window [now-1h, now] and
// its first and last whole minutes.
func statsArgs(now time.Time) []any {
	since := now.Add(-time.Hour)
	first := since.UTC().Truncate(time.Minute)
	if first.Before(since) {
		first = first.Add(time.Minute)
	}
	return []any{since, now, first, now.UTC().Truncate(time.Minute)}
}
