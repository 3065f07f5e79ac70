package mockstagramapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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

	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/mockstagramapi/apitest"
	"github.com/mockstagram/pipeline/simulator"
)

func transitions(m *metrics.Pipeline, from, to string) float64 {
	return testutil.ToFloat64(m.BreakerTransitions.WithLabelValues(from, to))
}

// TestBreakerCountsOnlyAPIFailures: connection errors and 5xx open the
// breaker (threshold 3); not-found, 429 and bad bodies (the API answers) do
// not, nor do timeouts (slowness may be our own overload). Once open, a request fails fast with class
// circuit_open, without reaching the API.
func TestBreakerCountsOnlyAPIFailures(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // connection refused

	status := func(code int, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}
	}
	server := func(fault func(w http.ResponseWriter, r *http.Request)) func(t *testing.T) (string, func() int64) {
		return func(t *testing.T) (string, func() int64) {
			srv := apitest.New(t, func(w http.ResponseWriter, r *http.Request, _, _ int64) { fault(w, r) })
			return srv.URL, srv.Requests.Load
		}
	}
	tests := []struct {
		name   string
		server func(t *testing.T) (string, func() int64)
		class  string // of the failures that reach the API
		opens  bool
	}{
		{"5xx opens", server(status(503, "busy")), mockstagramapi.ClassServer, true},
		{"timeouts do not", server(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }), mockstagramapi.ClassTimeout, false},
		{"connection errors open", func(*testing.T) (string, func() int64) { return closedURL, nil }, mockstagramapi.ClassConnection, true},
		{"not found does not", server(status(500, simulator.NotFoundBody)), mockstagramapi.ClassNotFound, false},
		{"429 does not", server(status(429, "")), mockstagramapi.ClassRateLimited, false},
		{"malformed does not", server(status(200, "<html>")), mockstagramapi.ClassMalformed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, requests := tt.server(t)
			m := newMetrics()
			c := newClient(t, url, clockwork.NewFakeClock(), m, func(c *mockstagramapi.Config) {
				c.Timeout = 50 * time.Millisecond
				c.BreakerFailures = 3
				c.BreakerCooldown = time.Hour
			})

			var classes []string
			for range 5 {
				_, err := c.Influencer(context.Background(), 7, time.Time{})
				classes = append(classes, apiError(t, err).Class)
			}

			if tt.opens {
				assert.Equal(t, []string{tt.class, tt.class, tt.class, mockstagramapi.ClassCircuitOpen, mockstagramapi.ClassCircuitOpen}, classes)
				assert.Equal(t, 1.0, transitions(m, "closed", "open"))
				assert.Equal(t, 2.0, testutil.ToFloat64(m.BreakerState))
				assert.Equal(t, 2.0, testutil.ToFloat64(m.BreakerRejected))
				_, err := c.Influencer(context.Background(), 7, time.Time{})
				assert.Equal(t, mockstagramapi.Error{Class: mockstagramapi.ClassCircuitOpen,
					Reason: "circuit breaker open: the API is failing", Retryable: true}, *apiError(t, err))
				if requests != nil {
					assert.Equal(t, int64(3), requests(), "requests sent before the breaker opened")
				}
				return
			}
			assert.Equal(t, []string{tt.class, tt.class, tt.class, tt.class, tt.class}, classes)
			assert.Equal(t, 0.0, transitions(m, "closed", "open"))
			assert.Equal(t, 0.0, testutil.ToFloat64(m.BreakerRejected))
			assert.Equal(t, int64(5), requests())
		})
	}
}

// TestBreakerProbeClosesIt: after the cooldown one probe goes through; its
// success closes the breaker. The cooldown is real time (gobreaker has no
// clock), so it is short and the test polls for the probe with a deadline.
func TestBreakerProbeClosesIt(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	m := newMetrics()
	c := newClient(t, srv.URL, clockwork.NewFakeClock(), m, func(c *mockstagramapi.Config) {
		c.BreakerFailures = 2
		c.BreakerCooldown = 50 * time.Millisecond
	})
	for range 2 {
		_, err := c.Influencer(context.Background(), 7, time.Time{})
		require.Equal(t, mockstagramapi.ClassServer, apiError(t, err).Class)
	}
	require.Equal(t, 2.0, testutil.ToFloat64(m.BreakerState), "open")
	down.Store(false)

	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.Influencer(context.Background(), 7, time.Time{})
		if err == nil {
			assert.Equal(t, int64(7), s.PK)
			break
		}
		require.Equal(t, mockstagramapi.ClassCircuitOpen, apiError(t, err).Class)
		require.True(t, time.Now().Before(deadline), "no probe went through")
		<-time.After(5 * time.Millisecond)
	}
	assert.Equal(t, int64(3), srv.Requests.Load(), "two failures, then the probe")
	assert.Equal(t, 1.0, transitions(m, "closed", "open"))
	assert.Equal(t, 1.0, transitions(m, "open", "half-open"))
	assert.Equal(t, 1.0, transitions(m, "half-open", "closed"))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.BreakerState), "closed again")
	assert.Greater(t, testutil.ToFloat64(m.BreakerRejected), 0.0)
}

