package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/mockstagram/pipeline/store"
)

// The expiry statements delete at most $2 rows each, oldest first, skipping
// rows another transaction holds (a late sample filling an old miss, a
// second process's Maintain): each statement is short, locks few rows, and
// leaves no dead tuples beyond its batch for one vacuum to find. The
// receive-time and minute indexes serve the inner select.
const (
	expireDeadLettersSQL = `
WITH d AS (
    DELETE FROM dead_letters WHERE id IN (
        SELECT id FROM dead_letters WHERE received_at < $1
        ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT count(*) FROM d`
	expireMissedSQL = `
WITH d AS (
    DELETE FROM missed_batches WHERE (minute, bucket, seq) IN (
        SELECT minute, bucket, seq FROM missed_batches WHERE minute < $1
        ORDER BY minute LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING n
)
SELECT count(*), coalesce(sum(n), 0)::bigint FROM d`
)

// Expire implements store.Store: one statement per store.ExpireBatch rows,
// each in its own transaction, until a statement deletes fewer.
func (s *Store) Expire(ctx context.Context, deadLettersBefore, missedBefore time.Time) (store.Expired, error) {
	var out store.Expired
	if !deadLettersBefore.IsZero() {
		for {
			var n int64
			if err := s.pool.QueryRow(ctx, expireDeadLettersSQL, deadLettersBefore, store.ExpireBatch).Scan(&n); err != nil {
				return out, fmt.Errorf("expire dead letters before %s: %w", deadLettersBefore.Format(time.RFC3339), err)
			}
			out.DeadLetters += n
			if n < store.ExpireBatch {
				break
			}
		}
	}
	if !missedBefore.IsZero() {
		n, err := s.expireMissed(ctx, missedBefore)
		out.Missed = n
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// expireMissed deletes the missed entries of the minutes before before, a
// batch of rows at a time, and returns how many entries (pks) went.
func (s *Store) expireMissed(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var rows, entries int64
		if err := s.pool.QueryRow(ctx, expireMissedSQL, before, store.ExpireBatch).Scan(&rows, &entries); err != nil {
			return total, fmt.Errorf("expire missed entries before %s: %w", before.Format(time.RFC3339), err)
		}
		total += entries
		if rows < store.ExpireBatch {
			return total, nil
		}
	}
}
