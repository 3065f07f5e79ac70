package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/store"
)

// BatchStore stores one result batch idempotently in one transaction. An
// error wrapping store.ErrInvalid means the store refused the batch's data
// (retrying the same batch cannot succeed); any other error is transient.
//
// Ping tells, after a transient error, whether the store is down for every
// batch (Ping fails too: the error wraps ErrStoreUnavailable) or failed for
// this batch only.
type BatchStore interface {
	Record(ctx context.Context, b influencer.Batch) (store.RecordResult, error)
	Ping(ctx context.Context) error
}

// TxBatchStore is a BatchStore that can also record a batch inside a
// transaction on its database (the Postgres store): the batch is stored if
// and only if that transaction commits. Each call runs in a savepoint: on
// an error it leaves the transaction as it was (unless its connection is
// gone). Errors are classified as Record's.
type TxBatchStore interface {
	RecordInTx(ctx context.Context, tx pgx.Tx, b influencer.Batch) (store.RecordResult, error)
}

// ErrStoreUnavailable marks a transient error of the recorder while the
// store does not answer at all (its Ping fails): the message is not at
// fault, so its redelivery does not count toward the redelivery limit
// (middleware.Redelivery.Excused); it waits for the store like the
// messages behind it.
var ErrStoreUnavailable = errors.New("store unavailable")

// pingTimeout bounds the Ping after a transient error (real time: a hung
// connection must not hold the handler).
const pingTimeout = 2 * time.Second

// Recorder writes each result message as one batch. Invalid samples are
// rejected one by one (recorded as missed with their reason) and the rest is
// stored; the message is acked only after the transaction commits (the
// router acks when Handle returns nil).
//
// When the store rejects a batch because of its data (store.ErrInvalid), the
// recorder bisects it: it records the halves recursively until each rejected
// row is isolated, so the good rows are stored and every bad row is
// recorded as missed (class "invalid", the store's error as reason), all
// through the same idempotent Record. k bad rows in n cost at most
// 2 + 2k·⌈log₂ n⌉ Record calls.
//
// Exactly once on the Postgres broker: when the message carries the
// broker's read transaction (wsql.TxFromContext; the broker shares the
// store's database) and the store is a TxBatchStore, the batch is written
// in that transaction, which the broker commits together with the ack
// (deleting the message's queue row). A crash, a lost connection or the
// ack deadline before that commit leaves neither the rows nor the ack; the
// commit leaves both, and the message is not delivered again. Inside the
// transaction the recorder never leaves a write behind an error: a failed
// attempt is rolled back to its savepoint (by the store), a bisection runs
// in a savepoint of its own that an error rolls back whole, so the nack
// that may follow (which commits the transaction with the message's
// delayed redelivery) commits nothing of the batch. The writes in the
// transaction end txAckMargin before the ack deadline, while the broker
// still waits for this handler. Other brokers (or stores) use the
// idempotent Record: at-least-once delivery, each (pk, minute) stored once.
//
// Transient store errors are returned (the Retry middleware retries, then
// the message is nacked). While the store keeps failing, one handler at a
// time probes it at exponentially growing intervals and the others wait for
// the probe instead of adding attempts of their own, so a database outage
// does not turn every in-flight message into a retry loop.
type Recorder struct {
	store   BatchStore
	txStore TxBatchStore // store, when it can record in the broker's transaction; else nil
	txOf    func(context.Context) (pgx.Tx, bool)
	// afterCommit is how the recorder defers counting a batch written in
	// the broker's transaction until that commits (nil: no such hook).
	afterCommit func(context.Context) func(func())
	logger      *slog.Logger
	metrics     *metrics.Pipeline
	gate        gate
}

// Store backoff after a transient error: the first probe waits about
// storeBackoffInitial, each failed probe doubles the wait up to
// storeBackoffMax. Real time: it paces a real database, whatever the
// pipeline's clock.
const (
	storeBackoffInitial = 100 * time.Millisecond
	storeBackoffMax     = 5 * time.Second
)