// TestBreakerIgnoresRequestsTheCallerCutShort: a request whose caller
// gave up on it (the minute's deadline, shutdown) is no failure of the API,
// even when the API then fails it. (A sent request is not aborted: it runs
// to its answer or timeout; here the API answers 503 once the caller has
// cancelled.)
func TestBreakerIgnoresRequestsTheCallerCutShort(t *testing.T) {
	t.Parallel()
	arrived, cancelled := make(chan struct{}, 1), make(chan struct{})
	srv := apitest.New(t, func(w http.ResponseWriter, r *http.Request, _, _ int64) {
		arrived <- struct{}{}
		select {
		case <-cancelled:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	m := newMetrics()
	c := newClient(t, srv.URL, clockwork.NewFakeClock(), m, func(c *mockstagramapi.Config) {
		c.BreakerFailures = 1
		c.BreakerCooldown = time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
		close(cancelled)
	}()
	_, err := c.Influencer(ctx, 7, time.Time{})
	require.Error(t, err)
	assert.Equal(t, int64(1), srv.Requests.Load())
	assert.Equal(t, 0.0, transitions(m, "closed", "open"))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.BreakerState))
}

func TestRateLimiterReserveDelays(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	tests := []struct {
		rps  float64
		want []time.Duration // delays of consecutive reservations at t0
	}{
		{10, []time.Duration{0, 100 * ms, 200 * ms, 300 * ms}},           // burst 1
		{0.5, []time.Duration{0, 2 * time.Second, 4 * time.Second}},      // burst 1
		{100, []time.Duration{0, 0, 0, 0, 0, 10 * ms, 20 * ms, 30 * ms}}, // burst 5 (50 ms)
		{4000, append(make([]time.Duration, 200), 250*time.Microsecond, 500*time.Microsecond)},
	}
	for _, tt := range tests {
		lim := mockstagramapi.NewRateLimiter(tt.rps)
		var got []time.Duration
		for range tt.want {
			r := lim.ReserveN(t0, 1)
			require.True(t, r.OK())
			got = append(got, r.DelayFrom(t0))
		}
		assert.Equal(t, tt.want, got, "%g req/s", tt.rps)
	}
}

func histogram(t *testing.T, h prometheus.Histogram) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	require.NoError(t, h.Write(&m))
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestRateLimit: at 1 req/s (burst 1) the second request waits a second on
// the client's (fake) clock; one whose token would come at or after its
// deadline is not sent and gives its token back.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	var (
		mu   sync.Mutex
		seen []time.Time
	)
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, _ int64) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, clock.Now())
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	m := newMetrics()
	c := newClient(t, srv.URL, clock, m, func(c *mockstagramapi.Config) { c.RateLimit = 1 })

	_, err := c.Influencer(ctx, 1, start.Add(time.Second))
	require.NoError(t, err, "the first token is there")

	// The next token comes at start+1s: not before this deadline.
	_, err = c.Influencer(ctx, 2, start.Add(time.Second))
	require.ErrorIs(t, err, mockstagramapi.ErrRateLimitDeadline)
	assert.Equal(t, int64(1), srv.Requests.Load(), "not sent")

	// The token was given back: the next request waits for the same one.
	done := make(chan error, 1)
	go func() {
		_, err := c.Influencer(ctx, 3, start.Add(2*time.Second))
		done <- err
	}()
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	clock.Advance(time.Second)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("request did not finish")
	}
	mu.Lock()
	assert.Equal(t, []time.Time{start, start.Add(time.Second)}, seen)
	mu.Unlock()
	count, sum := histogram(t, m.RateLimitWait)
	assert.Equal(t, uint64(3), count)
	assert.InDelta(t, 0+1+1, sum, 1e-9)

	// ctx ending while waiting for a token: not sent either.
	cctx, ccancel := context.WithCancel(ctx)
	go func() {
		_, err := c.Influencer(cctx, 4, time.Time{})
		done <- err
	}()
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	ccancel()
	select {
	case err := <-done:
		assert.True(t, errors.Is(err, mockstagramapi.ErrRateLimitDeadline), "got %v", err)
	case <-ctx.Done():
		t.Fatal("request did not finish")
	}
	assert.Equal(t, int64(2), srv.Requests.Load())
}
