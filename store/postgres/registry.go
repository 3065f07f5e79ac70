package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Every registry change runs in a transaction that first takes the registry
// lock exclusively (see recordLockSQL: no Record runs meanwhile) and locks
// the single registry_meta row: changes are serialised (no deadlocks between
// overlapping Track calls, one Bootstrap wins) and the version, the tracked
// counter and registry_history move in the same transaction as the rows
// they describe. Influencers with data that become active (inactive) enter
// (leave) the rank counters and global_stats in the same statement.

const (
	registryLockSQL = `SELECT pg_advisory_xact_lock($1::integer, $2::integer)`
	lockMetaSQL     = `SELECT bootstrapped FROM registry_meta FOR UPDATE`
	// bumpSQL records a change of $1 tracked pks at $2.
	bumpSQL = `
WITH m AS (
    UPDATE registry_meta SET version = version + 1, tracked = tracked + $1
    RETURNING version, tracked
)
INSERT INTO registry_history (at, version, tracked) SELECT $2, version, tracked FROM m`
	trackSQL = `
WITH up AS (
    INSERT INTO influencers (pk, active, updated_at)
    SELECT pk, true, $2 FROM unnest($1::bigint[]) AS u(pk)
    ON CONFLICT (pk) DO UPDATE SET active = true, updated_at = EXCLUDED.updated_at
    WHERE NOT influencers.active
    RETURNING pk
), flip AS (
    UPDATE influencer_summary s SET active = true
    FROM up WHERE s.pk = up.pk AND NOT s.active
    RETURNING s.follower_count, s.rank_bucket
)` + flipTailSQL
	untrackSQL = `
WITH up AS (
    UPDATE influencers i SET active = false, updated_at = $2
    FROM unnest($1::bigint[]) AS u(pk)
    WHERE i.pk = u.pk AND i.active
    RETURNING i.pk
), flip AS (
    UPDATE influencer_summary s SET active = false
    FROM up WHERE s.pk = up.pk AND s.active
    RETURNING s.follower_count, s.rank_bucket
)` + flipTailSQL
	// flipTailSQL moves the flipped summary rows into ($3 = 1) or out of
	// ($3 = -1) the rank counters and stripe 0 of global_stats, and counts
	// the changed registry rows.
	flipTailSQL = `, rb AS (
    INSERT INTO rank_buckets AS r (level, bucket, n)
    SELECT level, bucket, $3::bigint * count(*) FROM (
        SELECT 0 AS level, rank_bucket AS bucket FROM flip
        UNION ALL
        SELECT 1, rank_bucket >> 7 FROM flip
    ) x
    GROUP BY level, bucket
    ORDER BY level, bucket
    ON CONFLICT (level, bucket) DO UPDATE SET n = r.n + EXCLUDED.n
    RETURNING 1
), gs AS (
    UPDATE global_stats g SET
        influencers    = g.influencers + $3::bigint * d.n,
        follower_total = g.follower_total + $3::bigint * d.t
    FROM (SELECT count(*) AS n, coalesce(sum(follower_count), 0) AS t FROM flip) d
    WHERE g.stripe = 0 AND d.n > 0
    RETURNING 1
)
SELECT count(*) FROM up`
)

// Track implements store.Store.
func (s *Store) Track(ctx context.Context, pks []int64) (int, error) {
	var changed int
	err := s.changeRegistry(ctx, "track", pks, func(tx pgx.Tx, bootstrapped bool, pks []int64) error {
		var err error
		changed, err = s.apply(ctx, tx, trackSQL, pks, 1)
		return err
	})
	return changed, err
}

// Untrack implements store.Store.
func (s *Store) Untrack(ctx context.Context, pks []int64) (int, error) {
	var changed int
	err := s.changeRegistry(ctx, "untrack", pks, func(tx pgx.Tx, bootstrapped bool, pks []int64) error {
		var err error
		changed, err = s.apply(ctx, tx, untrackSQL, pks, -1)
		return err
	})
	return changed, err
}