// NewRecorder creates a recorder.
func NewRecorder(store BatchStore, logger *slog.Logger, m *metrics.Pipeline) *Recorder {
	txStore, _ := store.(TxBatchStore)
	return &Recorder{store: store, txStore: txStore, txOf: brokerTx, afterCommit: brokerAfterCommit, logger: logger, metrics: m,
		gate: gate{initial: storeBackoffInitial, max: storeBackoffMax}}
}

// txAckMargin: the recorder's writes in the broker's transaction end this
// long before the message's ack deadline (its context's deadline). At the
// deadline the broker ends the transaction itself, and a statement still
// running on its connection then would race with that (the broker's
// commit fails with "conn busy"); cut short here, the statement's
// connection is closed and the transaction rolled back, cleanly.
const txAckMargin = 15 * time.Second

// savepointRollbackTimeout bounds rolling back a bisection's savepoint,
// which runs even when the handler's context has ended.
const savepointRollbackTimeout = 5 * time.Second

// brokerTx is the Postgres broker's read transaction a message carries.
func brokerTx(ctx context.Context) (pgx.Tx, bool) {
	tx, ok := wsql.TxFromContext(ctx)
	if !ok {
		return nil, false
	}
	if t, ok := tx.(interface{ Pgx() (pgx.Tx, bool) }); ok { // the postgres broker's (broker.CommitHookTx)
		return t.Pgx()
	}
	return nil, false
}

// brokerAfterCommit is how to run a function once the broker's read
// transaction of a message commits, if the broker offers it
// (broker.CommitHookTx); nil otherwise.
func brokerAfterCommit(ctx context.Context) func(func()) {
	tx, ok := wsql.TxFromContext(ctx)
	if !ok {
		return nil
	}
	if h, ok := tx.(interface{ AfterCommit(func()) }); ok {
		return h.AfterCommit
	}
	return nil
}

// Handle is the Watermill handler for fetcher_results.
func (r *Recorder) Handle(msg *message.Message) error {
	batch, err := messages.DecodeResult(msg.Payload)
	if err != nil {
		return err
	}
	clean, rejected := Clean(batch)
	if rejected > 0 {
		r.metrics.SamplesRejected.Add(float64(rejected))
		r.logger.WarnContext(msg.Context(), "rejected invalid entries", "minute", batch.Minute, "shard", batch.Shard, "rejected", rejected)
	}
	ctx := msg.Context()
	wrap := func(err error) error {
		return fmt.Errorf("record shard %d minute %s: %w", batch.Shard, batch.Minute.Format(time.RFC3339), err)
	}
	tx, inTx := r.tx(ctx)
	if inTx {
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-txAckMargin))
			defer cancel()
		}
	}
	done, err := r.gate.enter(ctx)
	if err != nil {
		return wrap(err) // the probe it waited for failed (ErrStoreUnavailable), or ctx ended
	}
	start := time.Now()
	var res store.RecordResult
	if inTx {
		res, err = r.recordInTx(ctx, tx, clean)
	} else {
		res, err = r.record(ctx, r.store.Record, clean)
	}
	done(ctx, err)
	// What a bisection committed before an error is stored: count it (in
	// the broker's transaction an error leaves nothing written, res is
	// zero). In the transaction the rows commit with the ack, after this
	// handler: they are counted when that commit succeeds (a commit that
	// fails, its connection lost in between, counts nothing, and the
	// redelivery counts them once), or at once if the broker cannot say.
	count := func() {
		r.metrics.SamplesStored.Add(float64(res.Inserted))
		r.metrics.SamplesDuplicate.Add(float64(res.Duplicates))
		r.metrics.SamplesMissed.Add(float64(res.Missed))
		if res.Inserted > 0 {
			r.metrics.NewestMinute.Set(float64(batch.Minute.Unix()))
		}
	}
	if hook := r.commitHook(ctx, inTx, err); hook != nil {
		hook(count)
	} else {
		count()
	}
	if err != nil {
		return wrap(r.unavailable(ctx, err))
	}
	r.metrics.WriteDuration.Observe(time.Since(start).Seconds())
	r.metrics.BatchSize.Observe(float64(len(clean.Samples)))
	return nil
}

