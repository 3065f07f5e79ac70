// Package registry changes the set of tracked influencers. The CLI
// ('mockstagram registry') and the admin API use this one code path.
package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/mockstagram/pipeline/influencer"
)

// MaxExplicitPKs bounds the pks listed one by one in one change (ranges are
// bounded by influencer.ParseRange).
const MaxExplicitPKs = 100_000

// ErrInvalid marks a change request that cannot be applied as given.
var ErrInvalid = errors.New("invalid registry change")

// Tracker is the store side of a change: it tracks and untracks pks.
type Tracker interface {
	Track(ctx context.Context, pks []int64) (int, error)
	Untrack(ctx context.Context, pks []int64) (int, error)
}

// Change names pks by an inclusive range ("FROM-TO"), a list, or both.
type Change struct {
	Range string  `json:"range,omitempty"`
	PKs   []int64 `json:"pks,omitempty"`
}

// Resolve validates the change and returns its pks.
func (c Change) Resolve() ([]int64, error) {
	var pks []int64
	if c.Range != "" {
		r, err := influencer.ParseRange(c.Range)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		pks = r.PKs()
	}
	if len(c.PKs) > MaxExplicitPKs {
		return nil, fmt.Errorf("%w: more than %d pks listed; use a range", ErrInvalid, MaxExplicitPKs)
	}
	for _, pk := range c.PKs {
		if pk <= 0 {
			return nil, fmt.Errorf("%w: pk %d is not positive", ErrInvalid, pk)
		}
		pks = append(pks, pk)
	}
	if len(pks) == 0 {
		return nil, fmt.Errorf("%w: give a range (FROM-TO) and/or pks", ErrInvalid)
	}
	return pks, nil
}

// Editor applies changes to the store.
type Editor struct{ store Tracker }

// New creates the service.
func New(store Tracker) *Editor { return &Editor{store: store} }

// Add tracks the change's pks and returns how many changed.
func (s *Editor) Add(ctx context.Context, c Change) (int, error) {
	pks, err := c.Resolve()
	if err != nil {
		return 0, err
	}
	n, err := s.store.Track(ctx, pks)
	if err != nil {
		return 0, fmt.Errorf("track: %w", err)
	}
	return n, nil
}

// Remove stops tracking the change's pks and returns how many changed.
func (s *Editor) Remove(ctx context.Context, c Change) (int, error) {
	pks, err := c.Resolve()
	if err != nil {
		return 0, err
	}
	n, err := s.store.Untrack(ctx, pks)
	if err != nil {
		return 0, fmt.Errorf("untrack: %w", err)
	}
	return n, nil
}
