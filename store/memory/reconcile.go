package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/mockstagram/pipeline/store"
)

// UnreconciledMinutes implements store.Store.
func (s *Store) UnreconciledMinutes(ctx context.Context, from, to time.Time) ([]time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []time.Time{}
	for m := ceilMinuteTime(from); m.Before(to); m = m.Add(time.Minute) {
		if s.trackedAt(m) == 0 {
			continue
		}
		if p := s.progress[m.Unix()]; p != nil && p.reconciled {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// ceilMinuteTime is the first whole minute at or after t, in UTC.
func ceilMinuteTime(t time.Time) time.Time {
	m := t.UTC().Truncate(time.Minute)
	if m.Before(t) {
		m = m.Add(time.Minute)
	}
	return m
}

// Reconcile implements store.Store. The pks tracked at the minute are
// read under the lock, then recorded as failures through Record, which
// leaves out (under its own lock) each one with a sample or a miss: a
// Record in between changes nothing.
func (s *Store) Reconcile(ctx context.Context, minute time.Time, reason string) (int, error) {
	if err := store.ValidateReconcileMinute(minute); err != nil {
		return 0, err
	}
	minute = minute.UTC()
	s.mu.RLock()
	var pks []int64
	if p := s.progress[minute.Unix()]; p == nil || p.stored+p.missed < s.trackedAt(minute) {
		for _, pk := range s.registryPKs {
			if st, ok := s.pks.lookup(pk); ok && store.TrackedAt(st.active, time.UnixMicro(st.updatedAt), minute) {
				pks = append(pks, pk)
			}
		}
	}
	s.mu.RUnlock()
	missed := 0
	for _, b := range store.ReconcileBatches(minute, pks, reason) {
		res, err := s.Record(ctx, b)
		missed += res.Missed
		if err != nil {
			return missed, fmt.Errorf("reconcile minute %s: %w", minute.Format(time.RFC3339), err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.progress[minute.Unix()]
	if p == nil {
		p = &progress{}
		s.progress[minute.Unix()] = p
	}
	p.reconciled = true
	return missed, nil
}