// unavailable wraps a transient err with ErrStoreUnavailable when the
// store does not answer a Ping either. Data errors, malformed batches and
// the message's own context ending are returned as they are.
func (r *Recorder) unavailable(ctx context.Context, err error) error {
	if errors.Is(err, store.ErrInvalid) || errors.Is(err, messages.ErrMalformed) || errors.Is(err, ErrStoreUnavailable) ||
		ctx.Err() != nil {
		return err
	}
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if perr := r.store.Ping(pingCtx); perr != nil {
		return fmt.Errorf("%w (ping: %w): %w", ErrStoreUnavailable, perr, err)
	}
	return err
}

// recordFunc stores one batch (BatchStore.Record, or TxBatchStore.RecordInTx
// in a given transaction).
type recordFunc func(ctx context.Context, b influencer.Batch) (store.RecordResult, error)

// commitHook is where to defer counting a batch written in the broker's
// transaction tx (nil: count at once).
func (r *Recorder) commitHook(ctx context.Context, inTx bool, err error) func(func()) {
	if !inTx || err != nil || r.afterCommit == nil {
		return nil
	}
	return r.afterCommit(ctx)
}

// tx is the broker's transaction to record the message in, if the message
// carries one and the store can write in it.
func (r *Recorder) tx(ctx context.Context) (pgx.Tx, bool) {
	if r.txStore == nil {
		return nil, false
	}
	return r.txOf(ctx)
}

// recordInTx stores b in the broker's transaction tx. An error leaves tx as
// it was: the first attempt is rolled back by the store; a bisection (the
// store rejected a row) runs in a savepoint of its own, released when it
// succeeds and rolled back whole on an error, so that no half of the batch
// is written behind an error (and committed by a nack).
func (r *Recorder) recordInTx(ctx context.Context, tx pgx.Tx, b influencer.Batch) (store.RecordResult, error) {
	res, err := r.txStore.RecordInTx(ctx, tx, b)
	if err == nil || !errors.Is(err, store.ErrInvalid) {
		return res, err
	}
	sp, spErr := tx.Begin(ctx)
	if spErr != nil {
		return store.RecordResult{}, fmt.Errorf("savepoint for the bisection: %w (after: %w)", spErr, err)
	}
	res, err = r.recordRejected(ctx, func(ctx context.Context, b influencer.Batch) (store.RecordResult, error) {
		return r.txStore.RecordInTx(ctx, sp, b)
	}, b, err)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), savepointRollbackTimeout)
		defer cancel()
		if rbErr := sp.Rollback(rctx); rbErr != nil {
			// The transaction is lost (its connection is gone): the broker
			// cannot commit it, the message comes back.
			return store.RecordResult{}, fmt.Errorf("%w (rollback of the bisection: %w)", err, rbErr)
		}
		return store.RecordResult{}, err
	}
	if err := sp.Commit(ctx); err != nil {
		return store.RecordResult{}, fmt.Errorf("release the bisection's savepoint: %w", err)
	}
	return res, nil
}

// record stores b with rec, bisecting it when the store rejects its data;
// the bad rows found are then recorded as missed in one more batch.
func (r *Recorder) record(ctx context.Context, rec recordFunc, b influencer.Batch) (store.RecordResult, error) {
	res, err := rec(ctx, b)
	if err == nil {
		return res, nil
	}
	return r.recordRejected(ctx, rec, b, err)
}

