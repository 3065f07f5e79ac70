package handlers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
)

// fakeMoversStore sends every RecomputeMovers call's now on calls; the
// first one fails.
type fakeMoversStore struct {
	calls chan time.Time
	n     int // calls so far (the job's goroutine only)
}

func (s *fakeMoversStore) RecomputeMovers(_ context.Context, now time.Time, window time.Duration) error {
	if window != 24*time.Hour {
		return errors.New("wrong window")
	}
	s.n++
	s.calls <- now
	if s.n == 1 {
		return errors.New("database down")
	}
	return nil
}

func TestMoversJobRunsAtOnceThenHourly(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(minute0)
	s := &fakeMoversStore{calls: make(chan time.Time, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- handlers.MoversJob{Store: s, Clock: clock, Window: 24 * time.Hour, Logger: discardLogger()}.Run(ctx)
	}()
	assert.Equal(t, minute0, <-s.calls, "at once, even before the first hour")
	for i := 1; i <= 2; i++ {
		// A failed pass does not stop the job: the next hour runs again.
		require.NoError(t, clock.BlockUntilContext(ctx, 1))
		clock.Advance(time.Hour)
		assert.Equal(t, minute0.Add(time.Duration(i)*time.Hour), <-s.calls)
	}
	cancel()
	require.NoError(t, <-done)
}