// Bootstrap implements store.Store.
func (s *Store) Bootstrap(ctx context.Context, pks []int64) (bool, error) {
	did := false
	err := s.changeRegistry(ctx, "bootstrap", pks, func(tx pgx.Tx, bootstrapped bool, pks []int64) error {
		if bootstrapped {
			return nil
		}
		if _, err := s.apply(ctx, tx, trackSQL, pks, 1); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE registry_meta SET bootstrapped = true`); err != nil {
			return err
		}
		did = true
		return nil
	})
	return did, err
}

// changeRegistry validates, sorts and dedups pks, then runs fn in a
// transaction holding the registry_meta row lock.
func (s *Store) changeRegistry(ctx context.Context, op string, pks []int64,
	fn func(tx pgx.Tx, bootstrapped bool, pks []int64) error,
) error {
	if err := store.ValidatePKs(pks); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	pks = slices.Clone(pks)
	slices.Sort(pks)
	pks = slices.Compact(pks)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, registryLockSQL, registryLockClass, registryLockID); err != nil {
			return err
		}
		var bootstrapped bool
		if err := tx.QueryRow(ctx, lockMetaSQL).Scan(&bootstrapped); err != nil {
			return err
		}
		return fn(tx, bootstrapped, pks)
	})
	if err != nil {
		return fmt.Errorf("%s %d pks: %w", op, len(pks), err)
	}
	return nil
}

// apply runs a track (sign 1) or untrack (sign -1) statement and, if it
// changed any row, bumps the version, moves the tracked counter and appends
// to registry_history.
func (s *Store) apply(ctx context.Context, tx pgx.Tx, sql string, pks []int64, sign int64) (int, error) {
	if len(pks) == 0 {
		return 0, nil
	}
	now := s.clock.Now()
	var changed int64
	if err := tx.QueryRow(ctx, sql, pks, now, sign).Scan(&changed); err != nil {
		return 0, err
	}
	if changed > 0 {
		if _, err := tx.Exec(ctx, bumpSQL, sign*changed, now); err != nil {
			return 0, err
		}
	}
	return int(changed), nil
}

// Tracked implements store.Store.
func (s *Store) Tracked(ctx context.Context, after int64, limit int) ([]influencer.Tracked, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("tracked: %w: limit %d is not positive", store.ErrInvalid, limit)
	}
	rows, err := s.pool.Query(ctx, `
SELECT i.pk, coalesce(s.username, ''), i.active, i.updated_at
FROM influencers i LEFT JOIN influencer_summary s ON s.pk = i.pk
WHERE i.pk > $1 ORDER BY i.pk LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("tracked after %d: %w", after, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (influencer.Tracked, error) {
		var t influencer.Tracked
		err := row.Scan(&t.PK, &t.Username, &t.Active, &t.UpdatedAt)
		t.UpdatedAt = t.UpdatedAt.UTC()
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("tracked after %d: %w", after, err)
	}
	return out, nil
}

// ActivePKs implements store.Store. One statement reads the pks and the
// version from the same snapshot.
func (s *Store) ActivePKs(ctx context.Context) ([]int64, int64, error) {
	var (
		pks     []int64
		version int64
	)
	err := s.pool.QueryRow(ctx, `
SELECT (SELECT version FROM registry_meta),
       coalesce((SELECT array_agg(pk ORDER BY pk) FROM influencers WHERE active), '{}')`).Scan(&version, &pks)
	if err != nil {
		return nil, 0, fmt.Errorf("active pks: %w", err)
	}
	return pks, version, nil
}

// RegistryVersion implements store.Store: a single-row read.
func (s *Store) RegistryVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT version FROM registry_meta`).Scan(&v); err != nil {
		return 0, fmt.Errorf("registry version: %w", err)
	}
	return v, nil
}
