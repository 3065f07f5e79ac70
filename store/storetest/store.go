// Package storetest is the one contract test suite that every store
// implementation (memory, postgres) must pass: it checks store.Store.
// Only tests import it.
package storetest

import "time"

// Now is the fixed time the suite uses for its minutes.
func Now() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }
