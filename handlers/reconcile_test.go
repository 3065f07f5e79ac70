package handlers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
)

// fakeReconcileStore answers UnreconciledMinutes with minutes (those in the
// asked range) and Reconcile with missed[minute].
type fakeReconcileStore struct {
	minutes    []time.Time
	missed     map[time.Time]int
	failAt     time.Time
	from, to   time.Time
	reconciled []time.Time
	reasons    []string
}

func (s *fakeReconcileStore) UnreconciledMinutes(_ context.Context, from, to time.Time) ([]time.Time, error) {
	s.from, s.to = from, to
	out := []time.Time{}
	for _, m := range s.minutes {
		if !m.Before(from) && m.Before(to) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (s *fakeReconcileStore) Reconcile(_ context.Context, minute time.Time, reason string) (int, error) {
	if minute.Equal(s.failAt) {
		return 0, errors.New("database down")
	}
	s.reconciled = append(s.reconciled, minute)
	s.reasons = append(s.reasons, reason)
	return s.missed[minute], nil
}

func TestReconcilerOnce(t *testing.T) {
	t.Parallel()
	m := func(i int) time.Time { return minute0.Add(time.Duration(i) * time.Minute) }
	for _, tc := range []struct {
		name       string
		now        time.Time
		grace      time.Duration
		failAt     time.Time
		wantTo     time.Time
		reconciled []time.Time
		missed     int
		wantErr    bool
	}{
		// Minute M is due at M + 1m + grace + settle (30 s).
		{name: "the minute just ended is not due", now: m(3).Add(29 * time.Second), wantTo: m(2),
			reconciled: []time.Time{m(0), m(1)}, missed: 3},
		{name: "due exactly at deadline plus settle", now: m(3).Add(30 * time.Second), wantTo: m(3),
			reconciled: []time.Time{m(0), m(1), m(2)}, missed: 3 + 5},
		{name: "grace delays it", now: m(3).Add(30 * time.Second), grace: 5 * time.Second, wantTo: m(2),
			reconciled: []time.Time{m(0), m(1)}, missed: 3},
		{name: "a failure stops the pass", now: m(4), failAt: m(1), wantTo: m(3),
			reconciled: []time.Time{m(0)}, missed: 0, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &fakeReconcileStore{minutes: []time.Time{m(0), m(1), m(2), m(3)},
				missed: map[time.Time]int{m(1): 3, m(2): 5}, failAt: tc.failAt}
			met := newMetrics()
			r := handlers.NewReconciler(s, clockwork.NewFakeClockAt(tc.now), handlers.ReconcilerConfig{
				Lookback: time.Hour, DeadlineGrace: tc.grace, Settle: 30 * time.Second,
			}, discardLogger(), met)
			n, err := r.Once(context.Background())
			if tc.wantErr {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tc.missed, n)
			assert.Equal(t, tc.now.Add(-time.Hour), s.from)
			assert.Equal(t, tc.wantTo, s.to)
			assert.Equal(t, tc.reconciled, s.reconciled)
			for _, r := range s.reasons {
				assert.Equal(t, handlers.ReasonNotScheduled, r)
			}
			assert.Equal(t, float64(tc.missed), testutil.ToFloat64(met.MissedNotScheduled))
			assert.Equal(t, float64(tc.missed), testutil.ToFloat64(met.SamplesMissed))
		})
	}
}
