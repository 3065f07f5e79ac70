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

	"github.com/mockstagram/pipeline/influencer"
)

// ErrNotFound is returned by stores when an influencer (or a dead letter)
// has no data.
var ErrNotFound = errors.New("influencer not found")

// RecordResult says what a Record call changed.
type RecordResult struct {
	Inserted   int // new (pk, minute) rows
	Duplicates int // rows that already existed (redelivery)
	Missed     int // new missed (pk, minute) entries
}

// ErrInvalid marks an input a store refused to write (invalid sample,
// duplicate pk in a batch, non-positive pk). Retrying it cannot succeed.
var ErrInvalid = errors.New("invalid store input")

// ValidateBatch is the stores' defensive check of a batch: it refuses a
// batch in which influencer.CheckBatch (rows for any minute) rejects any
// row. Callers validate first, so this only catches a caller's bug. Errors
// wrap ErrInvalid.
func ValidateBatch(b influencer.Batch) error {
	_, rejected := influencer.CheckBatch(b, influencer.AnyMinute)
	if len(rejected) == 0 {
		return nil
	}
	f := rejected[0]
	if len(rejected) > 1 {
		return fmt.Errorf("%w: pk %d: %s (and %d more rejected rows)", ErrInvalid, f.PK, f.Reason, len(rejected)-1)
	}
	return fmt.Errorf("%w: pk %d: %s", ErrInvalid, f.PK, f.Reason)
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

// Lease is a held leadership lock (see Store.TryLead).
type Lease interface {
	// Lost is closed when the lock is lost (e.g. the connection holding it died).
	Lost() <-chan struct{}
	// Release gives the lock up.
	Release(ctx context.Context) error
}
