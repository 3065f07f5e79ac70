package store

import (
	"context"
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

// Store is the full behaviour of a store, checked for every implementation
// by the contract suite in store/storetest. Consumers (handlers, HTTP API,
// CLI) declare the small subsets they need next to their code; the app
// wires one Store.
type Store interface {
	// Record stores a batch in ONE transaction: every sample is inserted into
	// the timeline keyed by (pk, minute) with conflicts ignored; the summary
	// (current values if the minute is newer than the last one, running
	// follower sum and count, last minute, username) is updated only from the
	// rows actually inserted; failures are recorded as missed (pk, minute)
	// unless a sample exists for that (pk, minute). A sample inserted for a
	// (pk, minute) previously recorded as missed removes the missed entry.
	// Every row must pass influencer.CheckBatch with AnyMinute (callers
	// validate first; distinct sample pks, valid samples, failures with a
	// positive pk and an aligned minute): a store returns an error wrapping
	// store.ErrInvalid (see ValidateBatch) rather than storing any of an
	// invalid batch. Rows need not share the batch's Minute.
	Record(ctx context.Context, b influencer.Batch) (RecordResult, error)

	// Summary returns the influencer's summary, or store.ErrNotFound.
	Summary(ctx context.Context, pk int64) (influencer.Summary, error)
	// Timeline returns the stored points with from <= minute < to, oldest
	// first, at most limit (> 0) of them; no points is an empty, non-nil
	// slice.
	Timeline(ctx context.Context, pk int64, from, to time.Time, limit int) ([]influencer.Point, error)
	// MissedSince counts missed (pk, minute) entries with minute >= since.
	MissedSince(ctx context.Context, since time.Time) (int64, error)

	// UnreconciledMinutes lists, oldest first, the whole minutes M in
	// [from, to) at which influencers were tracked (the tracked count in
	// effect at M, as Stats reads it, is positive) and that Reconcile has
	// not marked yet.
	UnreconciledMinutes(ctx context.Context, from, to time.Time) ([]time.Time, error)
	// Reconcile accounts for minute (minute-aligned, else store.ErrInvalid).
	// When the minute's stored samples plus missed entries fall short of the
	// tracked count in effect at it, every pk tracked at minute (active, and
	// tracked since at or before minute; see store.TrackedAt) with neither a
	// sample nor a missed entry for it is recorded as missed with class
	// store.ClassNotScheduled and reason, exactly as Record records a
	// failure. Then the minute is marked reconciled: Stats counts it
	// complete and UnreconciledMinutes skips it. It returns the number of
	// new missed entries. It is safe concurrently with Record (a sample
	// recorded later fills the miss, as Record says) and idempotent.
	Reconcile(ctx context.Context, minute time.Time, reason string) (int, error)

	// Rank is 1 + the number of active (tracked) influencers with data
	// whose current follower count is strictly greater than pk's (equal
	// counts share a rank); store.ErrNotFound when pk has no data or
	// is not tracked. It costs O(log n) or a small bounded range.
	Rank(ctx context.Context, pk int64) (int64, error)
	// Leaderboard lists the active influencers with data by follower count
	// descending, then pk ascending, starting after the cursor (from the
	// top when nil), at most limit of them, each with its rank; limit must
	// be in [1, store.MaxLeaderboardLimit] (else store.ErrInvalid). No rows
	// is an empty, non-nil slice.
	Leaderboard(ctx context.Context, after *Cursor, limit int) ([]Ranked, error)
	// Stats returns the tracked count, the active influencers with data
	// and the sum of their current follower counts (maintained by Record,
	// Track and Untrack, never aggregated on read), the last complete
	// minute, and the number of missed entries with a minute in
	// [now-1h, now]. A minute M is complete when it is reconciled or its
	// stored samples plus missed entries reach the tracked count in effect
	// at M (the last registry change at or before M; a minute without
	// tracked influencers is complete). The last complete minute is the
	// newest complete minute M in [now-1h, now] with data (samples, misses
	// or a reconciliation) such that no minute between the window's first
	// minute with data and M is incomplete: it never passes a gap.
	Stats(ctx context.Context, now time.Time) (Stats, error)
	// Rollup returns pk's hourly (step store.Hourly) or daily (store.Daily)
	// buckets of UTC hours/days whose start is in [from, to), oldest first,
	// at most limit (> 0) of them; another step is store.ErrInvalid. Record
	// maintains them from inserted rows; retention never drops them. No
	// buckets is an empty, non-nil slice.
	Rollup(ctx context.Context, pk int64, step time.Duration, from, to time.Time, limit int) ([]Bucket, error)
	// PointAt returns pk's value at an instant: the stored point with the
	// newest minute M such that at-store.GrowthLookback < M <= at (a
	// primary-key range of the timeline), or store.ErrNotFound when there
	// is none (no data then, a gap, or minutes already pruned).
	PointAt(ctx context.Context, pk int64, at time.Time) (influencer.Point, error)
	// RecomputeMovers recomputes the movers lists of window as of now: for
	// every active influencer with data and a PointAt(pk, now-window), its
	// growth = current follower count - that point's; Up keeps the
	// store.MaxMovers largest positive growths (growth descending, then pk
	// ascending), Down the store.MaxMovers most negative (ascending, then
	// pk). The lists replace the previous ones atomically. It reads every
	// active influencer once (a job's cost, run hourly by the leader; never
	// a request's). A bad window is store.ErrInvalid.
	RecomputeMovers(ctx context.Context, now time.Time, window time.Duration) error
	// Movers returns the first limit rows of the last computed list of
	// window and dir (see store.ValidateMovers, else store.ErrInvalid), a
	// bounded index range; no list yet is a zero ComputedAt and empty,
	// non-nil Items.
	Movers(ctx context.Context, window time.Duration, dir Direction, limit int) (Movers, error)
	// Prune applies retention as of now: the minute points and missed
	// entries of the whole UTC days before store.RetentionCutoff(now, keep)
	// are dropped, and progress counters older than
	// store.ProgressRetention; rollups, summaries, ranks and averages are
	// kept. keep must be positive (else store.ErrInvalid).
	Prune(ctx context.Context, now time.Time, keep time.Duration) error
	// Expire deletes the dead letters received before deadLettersBefore
	// and the missed entries of the minutes before missedBefore (a zero
	// time deletes none of its kind), a bounded batch at a time
	// (store.ExpireBatch) so that no statement holds locks for long, and
	// reports how many went. Replayed or not, a letter goes; samples,
	// summaries and rollups are Prune's.
	Expire(ctx context.Context, deadLettersBefore, missedBefore time.Time) (Expired, error)

	// Track adds pks to the registry (or re-activates them) and returns how
	// many changed. Untrack deactivates them. Influencers with data enter
	// (leave) the rank and the global average with them. Both bump the registry version
	// when (and only when) they change something; a non-positive pk is an
	// error wrapping store.ErrInvalid and changes nothing.
	Track(ctx context.Context, pks []int64) (int, error)
	Untrack(ctx context.Context, pks []int64) (int, error)
	// Bootstrap tracks pks only if the registry was never bootstrapped before
	// (a marker is kept in the store); it reports whether it did.
	Bootstrap(ctx context.Context, pks []int64) (bool, error)
	// Tracked lists registry rows (active or not) with pk > after, by pk, at
	// most limit (> 0); no rows is an empty, non-nil slice.
	Tracked(ctx context.Context, after int64, limit int) ([]influencer.Tracked, error)
	// ActivePKs returns all active pks (ascending) and the registry version
	// they belong to.
	ActivePKs(ctx context.Context) ([]int64, int64, error)
	// RegistryVersion is a number that changes whenever the registry changes;
	// it is cheap (no scan) so the scheduler can poll it every minute.
	RegistryVersion(ctx context.Context) (int64, error)

	// TryLead tries to take the named leadership lock (only one scheduler
	// schedules at a time). ok=false means someone else holds it. The lease
	// is held until Release or until the holder's connection is lost
	// (then Lost is closed). Release also closes Lost.
	TryLead(ctx context.Context, name string) (lease Lease, ok bool, err error)

	// SaveDeadLetter archives a dead letter; a letter whose id is already
	// stored changes nothing (redelivery). An invalid letter (see
	// store.ValidateDeadLetter) is an error wrapping store.ErrInvalid.
	SaveDeadLetter(ctx context.Context, d DeadLetter) error
	// DeadLetters lists the letters matching every set field of f, ordered
	// by receive time then id, at most f.Limit (in [1,
	// store.MaxDeadLetterLimit], else store.ErrInvalid) of them,
	// starting after the letter whose id is f.After (an unknown cursor
	// gives no rows). No rows is an empty, non-nil slice. Times come back
	// in UTC; a letter without shard or minute has a nil Shard and a zero
	// Minute, and a nil payload or metadata comes back empty.
	DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error)
	// MarkReplayed sets the letter's replay time (again, on a second
	// replay); store.ErrNotFound when no letter has the id.
	MarkReplayed(ctx context.Context, id string, at time.Time) error

	// SuspicionCandidates returns, ascending by pk, the latest stored values
	// of those pks that are tracked (active in the registry), have a summary
	// (at least one stored sample), and have no suspicion answer checked at
	// or after checkedSince. No rows is an empty, non-nil slice. Unknown,
	// untracked or duplicate pks are skipped, not errors.
	SuspicionCandidates(ctx context.Context, pks []int64, checkedSince time.Time) ([]influencer.SuspicionCandidate, error)
	// SaveSuspicion stores is_suspicious answers in one transaction. For
	// each pk the answer with the latest CheckedAt wins: an answer not newer
	// than the stored one changes nothing (replays and redeliveries are
	// safe). Summary returns the stored answer in Summary.Suspicion. A
	// non-positive pk or a zero CheckedAt is an error wrapping
	// store.ErrInvalid and stores none of the answers. Answers may be saved
	// for pks without a summary or registry row; Summary still reports
	// store.ErrNotFound for them until they have data.
	SaveSuspicion(ctx context.Context, answers []influencer.Suspicion) error

	// Ping checks the store is reachable (readiness).
	Ping(ctx context.Context) error
}