// recordRejected goes on from rec's first answer err for the whole of b.
func (r *Recorder) recordRejected(ctx context.Context, rec recordFunc, b influencer.Batch, err error) (store.RecordResult, error) {
	var (
		res store.RecordResult
		bad []influencer.Failure
	)
	if err := r.rejected(ctx, rec, b, err, &res, &bad); err != nil {
		return res, err
	}
	if len(bad) == 0 {
		return res, nil
	}
	r.metrics.SamplesRejected.Add(float64(len(bad)))
	pks := make([]int64, len(bad))
	for i, f := range bad {
		pks[i] = f.PK
	}
	r.logger.WarnContext(ctx, "store rejected rows; recording them as missed",
		"minute", b.Minute, "shard", b.Shard, "pks", pks, "first_reason", bad[0].Reason)
	// Only failures: a rejected one is dropped (logged) by bisect, so this
	// pass adds nothing to bad.
	return res, r.bisect(ctx, rec, influencer.Batch{Minute: b.Minute, Shard: b.Shard, Failures: bad}, &res, nil)
}

// bisect records b; when the store rejects it as invalid it records the
// halves, down to single rows. A rejected row (sample or failure) is
// appended to bad as an "invalid" failure with the store's error; when bad
// is nil (the pass that records those) a rejected row cannot be recorded at
// all and is logged. Transient errors abort.
func (r *Recorder) bisect(ctx context.Context, rec recordFunc, b influencer.Batch, acc *store.RecordResult, bad *[]influencer.Failure) error {
	res, err := rec(ctx, b)
	if err == nil {
		acc.Inserted += res.Inserted
		acc.Duplicates += res.Duplicates
		acc.Missed += res.Missed
		return nil
	}
	return r.rejected(ctx, rec, b, err, acc, bad)
}

// rejected goes on from rec's error err for b: a transient error aborts, a
// rejection isolates the bad rows (see bisect).
func (r *Recorder) rejected(ctx context.Context, rec recordFunc, b influencer.Batch, err error, acc *store.RecordResult, bad *[]influencer.Failure) error {
	if !errors.Is(err, store.ErrInvalid) {
		return err
	}
	switch len(b.Samples) + len(b.Failures) {
	case 0:
		// Nothing left to isolate: the store refuses the batch itself, so
		// the message goes to the dead-letter topic whole.
		return fmt.Errorf("%w: store refused the batch as a whole: %w", messages.ErrMalformed, err)
	case 1:
		pk := rowPK(b)
		if bad == nil { // already counted as rejected
			r.logger.ErrorContext(ctx, "store rejected a missed entry; it cannot be recorded",
				"minute", b.Minute, "shard", b.Shard, "pk", pk, "err", err)
			return nil
		}
		*bad = append(*bad, influencer.Failure{PK: pk, Minute: b.Minute, Class: influencer.ClassInvalid, Reason: storeReason(err)})
		return nil
	}
	left, right := split(b)
	if err := r.bisect(ctx, rec, left, acc, bad); err != nil {
		return err
	}
	return r.bisect(ctx, rec, right, acc, bad)
}

// rowPK is the pk of a batch's only row.
func rowPK(b influencer.Batch) int64 {
	if len(b.Samples) == 1 {
		return b.Samples[0].PK
	}
	return b.Failures[0].PK
}

// split halves b's rows (samples, then failures).
func split(b influencer.Batch) (left, right influencer.Batch) {
	left = influencer.Batch{Minute: b.Minute, Shard: b.Shard}
	right = left
	half := (len(b.Samples) + len(b.Failures)) / 2
	if half <= len(b.Samples) {
		left.Samples, right.Samples, right.Failures = b.Samples[:half:half], b.Samples[half:], b.Failures
	} else {
		h := half - len(b.Samples)
		left.Samples, left.Failures, right.Failures = b.Samples, b.Failures[:h:h], b.Failures[h:]
	}
	return left, right
}

// storeReason is a store error as a missed entry's reason: valid UTF-8
// without NUL bytes (which a text column refuses), at most 500 bytes.
func storeReason(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	return truncate(s, 500)
}

