package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Every registry change runs in a transaction that first locks the single
// registry_meta row: changes are serialised (no deadlocks between
// overlapping Track calls, one Bootstrap wins) and the version is bumped in
// the same transaction as the rows it describes.

const (
	lockMetaSQL = `SELECT bootstrapped FROM registry_meta FOR UPDATE`
	bumpSQL     = `UPDATE registry_meta SET version = version + 1`
	trackSQL    = `
WITH up AS (
    INSERT INTO influencers (pk, active, updated_at)
    SELECT pk, true, $2 FROM unnest($1::bigint[]) AS u(pk)
    ON CONFLICT (pk) DO UPDATE SET active = true, updated_at = EXCLUDED.updated_at
    WHERE NOT influencers.active
    RETURNING 1
)
SELECT count(*) FROM up`
	untrackSQL = `
WITH down AS (
    UPDATE influencers i SET active = false, updated_at = $2
    FROM unnest($1::bigint[]) AS u(pk)
    WHERE i.pk = u.pk AND i.active
    RETURNING 1
)
SELECT count(*) FROM down`
)

// Track implements storetest.Store.
func (s *Store) Track(ctx context.Context, pks []int64) (int, error) {
	var changed int
	err := s.changeRegistry(ctx, "track", pks, func(tx pgx.Tx, bootstrapped bool, pks []int64) error {
		var err error
		changed, err = s.apply(ctx, tx, trackSQL, pks)
		return err
	})
	return changed, err
}

// Untrack implements storetest.Store.
func (s *Store) Untrack(ctx context.Context, pks []int64) (int, error) {
	var changed int
	err := s.changeRegistry(ctx, "untrack", pks, func(tx pgx.Tx, bootstrapped bool, pks []int64) error {
		var err error
		changed, err = s.apply(ctx, tx, untrackSQL, pks)
		return err
	})
	return changed, err
}

// Bootstrap implements storetest.Store.
func (s *Store) Bootstrap(ctx context.Context, pks []int64) (bool, error) {
	did := false
	err := s.changeRegistry(ctx, "bootstrap", pks, func(tx pgx.Tx, bootstrapped bool, pks []int64) error {
		if bootstrapped {
			return nil
		}
		if _, err := s.apply(ctx, tx, trackSQL, pks); err != nil {
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

// apply runs a track/untrack statement and bumps the version if it changed
// any row.
func (s *Store) apply(ctx context.Context, tx pgx.Tx, sql string, pks []int64) (int, error) {
	if len(pks) == 0 {
		return 0, nil
	}
	var changed int64
	if err := tx.QueryRow(ctx, sql, pks, s.clock.Now()).Scan(&changed); err != nil {
		return 0, err
	}
	if changed > 0 {
		if _, err := tx.Exec(ctx, bumpSQL); err != nil {
			return 0, err
		}
	}
	return int(changed), nil
}

// Tracked implements storetest.Store.
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

// ActivePKs implements storetest.Store. One statement reads the pks and the
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

// RegistryVersion implements storetest.Store: a single-row read.
func (s *Store) RegistryVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT version FROM registry_meta`).Scan(&v); err != nil {
		return 0, fmt.Errorf("registry version: %w", err)
	}
	return v, nil
}
