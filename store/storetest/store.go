// Package storetest is the one contract test suite that every store
// implementation (memory, postgres) must pass.
package storetest

import (
	"time"

	"github.com/mockstagram/pipeline/store"
)

// Store is the contract the suite checks (store.Store).
type Store = store.Store

// Lease is a held leadership lock.
type Lease = store.Lease

// Now is the fixed time the suite uses for its minutes.
func Now() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }
