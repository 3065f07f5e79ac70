package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/store"
)

// pickyStore is an idempotent fake store that refuses, as a whole, every
// batch containing a sample of a poisoned pk or a failure whose reason has a
// NUL byte (as Postgres refuses such text), the way one bad row fails a
// Postgres statement. transientAt makes the n-th Record call (1-based) fail
// with a transient error instead.
type pickyStore struct {
	poisoned    map[int64]bool
	transientAt int

	mu     sync.Mutex
	calls  int
	stored map[int64]influencer.Sample
	missed map[int64]influencer.Failure
}

// Ping answers: the store is up (its transient errors are the batch's).
func (s *pickyStore) Ping(context.Context) error { return nil }

var errConnRefused = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

func newPickyStore(poisoned ...int64) *pickyStore {
	s := &pickyStore{poisoned: map[int64]bool{}, stored: map[int64]influencer.Sample{}, missed: map[int64]influencer.Failure{}}
	for _, pk := range poisoned {
		s.poisoned[pk] = true
	}
	return s
}

// reason is what the store says about a batch holding poisoned pk alone.
func poisonReason(pk int64) string {
	return fmt.Sprintf("%s: SQLSTATE 23514: pk %d violates a check constraint", store.ErrInvalid, pk)
}

func (s *pickyStore) Record(_ context.Context, b influencer.Batch) (store.RecordResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == s.transientAt {
		return store.RecordResult{}, errConnRefused
	}
	for _, smp := range b.Samples {
		if s.poisoned[smp.PK] {
			return store.RecordResult{}, fmt.Errorf("%w: SQLSTATE 23514: pk %d violates a check constraint", store.ErrInvalid, smp.PK)
		}
	}
	for _, f := range b.Failures {
		if strings.ContainsRune(f.Reason, 0) {
			return store.RecordResult{}, fmt.Errorf("%w: SQLSTATE 22021: invalid byte sequence for encoding \"UTF8\": 0x00", store.ErrInvalid)
		}
	}
	var res store.RecordResult
	for _, smp := range b.Samples {
		if _, dup := s.stored[smp.PK]; dup {
			res.Duplicates++
			continue
		}
		s.stored[smp.PK] = smp
		delete(s.missed, smp.PK)
		res.Inserted++
	}
	for _, f := range b.Failures {
		_, have := s.stored[f.PK]
		_, was := s.missed[f.PK]
		if !have && !was {
			s.missed[f.PK] = f
			res.Missed++
		}
	}
	return res, nil
}

func (s *pickyStore) snapshot() (calls int, stored []int64, missed map[int64]influencer.Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, slices.Sorted(maps.Keys(s.stored)), maps.Clone(s.missed)
}

func pkRange(from, n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = from + int64(i)
	}
	return out
}

func TestRecorderBisectsAPoisonedBatch(t *testing.T) {
	t.Parallel()
	const n = 64
	pks := pkRange(1, n)
	tests := []struct {
		name     string
		poisoned []int64
	}{
		{"clean batch", nil},
		{"one bad row", []int64{17}},
		{"first and last", []int64{1, 64}},
		{"scattered", []int64{3, 30, 31, 50}},
		{"a run", []int64{40, 41, 42, 43, 44, 45, 46, 47}},
		{"all bad", pks},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := newPickyStore(tt.poisoned...)
			m := newMetrics()
			r := handlers.NewRecorder(st, discardLogger(), m)
			b := influencer.Batch{Minute: minute0, Shard: 5}
			for _, pk := range pks {
				b.Samples = append(b.Samples, sample(pk))
			}

			require.NoError(t, r.Handle(resultMessage(t, b)))

			calls, stored, missed := st.snapshot()
			var wantStored []int64
			wantMissed := map[int64]influencer.Failure{}
			for _, pk := range pks {
				if slices.Contains(tt.poisoned, pk) {
					wantMissed[pk] = influencer.Failure{PK: pk, Minute: minute0, Class: influencer.ClassInvalid, Reason: poisonReason(pk)}
				} else {
					wantStored = append(wantStored, pk)
				}
			}
			assert.Equal(t, wantStored, stored)
			assert.Equal(t, wantMissed, missed)
			k := len(tt.poisoned)
			// One call for the whole batch, at most two per level of the
			// bisection for each bad row, one for the missed entries.
			bound := 1
			if k > 0 {
				bound = 2 + 2*k*bits.Len(uint(n-1))
			}
			assert.LessOrEqual(t, calls, bound, "Record calls for %d bad rows in %d", k, n)
			assert.Equal(t, float64(n-k), testutil.ToFloat64(m.SamplesStored))
			assert.Equal(t, float64(k), testutil.ToFloat64(m.SamplesMissed))
			assert.Equal(t, float64(k), testutil.ToFloat64(m.SamplesRejected))
			t.Logf("%d bad rows in %d: %d Record calls (bound %d)", k, n, calls, bound)
		})
	}
}