// gate spaces out store attempts after a transient error, across all the
// messages the recorder handles concurrently. While the store is healthy it
// lets everything through. After a failure, the next attempt (the probe)
// waits a jittered backoff; the others wait for the probe's outcome and, if
// it failed, return its error without touching the store.
type gate struct {
	initial, max time.Duration

	mu      sync.Mutex
	failing bool
	backoff time.Duration
	next    time.Time     // earliest time of the next probe
	probe   chan struct{} // non-nil while a probe runs; closed when it ends
	lastErr error
}

// enter waits until the caller may attempt a write. It returns done, to be
// called with the attempt's error, or an error when the store is failing
// (the probe the caller waited for failed) or ctx ends.
func (g *gate) enter(ctx context.Context) (done func(context.Context, error), err error) {
	for {
		g.mu.Lock()
		switch {
		case !g.failing:
			g.mu.Unlock()
			return func(ctx context.Context, err error) { g.exit(ctx, err, false) }, nil
		case g.probe != nil:
			probe := g.probe
			g.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-probe:
			}
			g.mu.Lock()
			failing, lastErr := g.failing, g.lastErr
			g.mu.Unlock()
			if failing {
				return nil, fmt.Errorf("%w: %w", ErrStoreUnavailable, lastErr)
			}
		default:
			wait := time.Until(g.next)
			if wait <= 0 {
				g.probe = make(chan struct{})
				g.mu.Unlock()
				return func(ctx context.Context, err error) { g.exit(ctx, err, true) }, nil
			}
			g.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
	}
}

// exit records an attempt's outcome: success or a data error heal the gate,
// a transient error opens it (or doubles the backoff after a failed probe).
// An attempt cut short by its own context says nothing about the store.
func (g *gate) exit(ctx context.Context, err error, probe bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		close(g.probe)
		g.probe = nil
	}
	switch {
	case err != nil && ctx.Err() != nil:
	case err == nil || errors.Is(err, store.ErrInvalid) || errors.Is(err, messages.ErrMalformed):
		g.failing, g.backoff, g.lastErr = false, 0, nil
	default:
		switch {
		case !g.failing:
			g.backoff = g.initial
		case probe:
			g.backoff = min(2*g.backoff, g.max)
		}
		g.failing, g.lastErr = true, err
		// Jitter in [backoff/2, backoff] keeps recorders of several processes
		// from probing in step.
		g.next = time.Now().Add(g.backoff/2 + rand.N(g.backoff/2+1))
	}
}

// Clean prepares a batch for the store: each failure is normalised to the
// batch's minute (class and reason bounded), and influencer.CheckBatch
// splits the rows (a failure for a pk with a valid sample is dropped). Rejected samples become failures with class "invalid"
// and the reason (stored as missed); rows without a usable pk cannot be
// stored at all. rejected counts both, for the caller's metrics and log.
func Clean(b influencer.Batch) (_ influencer.Batch, rejected int) {
	in := influencer.Batch{Minute: b.Minute, Shard: b.Shard, Samples: b.Samples, Failures: make([]influencer.Failure, len(b.Failures))}
	for i, f := range b.Failures {
		f.Minute = b.Minute
		f.Reason = truncate(f.Reason, 500)
		f.Class = truncate(f.Class, 40)
		in.Failures[i] = f
	}
	valid, bad := influencer.CheckBatch(in, influencer.SameMinute)
	out := influencer.Batch{Minute: b.Minute, Shard: b.Shard, Samples: valid.Samples}
	if out.Samples == nil {
		out.Samples = []influencer.Sample{}
	}
	for _, f := range bad {
		if f.PK <= 0 {
			continue // no pk to record it against: only counted and logged
		}
		f.Reason = truncate(f.Reason, 300)
		out.Failures = append(out.Failures, f)
	}
	out.Failures = append(out.Failures, valid.Failures...)
	return out, len(bad)
}
