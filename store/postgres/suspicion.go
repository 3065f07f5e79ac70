package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// Suspicion answers live in their own table (migration 00006), away from
// the recorder's hot influencer_summary rows.
const (
	// saveSuspicionSQL upserts a batch of answers (distinct pks, sorted so
	// that concurrent saves lock rows in the same order); a stored answer
	// is replaced only by a later one.
	saveSuspicionSQL = `
INSERT INTO suspicion (pk, suspicious, checked_at)
SELECT pk, suspicious, checked_at
FROM unnest($1::bigint[], $2::boolean[], $3::timestamptz[]) AS a(pk, suspicious, checked_at)
ORDER BY pk
ON CONFLICT (pk) DO UPDATE SET suspicious = EXCLUDED.suspicious, checked_at = EXCLUDED.checked_at
WHERE suspicion.checked_at < EXCLUDED.checked_at`
	// suspicionCandidatesSQL: primary-key lookups of the asked pks in the
	// summary, the registry and the answers.
	suspicionCandidatesSQL = `
SELECT s.pk, s.username, s.follower_count, s.following_count
FROM influencer_summary s
JOIN influencers i ON i.pk = s.pk AND i.active
LEFT JOIN suspicion q ON q.pk = s.pk
WHERE s.pk = ANY($1::bigint[]) AND (q.checked_at IS NULL OR q.checked_at < $2::timestamptz)
ORDER BY s.pk`
)

// SuspicionCandidates implements store.Store.
func (s *Store) SuspicionCandidates(ctx context.Context, pks []int64, checkedSince time.Time) ([]influencer.SuspicionCandidate, error) {
	if len(pks) == 0 {
		return []influencer.SuspicionCandidate{}, nil
	}
	rows, err := s.pool.Query(ctx, suspicionCandidatesSQL, pks, checkedSince)
	if err != nil {
		return nil, fmt.Errorf("suspicion candidates among %d pks: %w", len(pks), err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (influencer.SuspicionCandidate, error) {
		var c influencer.SuspicionCandidate
		err := row.Scan(&c.PK, &c.Username, &c.FollowerCount, &c.FollowingCount)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("suspicion candidates among %d pks: %w", len(pks), err)
	}
	return out, nil
}

// SaveSuspicion implements store.Store in one statement. Several
// answers for one pk are reduced to the latest first (ON CONFLICT cannot
// touch a row twice in one statement); of those with the same latest
// CheckedAt the first wins, as if they were saved one after the other.
func (s *Store) SaveSuspicion(ctx context.Context, answers []influencer.Suspicion) error {
	if err := store.ValidateSuspicions(answers); err != nil {
		return fmt.Errorf("save suspicion: %w", err)
	}
	latest := latestSuspicions(answers)
	if len(latest) == 0 {
		return nil
	}
	pks := make([]int64, len(latest))
	suspicious := make([]bool, len(latest))
	checkedAt := make([]time.Time, len(latest))
	for i, a := range latest {
		pks[i], suspicious[i], checkedAt[i] = a.PK, a.Suspicious, a.CheckedAt
	}
	if _, err := s.pool.Exec(ctx, saveSuspicionSQL, pks, suspicious, checkedAt); err != nil {
		return fmt.Errorf("save %d suspicion answers: %w", len(latest), err)
	}
	return nil
}

// latestSuspicions keeps, per pk, the answer with the latest CheckedAt at
// the precision Postgres stores (whole microseconds; the first of equals),
// sorted by pk.
func latestSuspicions(answers []influencer.Suspicion) []influencer.Suspicion {
	index := make(map[int64]int, len(answers))
	out := make([]influencer.Suspicion, 0, len(answers))
	for _, a := range answers {
		a.CheckedAt = a.CheckedAt.UTC().Truncate(time.Microsecond)
		if i, ok := index[a.PK]; ok {
			if a.CheckedAt.After(out[i].CheckedAt) {
				out[i] = a
			}
			continue
		}
		index[a.PK] = len(out)
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b influencer.Suspicion) int { return cmp.Compare(a.PK, b.PK) })
	return out
}
