package handlers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/mockstagramapi/apitest"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store/memory"
)

// newRealClockFetchEnv is a fetcher on the real clock.
func newRealClockFetchEnv(t *testing.T, baseURL string, mod func(*fetchSetup)) fetchEnv {
	t.Helper()
	return newFetchEnvAt(t, baseURL, clockwork.NewRealClock(), mod)
}

func transitions(m *metrics.Pipeline, from, to string) float64 {
	return testutil.ToFloat64(m.BreakerTransitions.WithLabelValues(from, to))
}

// TestFetcherBreakerOpensAndResumes: with the threshold at 3 and the API
// down, the server sees 3 requests, then the open breaker fails the shard's
// requests fast (the shard waits inside its deadline); once the API is back
// and the cooldown has passed, a probe closes the breaker, requests resume
// and every sample is stored. The breaker runs on real time (gobreaker has
// no clock), so this test uses the real clock with short intervals; its
// counts do not depend on timing (a probe that came before the API was back
// re-opens the breaker and is counted as such).
func TestFetcherBreakerOpensAndResumes(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	var (
		down         atomic.Bool
		downRequests atomic.Int64
	)
	down.Store(true)
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
		if down.Load() {
			downRequests.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	clock := clockwork.NewRealClock()
	e := newRealClockFetchEnv(t, srv.URL, func(c *fetchSetup) {
		c.fetcher = handlers.FetcherConfig{
			Concurrency:   1, // one request at a time: exactly 3 reach the API before the breaker opens
			RetryInitial:  time.Millisecond,
			RetryMax:      5 * time.Millisecond,
			DeadlineGrace: 30 * time.Second,
		}
		c.api.BreakerFailures, c.api.BreakerCooldown = 3, 300*time.Millisecond
	})
	now := clock.Now()
	tk := messages.Task{Minute: now.Truncate(time.Minute), Shard: fetchShard, Deadline: now.Add(30 * time.Second), PKs: []int64{1, 2, 3, 4}}

	done := make(chan handled, 1)
	handle := e.handleFunc(t, tk)
	go func() { done <- handle() }()

	// The API comes back as soon as the breaker is open.
	for testutil.ToFloat64(e.m.BreakerState) != 2 {
		select {
		case <-ctx.Done():
			t.Fatal("the breaker did not open")
		case <-time.After(time.Millisecond):
		}
	}
	down.Store(false)

	var h handled
	select {
	case h = <-done:
	case <-ctx.Done():
		t.Fatal("the fetch did not finish")
	}
	got := result(t, h)

	reopened := transitions(e.m, "half-open", "open")
	assert.Equal(t, 3+int64(reopened), downRequests.Load(), "3 requests open the breaker; only probes follow")
	assert.Equal(t, 3+int64(reopened)+4, srv.Requests.Load())
	assert.Empty(t, got.Failures)
	require.Len(t, got.Samples, 4)
	assert.Empty(t, e.dlq.published())
	assert.Equal(t, 1.0, transitions(e.m, "closed", "open"))
	assert.Equal(t, 1+reopened, transitions(e.m, "open", "half-open"))
	assert.Equal(t, 1.0, transitions(e.m, "half-open", "closed"))
	assert.Equal(t, 0.0, testutil.ToFloat64(e.m.BreakerState), "closed again")
	assert.Greater(t, testutil.ToFloat64(e.m.BreakerRejected), 0.0, "the shard's requests failed fast meanwhile")
	assert.Equal(t, 3+reopened, testutil.ToFloat64(e.m.FetchRetries), "fast failures are no retries")

	// The samples are stored.
	s := memory.New(clock)
	out := h.out[0]
	require.NoError(t, handlers.NewRecorder(s, discardLogger(), newMetrics()).Handle(out))
	for _, pk := range tk.PKs {
		sum, err := s.Summary(context.Background(), pk)
		require.NoError(t, err)
		assert.Equal(t, int64(1), sum.Samples)
		assert.True(t, tk.Minute.Equal(sum.LastMinute), "last minute %s", sum.LastMinute)
	}
}

// TestFetcherBreakerCountsOnlyAPIFailures: connection errors and 5xx open
// the breaker; not-found, 429 and bad bodies (the API answers) do not, nor
// do timeouts (they may be our own overload). The cooldown is long: an opened breaker stays open until the
// deadline, and the pks fail with class circuit_open.
func TestFetcherBreakerCountsOnlyAPIFailures(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // connection refused

	faulty := func(fault func(w http.ResponseWriter, r *http.Request), faults int64) func(t *testing.T) (string, func() int64) {
		return func(t *testing.T) (string, func() int64) {
			srv := apitest.New(t, func(w http.ResponseWriter, r *http.Request, pk, n int64) {
				if faults < 0 || n <= faults {
					fault(w, r)
					return
				}
				_, _ = w.Write([]byte(sampleJSON(pk)))
			})
			return srv.URL, srv.Requests.Load
		}
	}
	status := func(code int, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}
	}
	// One pk retried (one goroutine, which drive steps without races up to
	// its own give-up check), or five pks answered once each.
	one, five := []int64{7}, []int64{1, 2, 3, 4, 5}
	tests := []struct {
		name     string
		server   func(t *testing.T) (string, func() int64)
		pks      []int64
		opens    bool
		requests int64  // -1: not countable
		class    string // of every pk's failure; "" = all fetched
	}{
		{"5xx opens", faulty(status(503, "busy"), -1), one, true, 3, mockstagramapi.ClassCircuitOpen},
		{"timeouts do not", faulty(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, -1), one, false, -1, mockstagramapi.ClassTimeout},
		{"connection errors open", func(*testing.T) (string, func() int64) { return closedURL, nil }, one, true, -1, mockstagramapi.ClassCircuitOpen},
		{"not found does not", faulty(status(500, simulator.NotFoundBody), -1), five, false, 5, mockstagramapi.ClassNotFound},
		{"429 does not", faulty(status(429, ""), 6), five, false, 6 + 5, ""},
		{"malformed does not", faulty(status(200, "<html>"), -1), five, false, 5, mockstagramapi.ClassMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, requests := tt.server(t)
			e := newFetchEnv(t, url, func(c *fetchSetup) {
				c.fetcher.Concurrency = 1
				c.api.Timeout = 50 * time.Millisecond
				c.api.BreakerFailures = 3
				c.api.BreakerCooldown = time.Hour
			})
			e.clock.Advance(fetchDeadline.Sub(fetchStart) - 200*time.Millisecond) // 200 ms left

			got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(tt.pks...))))

			var sent int
			for _, fl := range got.Failures {
				assert.Equal(t, tt.class, fl.Class, "pk %d: %s", fl.PK, fl.Reason)
				sent += fl.Attempts
			}
			if tt.class == "" {
				assert.Empty(t, got.Failures)
				assert.Len(t, got.Samples, len(tt.pks))
			} else {
				assert.Len(t, got.Failures, len(tt.pks))
			}
			if tt.opens {
				assert.Equal(t, 1.0, transitions(e.m, "closed", "open"))
				assert.Equal(t, 2.0, testutil.ToFloat64(e.m.BreakerState))
				assert.Equal(t, 3, sent, "requests sent before the breaker opened")
				assert.Greater(t, testutil.ToFloat64(e.m.BreakerRejected), 0.0)
				assert.Equal(t, 3.0, testutil.ToFloat64(e.m.FetchRetries), "a backoff after each failed request; fast failures are no retries")
				for _, fl := range got.Failures {
					assert.Equal(t, "circuit breaker open: the API is failing; gave up at the minute's deadline", fl.Reason)
				}
			} else {
				assert.Equal(t, 0.0, transitions(e.m, "closed", "open"))
				assert.Equal(t, 0.0, testutil.ToFloat64(e.m.BreakerRejected))
			}
			if tt.requests >= 0 {
				assert.Equal(t, tt.requests, requests())
			}
		})
	}
}

