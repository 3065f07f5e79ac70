package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/store"
)

// txStore is pickyStore with transactions: RecordInTx writes into the
// given fakeTx, visible to it (and its savepoints) only, committed to the
// store with the outermost transaction. refuseAll refuses every batch, the
// empty one included.
type txStore struct {
	*pickyStore
	refuseAll bool
	txCalls   int
}

var _ handlers.TxBatchStore = (*txStore)(nil)

// fakeTx is a transaction (parent nil) or a savepoint of one. Methods the
// recorder must not use are left to the nil pgx.Tx (they panic).
type fakeTx struct {
	pgx.Tx
	parent *fakeTx
	log    *[]string
	stored map[int64]influencer.Sample
	missed map[int64]influencer.Failure
	closed bool
}

func newFakeTx() *fakeTx {
	return &fakeTx{log: &[]string{}, stored: map[int64]influencer.Sample{}, missed: map[int64]influencer.Failure{}}
}

func (t *fakeTx) Begin(context.Context) (pgx.Tx, error) {
	*t.log = append(*t.log, "savepoint")
	return &fakeTx{parent: t, log: t.log, stored: map[int64]influencer.Sample{}, missed: map[int64]influencer.Failure{}}, nil
}

func (t *fakeTx) Commit(context.Context) error {
	t.closed = true
	if t.parent == nil {
		*t.log = append(*t.log, "commit")
		return nil
	}
	*t.log = append(*t.log, "release")
	maps.Copy(t.parent.stored, t.stored)
	maps.Copy(t.parent.missed, t.missed)
	return nil
}

func (t *fakeTx) Rollback(context.Context) error {
	t.closed = true
	*t.log = append(*t.log, "rollback")
	return nil
}

// has reports whether pk has a sample in t or its parents.
func (t *fakeTx) has(pk int64) bool {
	for ; t != nil; t = t.parent {
		if _, ok := t.stored[pk]; ok {
			return true
		}
	}
	return false
}

func (s *txStore) RecordInTx(_ context.Context, tx pgx.Tx, b influencer.Batch) (store.RecordResult, error) {
	t := tx.(*fakeTx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.txCalls++
	if t.closed {
		return store.RecordResult{}, errors.New("tx is closed")
	}
	if s.calls == s.transientAt {
		return store.RecordResult{}, errConnRefused
	}
	if s.refuseAll {
		return store.RecordResult{}, fmt.Errorf("%w: SQLSTATE 23514: refused", store.ErrInvalid)
	}
	for _, smp := range b.Samples {
		if s.poisoned[smp.PK] {
			return store.RecordResult{}, fmt.Errorf("%w: SQLSTATE 23514: pk %d violates a check constraint", store.ErrInvalid, smp.PK)
		}
	}
	for _, f := range b.Failures {
		if strings.ContainsRune(f.Reason, 0) {
			return store.RecordResult{}, fmt.Errorf("%w: SQLSTATE 22021: invalid byte sequence", store.ErrInvalid)
		}
	}
	var res store.RecordResult
	for _, smp := range b.Samples {
		if _, dup := s.stored[smp.PK]; dup || t.has(smp.PK) {
			res.Duplicates++
			continue
		}
		t.stored[smp.PK] = smp
		res.Inserted++
	}
	for _, f := range b.Failures {
		t.missed[f.PK] = f
		res.Missed++
	}
	return res, nil
}

// commitTx applies a committed transaction's rows to the store (what the
// broker's commit after the ack, or after a nack, does).
func (s *txStore) commitTx(t *fakeTx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.Copy(s.stored, t.stored)
	maps.Copy(s.missed, t.missed)
}

// In the broker's transaction the recorder writes through RecordInTx only;
// a bisection runs in a savepoint that an error rolls back whole. After an
// error nothing of the batch is left in the transaction, so the nack (which
// commits it with the delayed redelivery) stores nothing, and nothing is
// counted as stored; after success the rows are there once the broker
// commits, counted once.
func TestRecorderInTheBrokersTransaction(t *testing.T) {
	t.Parallel()
	const n = 32
	tests := []struct {
		name        string
		noTx        bool // the message carries no transaction
		notTxStore  bool // the store cannot write in one
		poisoned    []int64
		transientAt int
		refuseAll   bool
		empty       bool

		wantErr     error // nil: success; errConnRefused: transient
		wantLog     []string
		wantStored  int // samples in the store after the broker's commit
		wantMissed  []int64
		wantTxCalls int
	}{
		{name: "clean batch", wantLog: []string{"commit"}, wantStored: n, wantTxCalls: 1},
		{name: "poisoned row: bisection in a savepoint", poisoned: []int64{17},
			wantLog: []string{"savepoint", "release", "commit"}, wantStored: n - 1, wantMissed: []int64{17}, wantTxCalls: 1 + 2*5 + 1},
		{name: "transient error first", transientAt: 1, wantErr: errConnRefused,
			wantLog: []string{"commit"}, wantTxCalls: 1},
		{name: "transient error during the bisection", poisoned: []int64{17}, transientAt: 4, wantErr: errConnRefused,
			wantLog: []string{"savepoint", "rollback", "commit"}, wantTxCalls: 4},
		{name: "refused whole: dead letter", refuseAll: true, empty: true, wantErr: messages.ErrMalformed,
			wantLog: []string{"savepoint", "rollback", "commit"}, wantTxCalls: 1},
		{name: "no transaction in the message", noTx: true, wantLog: []string{"commit"}, wantStored: n},
		{name: "store without transactions", notTxStore: true, wantLog: []string{"commit"}, wantStored: n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &txStore{pickyStore: newPickyStore(tt.poisoned...), refuseAll: tt.refuseAll}
			st.transientAt = tt.transientAt
			m := newMetrics()
			var bs handlers.BatchStore = st
			if tt.notTxStore {
				bs = st.pickyStore
			}
			r := handlers.NewRecorder(bs, discardLogger(), m)
			tx := newFakeTx()
			handlers.SetRecorderTx(r, func(context.Context) (pgx.Tx, bool) { return tx, !tt.noTx })
			hooks := &commitHooks{}
			handlers.SetRecorderAfterCommit(r, hooks.of)
			b := influencer.Batch{Minute: minute0, Shard: 5}
			if !tt.empty {
				for _, pk := range pkRange(1, n) {
					b.Samples = append(b.Samples, sample(pk))
				}
			}

			err := r.Handle(resultMessage(t, b))
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			_, storedBefore, _ := st.snapshot()
			if !tt.noTx && !tt.notTxStore {
				assert.Empty(t, storedBefore, "stored before the broker's commit")
			}
			if !tt.noTx && !tt.notTxStore {
				assert.Zero(t, testutil.ToFloat64(m.SamplesStored), "counted before the broker's commit")
			}
			// The broker commits after the ack, and after a nack too.
			require.NoError(t, tx.Commit(context.Background()))
			st.commitTx(tx)
			hooks.commit()

			_, stored, missed := st.snapshot()
			assert.Len(t, stored, tt.wantStored)
			assert.Equal(t, tt.wantMissed, slices.Sorted(maps.Keys(missed)))
			assert.Equal(t, tt.wantLog, *tx.log)
			assert.Equal(t, tt.wantTxCalls, st.txCalls)
			assert.Equal(t, float64(tt.wantStored), testutil.ToFloat64(m.SamplesStored))
			assert.Zero(t, testutil.ToFloat64(m.SamplesDuplicate))
		})
	}
}

