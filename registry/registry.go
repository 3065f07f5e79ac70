// Package registry changes the set of tracked influencers. The CLI
// ('mockstagram registry') and the admin API use this one code path.
//
// A change is applied a batch of at most Batch pks at a time, each batch
// one store call (on Postgres one transaction): the registry lock, which
// every recorder write shares, is held exclusively for one batch, not for
// the whole change, and memory stays bounded by the batch whatever the
// range. A large change is therefore not atomic: a failure or an interrupt
// leaves the batches applied so far, and running the change again
// finishes it (tracking a tracked pk changes nothing).
package registry

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/mockstagram/pipeline/influencer"
)

// MaxExplicitPKs bounds the pks listed one by one in one change (ranges are
// bounded by influencer.ParseRange).
const MaxExplicitPKs = 100_000

// Batch is the most pks one store call of a change gets.
const Batch = 10_000

// MaxAPIPKs is the most pks one admin API request may change (CheckAPI):
// a few batches, answered within a request's time. Larger changes go
// through the CLI, which shows their progress.
const MaxAPIPKs = 100_000

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

// Size validates the change and returns how many pks it names (a listed pk
// that is also in the range counts twice), without expanding the range.
func (c Change) Size() (int64, error) {
	var n int64
	if c.Range != "" {
		r, err := influencer.ParseRange(c.Range)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		n = r.To - r.From + 1
	}
	if len(c.PKs) > MaxExplicitPKs {
		return 0, fmt.Errorf("%w: more than %d pks listed; use a range", ErrInvalid, MaxExplicitPKs)
	}
	for _, pk := range c.PKs {
		if pk <= 0 {
			return 0, fmt.Errorf("%w: pk %d is not positive", ErrInvalid, pk)
		}
	}
	n += int64(len(slices.Compact(slices.Sorted(slices.Values(c.PKs)))))
	if n == 0 {
		return 0, fmt.Errorf("%w: give a range (FROM-TO) and/or pks", ErrInvalid)
	}
	return n, nil
}

// Resolve validates the change and returns its pks: the range's, then the
// listed ones. It expands the whole range; Editor does not.
func (c Change) Resolve() ([]int64, error) {
	n, err := c.Size()
	if err != nil {
		return nil, err
	}
	pks := make([]int64, 0, n)
	if c.Range != "" {
		r, _ := influencer.ParseRange(c.Range) // Size checked it
		pks = r.PKs()
	}
	return append(pks, c.PKs...), nil
}

// CheckAPI reports (wrapping ErrInvalid) a change too large for one admin
// API request, with the CLI command that applies it instead.
func (c Change) CheckAPI(command string) error {
	n, err := c.Size()
	if err != nil {
		return err
	}
	if n > MaxAPIPKs {
		return fmt.Errorf("%w: %d pks in one request, more than the admin API takes (%d); "+
			"use 'mockstagram %s --range FROM-TO' (applied in batches of %d, with progress)",
			ErrInvalid, n, MaxAPIPKs, command, Batch)
	}
	return nil
}

// batches yields the change's pks in batches of at most n: the range
// ascending, then the listed pks sorted and deduplicated. The change must
// be valid (Size).
func (c Change) batches(n int) iter.Seq[[]int64] {
	return func(yield func([]int64) bool) {
		buf := make([]int64, 0, n)
		if c.Range != "" {
			r, err := influencer.ParseRange(c.Range)
			if err != nil {
				return
			}
			for pk := r.From; pk <= r.To; pk++ {
				buf = append(buf, pk)
				if len(buf) == n || pk == r.To {
					if !yield(buf) {
						return
					}
					buf = buf[:0]
				}
			}
		}
		listed := slices.Compact(slices.Sorted(slices.Values(c.PKs)))
		for b := range slices.Chunk(listed, n) {
			if !yield(b) {
				return
			}
		}
	}
}

// Op is what a change does.
type Op int

// The operations.
const (
	OpAdd    Op = iota // track
	OpRemove           // untrack
)

func (o Op) String() string {
	if o == OpRemove {
		return "untrack"
	}
	return "track"
}

// Progress is reported after each batch of a change.
type Progress struct {
	Done    int64 // pks applied so far (batches done)
	Total   int64 // pks the change names (Change.Size)
	Changed int   // registry rows changed so far
}

// Editor applies changes to the store.
type Editor struct {
	store Tracker
	batch int
}

// New creates the service.
func New(store Tracker) *Editor { return &Editor{store: store, batch: Batch} }

// Add tracks the change's pks and returns how many changed.
func (s *Editor) Add(ctx context.Context, c Change) (int, error) {
	return s.Apply(ctx, OpAdd, c, nil)
}

// Remove stops tracking the change's pks and returns how many changed.
func (s *Editor) Remove(ctx context.Context, c Change) (int, error) {
	return s.Apply(ctx, OpRemove, c, nil)
}

// Apply applies the change a batch at a time (see the package doc) and
// returns how many registry rows changed. progress, if set, is called after
// each batch, between store calls. On an error the count is that of the
// batches applied before it, which stay applied.
func (s *Editor) Apply(ctx context.Context, op Op, c Change, progress func(Progress)) (int, error) {
	total, err := c.Size()
	if err != nil {
		return 0, err
	}
	apply := s.store.Track
	if op == OpRemove {
		apply = s.store.Untrack
	}
	p := Progress{Total: total}
	for b := range c.batches(s.batch) {
		if err := ctx.Err(); err != nil {
			return p.Changed, fmt.Errorf("%s: stopped after %d of %d pks (%d changed; run it again to finish): %w",
				op, p.Done, total, p.Changed, err)
		}
		n, err := apply(ctx, b)
		if err != nil {
			return p.Changed, fmt.Errorf("%s: after %d of %d pks (%d changed; run it again to finish): %w",
				op, p.Done, total, p.Changed, err)
		}
		p.Done += int64(len(b))
		p.Changed += n
		if progress != nil {
			progress(p)
		}
	}
	return p.Changed, nil
}
