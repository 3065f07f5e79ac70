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

// moversKey names one computed movers list.
type moversKey struct {
	window time.Duration
	dir    store.Direction
}

// pointAt is st's newest point with at-store.GrowthLookback < minute <= at.
func pointAt(st *pkState, at time.Time) (influencer.Point, bool) {
	// M*60 <= at and M*60 > at-lookback, in whole seconds.
	hiMinute := floorDiv(at.Unix(), 60)
	loMinute := floorDiv(at.Add(-store.GrowthLookback).Unix(), 60) + 1
	i, found := st.find(hiMinute)
	if found {
		return st.timeline[i].point(), true
	}
	if i == 0 {
		return influencer.Point{}, false
	}
	p := st.timeline[i-1]
	if p.minute() < loMinute {
		return influencer.Point{}, false
	}
	return p.point(), true
}

// PointAt implements store.Store.
func (s *Store) PointAt(ctx context.Context, pk int64, at time.Time) (influencer.Point, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.pks.lookup(pk)
	if ok {
		if p, ok := pointAt(st, at); ok {
			return p, nil
		}
	}
	return influencer.Point{}, fmt.Errorf("point of pk %d at %s: %w", pk, at.Format(time.RFC3339), store.ErrNotFound)
}

// RecomputeMovers implements store.Store: one pass over the pk table under
// the read lock, then the lists are swapped in.
func (s *Store) RecomputeMovers(ctx context.Context, now time.Time, window time.Duration) error {
	if err := store.ValidateMoversWindow(window); err != nil {
		return fmt.Errorf("recompute movers: %w", err)
	}
	base := now.Add(-window)
	var up, down []store.Mover
	s.mu.RLock()
	for i := range s.pks.len() {
		st := s.pks.at(i)
		if !st.inRank { // active with data
			continue
		}
		p, ok := pointAt(st, base)
		if !ok {
			continue
		}
		m := store.Mover{PK: st.pk, Username: st.username, FollowerCount: st.follower,
			BaseFollowerCount: p.FollowerCount, BaseMinute: p.Minute, Growth: st.follower - p.FollowerCount}
		switch {
		case m.Growth > 0:
			up = keepTop(up, m, store.Up)
		case m.Growth < 0:
			down = keepTop(down, m, store.Down)
		}
	}
	s.mu.RUnlock()
	for _, l := range [][]store.Mover{up, down} {
		for j := range l {
			l[j].Rank = j + 1
		}
	}
	s.moversMu.Lock()
	defer s.moversMu.Unlock()
	s.movers[moversKey{window, store.Up}] = up
	s.movers[moversKey{window, store.Down}] = down
	s.moversAt[window] = now.UTC()
	return nil
}

// moverOrder orders a list of dir: growth in dir's direction, then pk.
func moverOrder(dir store.Direction) func(a, b store.Mover) int {
	return func(a, b store.Mover) int {
		if c := cmp.Compare(b.Growth*int64(dir), a.Growth*int64(dir)); c != 0 {
			return c
		}
		return cmp.Compare(a.PK, b.PK)
	}
}

// keepTop inserts m into the sorted list l of dir, which keeps at most
// store.MaxMovers rows.
func keepTop(l []store.Mover, m store.Mover, dir store.Direction) []store.Mover {
	order := moverOrder(dir)
	if len(l) == store.MaxMovers && order(m, l[len(l)-1]) >= 0 {
		return l
	}
	i, _ := slices.BinarySearchFunc(l, m, order)
	l = slices.Insert(l, i, m)
	if len(l) > store.MaxMovers {
		l = l[:store.MaxMovers]
	}
	return l
}

// Movers implements store.Store.
func (s *Store) Movers(ctx context.Context, window time.Duration, dir store.Direction, limit int) (store.Movers, error) {
	if err := store.ValidateMovers(window, dir, limit); err != nil {
		return store.Movers{}, fmt.Errorf("movers: %w", err)
	}
	s.moversMu.Lock()
	defer s.moversMu.Unlock()
	l := s.movers[moversKey{window, dir}]
	items := make([]store.Mover, min(limit, len(l)))
	copy(items, l)
	return store.Movers{ComputedAt: s.moversAt[window], Items: items}, nil
}
