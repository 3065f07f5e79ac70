package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// SuspicionCandidates implements store.Store.
func (s *Store) SuspicionCandidates(ctx context.Context, pks []int64, checkedSince time.Time) ([]influencer.SuspicionCandidate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	since := storedTime(checkedSince)
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []influencer.SuspicionCandidate{}
	seen := make(map[int64]struct{}, len(pks))
	for _, pk := range pks {
		if _, dup := seen[pk]; dup {
			continue
		}
		seen[pk] = struct{}{}
		sum, ok := s.summary[pk]
		if !ok || !s.isActive(pk) {
			continue
		}
		if a, ok := s.suspicion[pk]; ok && !a.CheckedAt.Before(since) {
			continue
		}
		out = append(out, influencer.SuspicionCandidate{
			PK:             pk,
			Username:       sum.Username,
			FollowerCount:  sum.FollowerCount,
			FollowingCount: sum.FollowingCount,
		})
	}
	slices.SortFunc(out, func(a, b influencer.SuspicionCandidate) int { return cmp.Compare(a.PK, b.PK) })
	return out, nil
}

// SaveSuspicion implements store.Store. Answers are applied in order, so
// of several answers for one pk with the same (latest) CheckedAt the first
// wins, as in the Postgres store.
func (s *Store) SaveSuspicion(ctx context.Context, answers []influencer.Suspicion) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.ValidateSuspicions(answers); err != nil {
		return fmt.Errorf("save suspicion: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range answers {
		a.CheckedAt = storedTime(a.CheckedAt)
		if old, ok := s.suspicion[a.PK]; ok && !old.CheckedAt.Before(a.CheckedAt) {
			continue
		}
		s.suspicion[a.PK] = a
	}
	return nil
}

// suspicionOf returns a copy of pk's stored answer, or nil. The caller holds
// s.mu.
func (s *Store) suspicionOf(pk int64) *influencer.Suspicion {
	a, ok := s.suspicion[pk]
	if !ok {
		return nil
	}
	return &a
}

// storedTime is t as Postgres stores a timestamptz: UTC, whole microseconds.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
