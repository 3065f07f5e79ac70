package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/mockstagram/pipeline/store"
)

const (
	// trackedAtExpr is the tracked count in effect at minute g.minute: the
	// registry_history row of the last change at or before it (as statsSQL).
	trackedAtExpr = `coalesce((
    SELECT h.tracked FROM registry_history h WHERE h.at <= g.minute
    ORDER BY h.at DESC, h.version DESC LIMIT 1), 0)`

	// unreconciledSQL lists the minutes of [$1, $2] (whole minutes) with
	// tracked influencers and no reconciled mark: one registry_history
	// lookup and one minute_progress range per minute.
	unreconciledSQL = `
SELECT g.minute FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 minute') AS g(minute)
WHERE ` + trackedAtExpr + ` > 0
  AND (SELECT bool_or(p.reconciled) FROM minute_progress p WHERE p.minute = g.minute) IS NOT TRUE
ORDER BY g.minute`

	// reconcileNeededSQL says whether minute $1 falls short of its tracked
	// count (counters only).
	reconcileNeededSQL = `
SELECT coalesce((SELECT sum(stored + missed) FROM minute_progress WHERE minute = $1), 0) < ` + trackedAtExpr + `
FROM (SELECT $1::timestamptz AS minute) g`

	// trackedAtSQL lists the pks tracked at minute $1 (store.TrackedAt).
	trackedAtSQL = `
SELECT coalesce(array_agg(pk ORDER BY pk), '{}') FROM influencers WHERE active AND updated_at <= $1`

	// markReconciledSQL marks minute $1 reconciled (stripe 0).
	markReconciledSQL = `
INSERT INTO minute_progress (minute, stripe, stored, missed, reconciled) VALUES ($1, 0, 0, 0, true)
ON CONFLICT (minute, stripe) DO UPDATE SET reconciled = true`
)

// UnreconciledMinutes implements store.Store.
func (s *Store) UnreconciledMinutes(ctx context.Context, from, to time.Time) ([]time.Time, error) {
	first := from.UTC().Truncate(time.Minute)
	if first.Before(from) {
		first = first.Add(time.Minute)
	}
	last := to.UTC().Truncate(time.Minute)
	if !last.Before(to) {
		last = last.Add(-time.Minute)
	}
	out := []time.Time{}
	if last.Before(first) {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, unreconciledSQL, first, last)
	if err != nil {
		return nil, fmt.Errorf("unreconciled minutes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m time.Time
		if err := rows.Scan(&m); err != nil {
			return nil, fmt.Errorf("unreconciled minutes: %w", err)
		}
		out = append(out, m.UTC())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unreconciled minutes: %w", err)
	}
	return out, nil
}

// Reconcile implements store.Store. A complete minute costs one counter
// read and the mark. Otherwise the pks tracked at the minute are read (one
// scan of the registry) and recorded as failures through Record, in
// batches of whole buckets (store.ReconcileBatches): Record leaves out every
// pk with a sample or a miss, under the exclusive locks of the batch's
// (minute, bucket)s that a late recorder of the same minute takes too, so
// the two never miss a pk twice or miss a stored one.
func (s *Store) Reconcile(ctx context.Context, minute time.Time, reason string) (int, error) {
	if err := store.ValidateReconcileMinute(minute); err != nil {
		return 0, err
	}
	minute = minute.UTC()
	wrap := func(err error) error {
		return fmt.Errorf("reconcile minute %s: %w", minute.Format(time.RFC3339), err)
	}
	var needed bool
	if err := s.pool.QueryRow(ctx, reconcileNeededSQL, minute).Scan(&needed); err != nil {
		return 0, wrap(err)
	}
	missed := 0
	if needed {
		var pks []int64
		if err := s.pool.QueryRow(ctx, trackedAtSQL, minute).Scan(&pks); err != nil {
			return 0, wrap(err)
		}
		for _, b := range store.ReconcileBatches(minute, pks, reason) {
			res, err := s.Record(ctx, b)
			missed += res.Missed
			if err != nil {
				return missed, wrap(err)
			}
		}
	}
	if _, err := s.pool.Exec(ctx, markReconciledSQL, minute); err != nil {
		return missed, wrap(err)
	}
	return missed, nil
}
