package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/store"
)

// reconcileTests check Reconcile and UnreconciledMinutes: a minute nobody
// scheduled is recorded as missed, and the last complete minute never
// passes an incomplete one.
var reconcileTests = []contractTest{
	{"ReconcileNotScheduled", testReconcileNotScheduled},
	{"ReconcileConcurrentRecord", testReconcileConcurrentRecord},
}

func reconcile(t *testing.T, s store.Store, m int) int {
	t.Helper()
	n, err := s.Reconcile(context.Background(), minute(m), "no task was scheduled")
	require.NoError(t, err)
	return n
}

func unreconciled(t *testing.T, s store.Store, from, to int) []time.Time {
	t.Helper()
	ms, err := s.UnreconciledMinutes(context.Background(), minute(from), minute(to))
	require.NoError(t, err)
	require.NotNil(t, ms)
	return ms
}

func samples(m int, pks ...int64) []influencer.Sample {
	out := make([]influencer.Sample, len(pks))
	for i, pk := range pks {
		out[i] = sample(pk, m, 100*pk, 10)
	}
	return out
}

// accounted asserts that every pk of pks has exactly one of a sample and a
// miss in minute m (stored + missed = tracked), and that missed of them
// are missed.
func accounted(t *testing.T, s store.Store, m int, pks []int64, missed int64, msg string) {
	t.Helper()
	var stored int64
	for _, pk := range pks {
		tl, err := s.Timeline(context.Background(), pk, minute(m), minute(m+1), 10)
		require.NoError(t, err)
		stored += int64(len(tl))
	}
	got := missedPerMinute(t, s, m+1)[m]
	assert.Equal(t, missed, got, "%s: missed in minute %d", msg, m)
	assert.Equal(t, int64(len(pks)), stored+got, "%s: stored + missed in minute %d", msg, m)
}

func testReconcileNotScheduled(t *testing.T, s store.Store) {
	ctx := context.Background()
	pks := []int64{1, 2, 3, 4, 5, 6}
	track(t, s, pks...)
	timeout := influencer.Failure{PK: 3, Minute: minute(1), Class: "timeout", Reason: "deadline"}

	// Minute 0 complete; minute 1 only half scheduled (2 stored, 1 failed,
	// 3 never fetched: the scheduler was killed); minute 2 complete.
	record(t, s, batch(0, samples(0, pks...)...))
	record(t, s, influencer.Batch{Minute: minute(1), Shard: 1, Samples: samples(1, 1, 2), Failures: []influencer.Failure{timeout}})
	record(t, s, batch(2, samples(2, pks...)...))
	now := minute(2).Add(59 * time.Second)
	st := stats(t, s, now)
	assert.Equal(t, minute(0), st.LastCompleteMinute, "the last complete minute stops before the incomplete minute 1")
	assert.EqualValues(t, 1, st.MissedLastHour)

	assert.Equal(t, []time.Time{minute(0), minute(1), minute(2)}, unreconciled(t, s, 0, 3))
	assert.Equal(t, []time.Time{minute(1)}, unreconciled(t, s, 1, 2), "[from, to)")

	// Reconciling minute 1 misses exactly the three pks nobody fetched.
	assert.Equal(t, 3, reconcile(t, s, 1))
	accounted(t, s, 1, pks, 4, "after reconcile")
	st = stats(t, s, now)
	assert.Equal(t, minute(2), st.LastCompleteMinute, "minute 1 is accounted for")
	assert.EqualValues(t, 4, st.MissedLastHour)
	assert.Equal(t, []time.Time{minute(0), minute(2)}, unreconciled(t, s, 0, 3))

	// Idempotent; a complete minute only gets its mark.
	assert.Zero(t, reconcile(t, s, 1))
	assert.Zero(t, reconcile(t, s, 0))
	assert.Zero(t, reconcile(t, s, 2))
	assert.Equal(t, []time.Time{}, unreconciled(t, s, 0, 3))
	accounted(t, s, 0, pks, 0, "complete minute 0")
	accounted(t, s, 1, pks, 4, "reconciled twice")

	// A late result changes a not-scheduled miss into a sample, a late
	// failure changes nothing.
	late := record(t, s, influencer.Batch{Minute: minute(1), Shard: 2, Samples: samples(1, 4),
		Failures: []influencer.Failure{{PK: 5, Minute: minute(1), Class: "timeout", Reason: "late"}}})
	assert.Equal(t, store.RecordResult{Inserted: 1}, late)
	accounted(t, s, 1, pks, 3, "after a late result")
	assert.Equal(t, minute(2), stats(t, s, now).LastCompleteMinute)

	// A minute nobody scheduled at all (no data) is a gap too, and an
	// untracked pk is not missed.
	untrack(t, s, 6)
	record(t, s, batch(4, samples(4, 1, 2, 3, 4, 5)...))
	later := minute(4).Add(59 * time.Second)
	assert.Equal(t, minute(2), stats(t, s, later).LastCompleteMinute, "minute 3 has no data")
	assert.Equal(t, []time.Time{minute(3), minute(4)}, unreconciled(t, s, 0, 5))
	assert.Equal(t, 5, reconcile(t, s, 3))
	accounted(t, s, 3, pks[:5], 5, "minute 3 reconciled")
	assert.Equal(t, minute(4), stats(t, s, later).LastCompleteMinute)

	_, err := s.Reconcile(ctx, minute(1).Add(time.Second), "x")
	assert.True(t, errors.Is(err, store.ErrInvalid), "unaligned minute: %v", err)
}

// testReconcileConcurrentRecord reconciles a minute while late results of
// it are recorded: every pk ends with exactly one sample or miss.
func testReconcileConcurrentRecord(t *testing.T, s store.Store) {
	const n = 400
	pks := make([]int64, n)
	for i := range pks {
		pks[i] = int64(i + 1)
	}
	track(t, s, pks...)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i += 20 {
		wg.Add(1)
		go func(part []int64) {
			defer wg.Done()
			_, err := s.Record(context.Background(), influencer.Batch{Minute: minute(0), Shard: i, Samples: samples(0, part...)})
			errs <- err
		}(pks[i : i+10]) // half of each group of 20 arrives late; the other half never does
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Reconcile(context.Background(), minute(0), "no task was scheduled")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	accounted(t, s, 0, pks, n/2, "reconciled while recording")
	assert.Equal(t, minute(0), stats(t, s, minute(0).Add(59*time.Second)).LastCompleteMinute)
}
