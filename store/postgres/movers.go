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

// Growth and movers (migration 00012).
const (
	// pointAtSQL is pk $1's newest point in ($2, $3]: a backward range of
	// the timeline's primary key, pruned to the partitions of the range.
	pointAtSQL = `
SELECT minute, follower_count, following_count FROM samples
WHERE pk = $1 AND minute > $2 AND minute <= $3
ORDER BY minute DESC LIMIT 1`

	// moversComputeSQL ranks the active influencers by the growth of their
	// follower count since their point in ($1, $2] ($2 = now - window): one
	// pass over influencer_summary's active rows with a primary-key lookup
	// of the timeline each, then a top-N sort per direction. Run by the
	// hourly job, never by a request. $3 is the list length.
	moversComputeSQL = `
WITH d AS MATERIALIZED (
    SELECT s.pk, s.username, s.follower_count, b.follower_count AS base, b.minute AS base_minute,
           s.follower_count - b.follower_count AS growth
    FROM influencer_summary s
    CROSS JOIN LATERAL (
        SELECT x.minute, x.follower_count FROM samples x
        WHERE x.pk = s.pk AND x.minute > $1 AND x.minute <= $2
        ORDER BY x.minute DESC LIMIT 1) b
    WHERE s.active
), up AS (
    SELECT 1 AS direction, row_number() OVER (ORDER BY growth DESC, pk) AS position, *
    FROM (SELECT * FROM d WHERE growth > 0 ORDER BY growth DESC, pk LIMIT $3) u
), down AS (
    SELECT -1 AS direction, row_number() OVER (ORDER BY growth, pk) AS position, *
    FROM (SELECT * FROM d WHERE growth < 0 ORDER BY growth, pk LIMIT $3) w
)
SELECT direction, position, pk, username, follower_count, base, base_minute, growth FROM up
UNION ALL
SELECT direction, position, pk, username, follower_count, base, base_minute, growth FROM down`

	// moversSQL reads a list by the primary key; the second row source
	// says when it was computed.
	moversSQL = `
SELECT position, pk, username, follower_count, base_follower_count, base_minute, growth
FROM movers WHERE window_seconds = $1 AND direction = $2
ORDER BY position LIMIT $3`
	moversRunSQL = `SELECT computed_at FROM movers_runs WHERE window_seconds = $1`
)

// PointAt implements store.Store.
func (s *Store) PointAt(ctx context.Context, pk int64, at time.Time) (influencer.Point, error) {
	var p influencer.Point
	err := s.readPool.QueryRow(ctx, pointAtSQL, pk, at.Add(-store.GrowthLookback), at).Scan(&p.Minute, &p.FollowerCount, &p.FollowingCount)
	if errors.Is(err, pgx.ErrNoRows) {
		return influencer.Point{}, fmt.Errorf("point of pk %d at %s: %w", pk, at.Format(time.RFC3339), store.ErrNotFound)
	}
	if err != nil {
		return influencer.Point{}, fmt.Errorf("point of pk %d at %s: %w", pk, at.Format(time.RFC3339), err)
	}
	p.Minute = p.Minute.UTC()
	return p, nil
}

// RecomputeMovers implements store.Store: moversComputeSQL, then the lists
// are replaced in one transaction.
func (s *Store) RecomputeMovers(ctx context.Context, now time.Time, window time.Duration) error {
	if err := store.ValidateMoversWindow(window); err != nil {
		return fmt.Errorf("recompute movers: %w", err)
	}
	base := now.Add(-window)
	secs := int64(window / time.Second)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM movers WHERE window_seconds = $1`, secs); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
INSERT INTO movers (direction, position, pk, username, follower_count, base_follower_count, base_minute, growth, window_seconds)
SELECT *, $4::integer FROM (`+moversComputeSQL+`) c`, base.Add(-store.GrowthLookback), base, store.MaxMovers, secs); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
INSERT INTO movers_runs (window_seconds, computed_at) VALUES ($1, $2)
ON CONFLICT (window_seconds) DO UPDATE SET computed_at = EXCLUDED.computed_at`, secs, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("recompute movers of %s: %w", window, err)
	}
	return nil
}

// Movers implements store.Store.
func (s *Store) Movers(ctx context.Context, window time.Duration, dir store.Direction, limit int) (store.Movers, error) {
	if err := store.ValidateMovers(window, dir, limit); err != nil {
		return store.Movers{}, fmt.Errorf("movers: %w", err)
	}
	secs := int64(window / time.Second)
	out := store.Movers{Items: []store.Mover{}}
	var at *time.Time
	err := s.readPool.QueryRow(ctx, moversRunSQL, secs).Scan(&at)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return store.Movers{}, fmt.Errorf("movers: %w", err)
	}
	if at == nil {
		return out, nil
	}
	out.ComputedAt = at.UTC()
	rows, err := s.readPool.Query(ctx, moversSQL, secs, int16(dir), limit)
	if err != nil {
		return store.Movers{}, fmt.Errorf("movers: %w", err)
	}
	out.Items, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Mover, error) {
		var m store.Mover
		err := r.Scan(&m.Rank, &m.PK, &m.Username, &m.FollowerCount, &m.BaseFollowerCount, &m.BaseMinute, &m.Growth)
		m.BaseMinute = m.BaseMinute.UTC()
		return m, err
	})
	if err != nil {
		return store.Movers{}, fmt.Errorf("movers: %w", err)
	}
	return out, nil
}
