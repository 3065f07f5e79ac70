package handlers_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/mockstagramapi"
)

// fakeAPI answers the fetcher with answer(n), n counting calls from 1.
type fakeAPI struct {
	answer func(n int, pk int64) (influencer.Sample, error)

	mu        sync.Mutex
	calls     int
	deadlines []time.Time
}

var _ handlers.InfluencerAPI = (*fakeAPI)(nil)

func (a *fakeAPI) Influencer(_ context.Context, pk int64, deadline time.Time) (influencer.Sample, error) {
	a.mu.Lock()
	a.calls++
	n := a.calls
	a.deadlines = append(a.deadlines, deadline)
	a.mu.Unlock()
	return a.answer(n, pk)
}

func newFakeFetchEnv(t *testing.T, api handlers.InfluencerAPI) fetchEnv {
	t.Helper()
	clock := clockwork.NewFakeClockAt(fetchStart)
	dlq, m := &fakePublisher{}, newMetrics()
	f, err := handlers.NewFetcher(handlers.FetcherConfig{Concurrency: 1, RetryInitial: retryInitial, RetryMax: retryMax, DeadlineGrace: fetchGrace},
		api, dlq, clock, discardLogger(), m)
	require.NoError(t, err)
	t.Cleanup(f.Close)
	return fetchEnv{f: f, clock: clock, dlq: dlq, m: m}
}

var circuitOpen = &mockstagramapi.Error{Class: mockstagramapi.ClassCircuitOpen, Reason: "circuit breaker open: the API is failing", Retryable: true}

// Requests the breaker fails fast are retried with backoff inside the
// deadline, but they are no attempts (nothing was sent) and no retries.
func TestFetcherRetriesFastFailuresWithoutCountingThem(t *testing.T) {
	t.Parallel()
	t.Run("the breaker closes", func(t *testing.T) {
		t.Parallel()
		api := &fakeAPI{answer: func(n int, pk int64) (influencer.Sample, error) {
			if n <= 3 {
				return influencer.Sample{}, circuitOpen
			}
			return influencer.Sample{PK: pk, Username: "influencer-7", FollowerCount: 1200, FollowingCount: 300}, nil
		}}
		e := newFakeFetchEnv(t, api)

		got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(7))))

		require.Len(t, got.Samples, 1)
		assert.Equal(t, handSample(7, got.Samples[0].FetchedAt), got.Samples[0])
		assert.Empty(t, got.Failures)
		assert.Equal(t, 4, api.calls)
		assert.Equal(t, []time.Time{fetchDeadline, fetchDeadline, fetchDeadline, fetchDeadline}, api.deadlines, "the task's deadline")
		assert.Equal(t, 0.0, testutil.ToFloat64(e.m.FetchRetries))
	})
	t.Run("open until the deadline", func(t *testing.T) {
		t.Parallel()
		api := &fakeAPI{answer: func(int, int64) (influencer.Sample, error) { return influencer.Sample{}, circuitOpen }}
		e := newFakeFetchEnv(t, api)
		e.clock.Advance(fetchDeadline.Sub(fetchStart) - 20*time.Millisecond)

		got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(7))))

		want := influencer.Failure{PK: 7, Minute: minute0, Class: mockstagramapi.ClassCircuitOpen,
			Reason: "circuit breaker open: the API is failing; gave up at the minute's deadline", Attempts: 0}
		assert.Equal(t, []influencer.Failure{want}, got.Failures)
		assert.Greater(t, api.calls, 1, "retried with backoff")
		assert.Equal(t, 0.0, testutil.ToFloat64(e.m.FetchRetries))
		assert.Empty(t, deadLetters(t, e.dlq), "transient: recorded missed, not dead-lettered")
	})
}

// A pk whose rate-limit token would come too late is missed as expired,
// without a request, and not dead-lettered.
func TestFetcherRateLimitDeadlineIsMissed(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{answer: func(int, int64) (influencer.Sample, error) {
		return influencer.Sample{}, mockstagramapi.ErrRateLimitDeadline
	}}
	e := newFakeFetchEnv(t, api)

	got := e.handle(t, task(7))

	assert.Equal(t, []influencer.Failure{{PK: 7, Minute: minute0, Class: handlers.ClassExpired,
		Reason: "deadline passed while waiting for the rate limit"}}, got.Failures)
	assert.Equal(t, 1, api.calls)
	assert.Empty(t, e.dlq.published())
}

// An error the client did not classify is retried like a connection error.
func TestFetcherRetriesAnUnclassifiedError(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{answer: func(n int, pk int64) (influencer.Sample, error) {
		if n == 1 {
			return influencer.Sample{}, context.DeadlineExceeded
		}
		return influencer.Sample{PK: pk, Username: "influencer-7", FollowerCount: 1200, FollowingCount: 300}, nil
	}}
	e := newFakeFetchEnv(t, api)

	got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(7))))

	require.Len(t, got.Samples, 1)
	assert.Empty(t, got.Failures)
	assert.Equal(t, 2, api.calls)
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.FetchRetries))
}

// blockingAPI tells the request's Progress it queues for a slot (as the
// adaptive limit does), then blocks until ctx is done.
type blockingAPI struct{ arrived chan struct{} }

func (a blockingAPI) Influencer(ctx context.Context, _ int64, _ time.Time) (influencer.Sample, error) {
	mockstagramapi.Waiting(ctx)
	a.arrived <- struct{}{}
	<-ctx.Done()
	return influencer.Sample{}, fmt.Errorf("%w: %w", mockstagramapi.ErrRateLimitDeadline, ctx.Err())
}

// A pk still waiting for a slot of the adaptive limit at the deadline was
// never sent: it is expired work, not an API timeout.
func TestFetcherWaitingForASlotAtTheDeadlineIsExpired(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	api := blockingAPI{arrived: make(chan struct{}, 1)}
	e := newFakeFetchEnv(t, api)

	got := fetchPastTheDeadline(ctx, t, e, api.arrived)
	// Whichever sees the deadline first — the collect at the deadline or the
	// wait ending — the pk is expired, never sent.
	require.Len(t, got.Failures, 1)
	require.Empty(t, got.Samples)
	f := got.Failures[0]
	assert.Equal(t, handlers.ClassExpired, f.Class)
	assert.Equal(t, 0, f.Attempts)
	assert.Contains(t, []string{"deadline passed while waiting for a fetch slot", "deadline passed while waiting for the rate limit"}, f.Reason)
}
