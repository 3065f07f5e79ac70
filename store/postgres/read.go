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

// The minute-level reads: primary-key lookups and ranges only.
const (
	// summarySQL: two primary-key lookups; the suspicion answer is in a
	// table of its own (NULLs when never checked).
	summarySQL = `
SELECT s.username, s.follower_count, s.following_count, s.last_minute, s.samples, s.follower_sum,
       q.suspicious, q.checked_at
FROM influencer_summary s LEFT JOIN suspicion q ON q.pk = s.pk
WHERE s.pk = $1`
	timelineSQL = `
SELECT minute, follower_count, following_count FROM samples
WHERE pk = $1 AND minute >= $2 AND minute < $3
ORDER BY minute LIMIT $4`
	// missedSinceSQL sums the rows' pk counts (n is in the primary key
	// index: an index-only range on minute).
	missedSinceSQL = `SELECT coalesce(sum(n), 0)::bigint FROM missed_batches WHERE minute >= $1`
)

// Summary implements store.Store.
func (s *Store) Summary(ctx context.Context, pk int64) (influencer.Summary, error) {
	var (
		sum        = influencer.Summary{PK: pk}
		suspicious *bool
		checkedAt  *time.Time
	)
	err := s.readPool.QueryRow(ctx, summarySQL, pk).Scan(
		&sum.Username, &sum.FollowerCount, &sum.FollowingCount, &sum.LastMinute, &sum.Samples, &sum.FollowerSum,
		&suspicious, &checkedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return influencer.Summary{}, fmt.Errorf("summary of pk %d: %w", pk, store.ErrNotFound)
	}
	if err != nil {
		return influencer.Summary{}, fmt.Errorf("summary of pk %d: %w", pk, err)
	}
	sum.LastMinute = sum.LastMinute.UTC()
	if suspicious != nil && checkedAt != nil {
		sum.Suspicion = &influencer.Suspicion{PK: pk, Suspicious: *suspicious, CheckedAt: checkedAt.UTC()}
	}
	return sum, nil
}

// Timeline implements store.Store. It reads the primary key index only.
func (s *Store) Timeline(ctx context.Context, pk int64, from, to time.Time, limit int) ([]influencer.Point, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("timeline of pk %d: %w: limit %d is not positive", pk, store.ErrInvalid, limit)
	}
	rows, err := s.readPool.Query(ctx, timelineSQL, pk, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("timeline of pk %d: %w", pk, err)
	}
	points, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (influencer.Point, error) {
		var p influencer.Point
		err := row.Scan(&p.Minute, &p.FollowerCount, &p.FollowingCount)
		p.Minute = p.Minute.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("timeline of pk %d: %w", pk, err)
	}
	return points, nil
}

// MissedSince implements store.Store.
func (s *Store) MissedSince(ctx context.Context, since time.Time) (int64, error) {
	var n int64
	if err := s.readPool.QueryRow(ctx, missedSinceSQL, since).Scan(&n); err != nil {
		return 0, fmt.Errorf("count missed since %s: %w", since.Format(time.RFC3339), err)
	}
	return n, nil
}
