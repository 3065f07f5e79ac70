// Package store holds what every store implementation shares: the defensive
// validation of batches, pk lists and read arguments, the error that marks
// them invalid, the rank bucket function, the retention cutoff, and the
// leadership Lease.
// The implementations live in store/memory and store/postgres; their common
// contract and test suite live in store/storetest.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

// ErrInvalid marks an input a store refused to write (invalid sample,
// duplicate pk in a batch, non-positive pk). Retrying it cannot succeed.
var ErrInvalid = errors.New("invalid store input")

// ValidateBatch checks what a store requires of a batch: valid samples with
// distinct pks, and failures with a positive pk and a minute-aligned minute.
// Errors wrap ErrInvalid.
func ValidateBatch(b influencer.Batch) error {
	seen := make(map[int64]struct{}, len(b.Samples))
	for i, s := range b.Samples {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%w: sample %d (pk %d): %w", ErrInvalid, i, s.PK, err)
		}
		if _, dup := seen[s.PK]; dup {
			return fmt.Errorf("%w: sample %d: pk %d appears twice in the batch", ErrInvalid, i, s.PK)
		}
		seen[s.PK] = struct{}{}
	}
	for i, f := range b.Failures {
		if f.PK <= 0 {
			return fmt.Errorf("%w: failure %d: pk %d is not positive", ErrInvalid, i, f.PK)
		}
		if f.Minute.IsZero() || !f.Minute.Equal(f.Minute.Truncate(time.Minute)) {
			return fmt.Errorf("%w: failure %d (pk %d): minute %s is not minute-aligned",
				ErrInvalid, i, f.PK, f.Minute.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// ValidatePKs rejects non-positive pks. Errors wrap ErrInvalid.
func ValidatePKs(pks []int64) error {
	for _, pk := range pks {
		if pk <= 0 {
			return fmt.Errorf("%w: pk %d is not positive", ErrInvalid, pk)
		}
	}
	return nil
}

// Lease is a held leadership lock (see TryLead in storetest.Store).
type Lease interface {
	// Lost is closed when the lock is lost (e.g. the connection holding it died).
	Lost() <-chan struct{}
	// Release gives the lock up.
	Release(ctx context.Context) error
}
