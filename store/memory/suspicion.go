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
		st, ok := s.pks.lookup(pk)
		if !ok || !st.hasData || !st.active {
			continue
		}
		if st.checked && st.checkedAt >= since.UnixMicro() {
			continue
		}
		out = append(out, influencer.SuspicionCandidate{
			PK:             pk,
			Username:       st.username,
			FollowerCount:  st.follower,
			FollowingCount: st.following,
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
		at := a.CheckedAt.UnixMicro()
		_, st := s.pks.get(a.PK)
		if st.checked && st.checkedAt >= at {
			continue
		}
		st.checked, st.checkedAt, st.suspicious = true, at, a.Suspicious
	}
	return nil
}

// suspicion returns the record's stored answer, or nil.
func (st *pkState) suspicion() *influencer.Suspicion {
	if !st.checked {
		return nil
	}
	return &influencer.Suspicion{PK: st.pk, Suspicious: st.suspicious, CheckedAt: time.UnixMicro(st.checkedAt).UTC()}
}

// storedTime is t as Postgres stores a timestamptz: UTC, whole microseconds.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