// commitHooks stands for the broker's commit hooks (broker.CommitHookTx):
// the functions the recorder defers run at commit, a rollback drops them.
type commitHooks struct{ fns []func() }

func (h *commitHooks) of(context.Context) func(func()) {
	return func(fn func()) { h.fns = append(h.fns, fn) }
}

func (h *commitHooks) commit() {
	for _, fn := range h.fns {
		fn()
	}
	h.fns = nil
}

func (h *commitHooks) rollback() { h.fns = nil }

// A redelivery after a rolled-back transaction (a crash before the
// broker's commit) stores and counts the batch once.
func TestRecorderTransactionRolledBackThenRedelivered(t *testing.T) {
	t.Parallel()
	st := &txStore{pickyStore: newPickyStore()}
	m := newMetrics()
	r := handlers.NewRecorder(st, discardLogger(), m)
	b := influencer.Batch{Minute: minute0, Shard: 5, Samples: []influencer.Sample{sample(1), sample(2), sample(3)}}

	first, firstHooks := newFakeTx(), &commitHooks{}
	handlers.SetRecorderTx(r, func(context.Context) (pgx.Tx, bool) { return first, true })
	handlers.SetRecorderAfterCommit(r, firstHooks.of)
	require.NoError(t, r.Handle(resultMessage(t, b)))
	require.NoError(t, first.Rollback(context.Background())) // the process dies before the commit
	firstHooks.rollback()

	second, secondHooks := newFakeTx(), &commitHooks{}
	handlers.SetRecorderTx(r, func(context.Context) (pgx.Tx, bool) { return second, true })
	handlers.SetRecorderAfterCommit(r, secondHooks.of)
	require.NoError(t, r.Handle(resultMessage(t, b)))
	require.NoError(t, second.Commit(context.Background()))
	st.commitTx(second)
	secondHooks.commit()

	_, stored, _ := st.snapshot()
	assert.Equal(t, []int64{1, 2, 3}, stored)
	assert.Equal(t, float64(3), testutil.ToFloat64(m.SamplesStored), "counted once, at the commit that stored them")
	assert.Zero(t, testutil.ToFloat64(m.SamplesDuplicate), "the rolled-back write left nothing to find")
}