func TestRecorderBisectRecordsABadFailureAsMissed(t *testing.T) {
	t.Parallel()
	st := newPickyStore(4)
	m := newMetrics()
	r := handlers.NewRecorder(st, discardLogger(), m)
	b := influencer.Batch{Minute: minute0, Shard: 2,
		Samples: []influencer.Sample{sample(1), sample(2), sample(3), sample(4)},
		Failures: []influencer.Failure{
			{PK: 9, Minute: minute0, Class: mockstagramapi.ClassServer, Reason: "HTTP 500: \x00evil", Attempts: 3},
			{PK: 10, Minute: minute0, Class: mockstagramapi.ClassTimeout, Reason: "timeout", Attempts: 5},
		}}

	require.NoError(t, r.Handle(resultMessage(t, b)))

	_, stored, missed := st.snapshot()
	assert.Equal(t, []int64{1, 2, 3}, stored)
	assert.Equal(t, map[int64]influencer.Failure{
		4:  {PK: 4, Minute: minute0, Class: influencer.ClassInvalid, Reason: poisonReason(4)},
		9:  {PK: 9, Minute: minute0, Class: influencer.ClassInvalid, Reason: `invalid store input: SQLSTATE 22021: invalid byte sequence for encoding "UTF8": 0x00`},
		10: {PK: 10, Minute: minute0, Class: mockstagramapi.ClassTimeout, Reason: "timeout", Attempts: 5},
	}, missed)
	assert.Equal(t, 2.0, testutil.ToFloat64(m.SamplesRejected))
}

// A transient error in the middle of a bisection fails the message (it is
// retried, then nacked); the redelivery stores each row exactly once.
func TestRecorderBisectTransientErrorNacks(t *testing.T) {
	t.Parallel()
	st := newPickyStore(6)
	st.transientAt = 3
	m := newMetrics()
	r := handlers.NewRecorder(st, discardLogger(), m)
	b := influencer.Batch{Minute: minute0, Shard: 1}
	for _, pk := range pkRange(1, 8) {
		b.Samples = append(b.Samples, sample(pk))
	}

	err := r.Handle(resultMessage(t, b))
	require.ErrorIs(t, err, errConnRefused)
	assert.NotErrorIs(t, err, messages.ErrMalformed)
	assert.NotErrorIs(t, err, store.ErrInvalid)
	_, stored, missed := st.snapshot()
	assert.Equal(t, []int64{1, 2, 3, 4}, stored, "the left half was stored before the error")
	assert.Empty(t, missed)

	// The redelivery (after the store gate's short backoff).
	require.Eventually(t, func() bool { return r.Handle(resultMessage(t, b)) == nil }, 5*time.Second, 10*time.Millisecond)
	_, stored, missed = st.snapshot()
	assert.Equal(t, []int64{1, 2, 3, 4, 5, 7, 8}, stored)
	assert.Equal(t, map[int64]influencer.Failure{6: {PK: 6, Minute: minute0, Class: influencer.ClassInvalid, Reason: poisonReason(6)}}, missed)
	assert.Equal(t, 7.0, testutil.ToFloat64(m.SamplesStored))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.SamplesMissed))
}

// downStore fails every Record with a transient error until up is set.
type downStore struct {
	up    atomic.Bool
	calls atomic.Int64
	inner *pickyStore
}

// Ping fails while the store is down.
func (s *downStore) Ping(context.Context) error {
	if !s.up.Load() {
		return errConnRefused
	}
	return nil
}

func (s *downStore) Record(ctx context.Context, b influencer.Batch) (store.RecordResult, error) {
	s.calls.Add(1)
	if !s.up.Load() {
		return store.RecordResult{}, errConnRefused
	}
	return s.inner.Record(ctx, b)
}

// While the store is down, concurrent messages do not each hammer it: one
// probe at a time, at growing intervals. When it is back, all get stored.
func TestRecorderBacksOffWhileStoreIsDown(t *testing.T) {
	t.Parallel()
	const (
		msgs = 16
		down = 1500 * time.Millisecond
	)
	st := &downStore{inner: newPickyStore()}
	r := handlers.NewRecorder(st, discardLogger(), newMetrics())
	var wg sync.WaitGroup
	errs := make(chan error, msgs)
	for i := range msgs {
		wg.Go(func() {
			b := influencer.Batch{Minute: minute0, Shard: i, Samples: []influencer.Sample{sample(int64(100 + i))}}
			deadline := time.Now().Add(10 * time.Second)
			// Like the Retry middleware: retry quickly, forever.
			for {
				err := r.Handle(resultMessage(t, b))
				if err == nil {
					return
				}
				if !errors.Is(err, errConnRefused) || time.Now().After(deadline) {
					errs <- err
					return
				}
				<-time.After(10 * time.Millisecond) // retry interval, as the middleware would
			}
		})
	}
	<-time.After(down) // the length of the outage (a fault held, not a wait for a result)
	duringOutage := st.calls.Load()
	st.up.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("message not stored: %v", err)
	}
	// msgs first attempts at most, then about log2(down/100ms) probes.
	assert.LessOrEqual(t, duringOutage, int64(msgs+8), "Record attempts during a %s outage", down)
	_, stored, _ := st.inner.snapshot()
	assert.Equal(t, pkRange(100, msgs), stored)
	t.Logf("%d Record attempts during a %s outage of %d messages", duringOutage, down, msgs)
}