func histogram(t *testing.T, h prometheus.Histogram) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	require.NoError(t, h.Write(&m))
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestFetcherRateLimit: at 10 req/s (burst 1) five pks fetched at once reach
// the API 100 ms apart, on the fetcher's (fake) clock.
func TestFetcherRateLimit(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClockAt(fetchStart)
	var (
		mu   sync.Mutex
		seen []time.Time
	)
	arrived := make(chan struct{}, 5)
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
		mu.Lock()
		seen = append(seen, clock.Now())
		mu.Unlock()
		arrived <- struct{}{}
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	e := newFetchEnvAt(t, srv.URL, clock, func(c *fetchSetup) {
		c.fetcher.Concurrency = 5
		c.api.RateLimit = 10
	})
	awaitRequest := func() {
		t.Helper()
		select {
		case <-arrived:
		case <-ctx.Done():
			t.Fatal("no request")
		}
	}

	done := make(chan influencer.Batch, 1)
	go func() { done <- e.f.Fetch(context.Background(), task(1, 2, 3, 4, 5)) }()
	// One request goes at once; the others wait for tokens (plus the
	// deadline timer). Each step lets the next request through.
	for waiting := 4; waiting > 0; waiting-- {
		awaitRequest()
		require.NoError(t, clock.BlockUntilContext(ctx, waiting+1))
		clock.Advance(100 * time.Millisecond)
	}
	awaitRequest()
	var got influencer.Batch
	select {
	case got = <-done:
	case <-ctx.Done():
		t.Fatal("fetch did not finish")
	}
	assert.Len(t, got.Samples, 5)
	assert.Empty(t, got.Failures)
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(seen, time.Time.Compare)
	var want []time.Time
	for i := range 5 {
		want = append(want, fetchStart.Add(time.Duration(i)*100*time.Millisecond))
	}
	assert.Equal(t, want, seen)
	count, sum := histogram(t, e.m.RateLimitWait)
	assert.Equal(t, uint64(5), count)
	assert.InDelta(t, 0+0.1+0.2+0.3+0.4, sum, 1e-9)
}

// TestFetcherRateLimitRespectsTheDeadline: a token that comes at or after
// the deadline is not waited for; the pk is missed (expired, not
// dead-lettered) without a request.
func TestFetcherRateLimitRespectsTheDeadline(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClockAt(fetchDeadline.Add(-1500 * time.Millisecond))
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	e := newFetchEnvAt(t, srv.URL, clock, func(c *fetchSetup) {
		c.fetcher.Concurrency = 1 // pks take tokens in order: 0 s, 1 s, then 2 s (too late)
		c.api.RateLimit = 1
	})

	handle := e.handleFunc(t, task(1, 2, 3))
	done := make(chan handled, 1)
	go func() { done <- handle() }()
	require.NoError(t, clock.BlockUntilContext(ctx, 2)) // the deadline and one token wait
	clock.Advance(time.Second)
	var h handled
	select {
	case h = <-done:
	case <-ctx.Done():
		t.Fatal("fetch did not finish")
	}
	got := result(t, h)
	assert.Len(t, got.Samples, 2)
	require.Len(t, got.Failures, 1)
	assert.Equal(t, handlers.ClassExpired, got.Failures[0].Class)
	assert.Equal(t, "deadline passed while waiting for the rate limit", got.Failures[0].Reason)
	assert.Equal(t, 0, got.Failures[0].Attempts)
	assert.Equal(t, int64(2), srv.Requests.Load())
	assert.Empty(t, e.dlq.published(), "expired pks are missed, not dead-lettered")
}
