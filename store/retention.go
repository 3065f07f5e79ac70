package store

// Expired reports what Store.Expire deleted.
type Expired struct {
	DeadLetters int64 // archived dead letters
	Missed      int64 // missed (pk, minute) entries
}

// ExpireBatch bounds the rows one statement of Store.Expire deletes (a
// Postgres store's missed row holds the pks of a group, so it may stand
// for many entries).
const ExpireBatch = 10_000
