package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/mockstagramapi/apitest"
	"github.com/mockstagram/pipeline/simulator"
)

const (
	fetchGrace   = 5 * time.Second
	fetchShard   = 3
	retryInitial = time.Millisecond
	retryMax     = 4 * time.Millisecond
)

var (
	fetchStart    = minute0.Add(10 * time.Second)         // the fake clock when a test starts
	fetchDeadline = minute0.Add(time.Minute + fetchGrace) // the task deadline
)

// fetchEnv is a fetcher on a fake clock with a recording DLQ publisher.
type fetchEnv struct {
	f     *handlers.Fetcher
	clock *clockwork.FakeClock
	dlq   *fakePublisher
	m     *metrics.Pipeline
}

// fetchSetup configures a test's fetcher and its API client.
type fetchSetup struct {
	fetcher handlers.FetcherConfig
	api     mockstagramapi.Config // Concurrency 0: the fetcher's
}

func newFetchEnv(t *testing.T, baseURL string, mod func(*fetchSetup)) fetchEnv {
	t.Helper()
	return newFetchEnvAt(t, baseURL, clockwork.NewFakeClockAt(fetchStart), mod)
}

func newFetchEnvAt(t *testing.T, baseURL string, clock clockwork.Clock, mod func(*fetchSetup)) fetchEnv {
	t.Helper()
	cfg := fetchSetup{
		fetcher: handlers.FetcherConfig{
			Concurrency:   4,
			RetryInitial:  retryInitial,
			RetryMax:      retryMax,
			DeadlineGrace: fetchGrace,
		},
		api: mockstagramapi.Config{BaseURL: baseURL, Timeout: 10 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	if cfg.api.Concurrency == 0 {
		cfg.api.Concurrency = cfg.fetcher.Concurrency
	}
	m := newMetrics()
	api, err := mockstagramapi.New(cfg.api, clock, discardLogger(), m)
	require.NoError(t, err)
	t.Cleanup(api.CloseIdleConnections)
	dlq := &fakePublisher{}
	f, err := handlers.NewFetcher(cfg.fetcher, api, dlq, clock, discardLogger(), m)
	require.NoError(t, err)
	t.Cleanup(f.Close) // its workers end with the test's last fetch
	fake, _ := clock.(*clockwork.FakeClock)
	return fetchEnv{f: f, clock: fake, dlq: dlq, m: m}
}

func task(pks ...int64) messages.Task {
	return messages.Task{Minute: minute0, Shard: fetchShard, Deadline: fetchDeadline, PKs: pks}
}

func taskMessage(t *testing.T, tk messages.Task) *message.Message {
	t.Helper()
	msg, err := messages.NewTask(tk)
	require.NoError(t, err)
	return msg
}

// handled is what Handle returned.
type handled struct {
	task messages.Task
	out  []*message.Message
	err  error
}

// handleFunc returns a function that runs Handle, safe to call in another
// goroutine; check its answer with result.
func (e fetchEnv) handleFunc(t *testing.T, tk messages.Task) func() handled {
	t.Helper()
	msg := taskMessage(t, tk)
	return func() handled {
		out, err := e.f.Handle(msg)
		return handled{task: tk, out: out, err: err}
	}
}

// handle runs Handle and returns the decoded result batch.
func (e fetchEnv) handle(t *testing.T, tk messages.Task) influencer.Batch {
	t.Helper()
	return result(t, e.handleFunc(t, tk)())
}

// result checks that Handle returned one result message and decodes it.
func result(t *testing.T, h handled) influencer.Batch {
	t.Helper()
	tk, out, err := h.task, h.out, h.err
	require.NoError(t, err)
	require.Len(t, out, 1)
	b, err := messages.DecodeResult(out[0].Payload)
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(tk.Shard), out[0].Metadata.Get(messages.MetaShard))
	assert.Equal(t, tk.Minute.Format(time.RFC3339), out[0].Metadata.Get(messages.MetaMinute))
	return b
}

// drive runs fn in a goroutine and, whenever at least waiters timers are
// pending on the fake clock (the task deadline plus a pk's backoff), advances
// the clock by step, but never up to the deadline, so that the deadline only
// ends the fetch through the fetcher's own give-up check.
func drive[T any](t *testing.T, clock *clockwork.FakeClock, waiters int, step time.Duration, fn func() T) T {
	t.Helper()
	ctx := waitCtx(t)
	done := make(chan T, 1)
	go func() { done <- fn() }()
	for {
		bctx, cancel := context.WithCancel(ctx)
		blocked := make(chan error, 1)
		go func() { blocked <- clock.BlockUntilContext(bctx, waiters) }()
		select {
		case v := <-done:
			cancel()
			<-blocked
			return v
		case err := <-blocked:
			cancel()
			require.NoError(t, err, "fetch neither finished nor waited")
			d := min(step, fetchDeadline.Sub(clock.Now())-time.Nanosecond)
			clock.Advance(d)
		}
	}
}

func sampleJSON(pk int64) string {
	return fmt.Sprintf(`{"pk":%d,"username":"influencer-%d","followerCount":1200,"followingCount":300}`, pk, pk)
}

func handSample(pk int64, at time.Time) influencer.Sample {
	return influencer.Sample{PK: pk, Username: "influencer-" + strconv.FormatInt(pk, 10),
		FollowerCount: 1200, FollowingCount: 300, Minute: minute0, FetchedAt: at}
}

func newSimulator(t *testing.T, clock clockwork.Clock) (*simulator.Server, string) {
	t.Helper()
	sim, err := simulator.New(simulator.Config{Mode: simulator.Deterministic, Range: influencer.Range{From: 1, To: 100}}, clock)
	require.NoError(t, err)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func simSample(pk int64, at time.Time) influencer.Sample {
	follower, following := simulator.Counts(pk, at)
	return influencer.Sample{PK: pk, Username: simulator.Username(pk), FollowerCount: follower,
		FollowingCount: following, Minute: minute0, FetchedAt: at}
}

func deadLetters(t *testing.T, p *fakePublisher) []messages.FetchDeadLetter {
	t.Helper()
	return pkDeadLetters(t, p, messages.TopicFetcherDLQ, messages.HandlerFetcher)
}

// pkDeadLetters decodes the one-pk dead letters published to topic by stage,
// checking that their metadata says what their payload says.
func pkDeadLetters(t *testing.T, p *fakePublisher, topic, stage string) []messages.FetchDeadLetter {
	t.Helper()
	var out []messages.FetchDeadLetter
	for _, pub := range p.published() {
		require.Equal(t, topic, pub.topic)
		var dl messages.FetchDeadLetter
		require.NoError(t, json.Unmarshal(pub.msg.Payload, &dl))
		assert.Equal(t, dl.Reason, pub.msg.Metadata.Get(messages.MetaReason))
		assert.Equal(t, dl.Class, pub.msg.Metadata.Get(messages.MetaClass))
		assert.Equal(t, stage, pub.msg.Metadata.Get(messages.MetaStage))
		assert.Equal(t, strconv.Itoa(dl.Shard), pub.msg.Metadata.Get(messages.MetaShard))
		assert.Equal(t, strconv.Itoa(dl.Attempts), pub.msg.Metadata.Get(messages.MetaAttempts))
		out = append(out, dl)
	}
	return out
}

func TestFetcherFetchesEveryPKFromTheSimulator(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(fetchStart)
	sim, url := newSimulator(t, clock)
	e := newFetchEnvAt(t, url, clock, func(c *fetchSetup) { c.fetcher.Concurrency = 3 })

	// Unsorted with a duplicate: each pk is fetched once, samples come sorted.
	got := e.f.Fetch(context.Background(), task(17, 3, 42, 1, 99, 3, 100, 8))

	want := influencer.Batch{Minute: minute0, Shard: fetchShard}
	for _, pk := range []int64{1, 3, 8, 17, 42, 99, 100} {
		want.Samples = append(want.Samples, simSample(pk, fetchStart))
	}
	assert.Equal(t, want, got)
	assert.Equal(t, int64(7), sim.Requests())
	assert.Empty(t, e.dlq.published())
	assert.Equal(t, 0.0, testutil.ToFloat64(e.m.FetchRetries))
}

func TestFetcherHandleReturnsOneResultMessage(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(fetchStart)
	_, url := newSimulator(t, clock)
	e := newFetchEnvAt(t, url, clock, nil)

	got := e.handle(t, task(5, 4, 6))

	assert.Equal(t, influencer.Batch{Minute: minute0, Shard: fetchShard, Samples: []influencer.Sample{
		simSample(4, fetchStart), simSample(5, fetchStart), simSample(6, fetchStart),
	}}, got)
	assert.Empty(t, e.dlq.published())
}

func TestFetcherUnknownPKIsNotRetriedAndDeadLettered(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(fetchStart)
	sim, url := newSimulator(t, clock) // knows pks 1..100
	e := newFetchEnvAt(t, url, clock, nil)
	dlq, m := e.dlq, e.m

	got := e.handle(t, task(2, 500, 1))

	wantFailure := influencer.Failure{PK: 500, Minute: minute0, Class: mockstagramapi.ClassNotFound,
		Reason: "InfluencerNotFoundError", Attempts: 1}
	assert.Equal(t, influencer.Batch{Minute: minute0, Shard: fetchShard,
		Samples:  []influencer.Sample{simSample(1, fetchStart), simSample(2, fetchStart)},
		Failures: []influencer.Failure{wantFailure}}, got)
	assert.Equal(t, int64(3), sim.Requests(), "the unknown pk is asked once")
	assert.Equal(t, []messages.FetchDeadLetter{{Failure: wantFailure, Shard: fetchShard}}, deadLetters(t, dlq))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.FetchFailures.WithLabelValues(mockstagramapi.ClassNotFound)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ)))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.FetchRetries))
}

// A permanent failure (one row per class; the client's tests classify every
// answer) is not retried and is dead-lettered with its class and reason.
func TestFetcherPermanentFailures(t *testing.T) {
	t.Parallel()
	const pk = 7
	tests := []struct {
		name         string
		status       int
		body         string
		class        string
		reason       string // exact, unless prefix is set
		reasonPrefix bool
	}{
		{"malformed json", 200, `{"pk":7,"username":`, mockstagramapi.ClassMalformed, "malformed body: ", true},
		{"missing field", 200, `{"pk":7,"username":"u","followerCount":12}`, mockstagramapi.ClassMalformed, "body misses [followingCount]", false},
		{"negative count", 200, `{"pk":7,"username":"u","followerCount":-5,"followingCount":3}`, mockstagramapi.ClassInvalid, "followerCount -5 out of range [0, 10000000000]", false},
		{"pk mismatch", 200, sampleJSON(8), mockstagramapi.ClassInvalid, "body is for pk 8, asked for 7", false},
		{"oversize body", 200, `{"pk":7,"username":"u","followerCount":12,"followingCount":3,"pad":"` + strings.Repeat("x", 1100) + `"}`, mockstagramapi.ClassOversize, "HTTP 200 body larger than 1024 bytes", false},
		{"not found with 404", 404, simulator.NotFoundBody, mockstagramapi.ClassNotFound, "InfluencerNotFoundError", false},
		{"400", 400, `{"error":{"name":"ValidationError"}}`, mockstagramapi.ClassClient, "HTTP 400", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, _, _ int64) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			e := newFetchEnv(t, srv.URL, func(c *fetchSetup) { c.api.MaxBody = 1024 })

			got := e.handle(t, task(pk))

			assert.Empty(t, got.Samples)
			require.Len(t, got.Failures, 1)
			fl := got.Failures[0]
			if tt.reasonPrefix {
				assert.True(t, strings.HasPrefix(fl.Reason, tt.reason), "reason %q", fl.Reason)
				assert.Greater(t, len(fl.Reason), len(tt.reason), "reason %q", fl.Reason)
				fl.Reason = tt.reason
			}
			assert.Equal(t, influencer.Failure{PK: pk, Minute: minute0, Class: tt.class, Reason: tt.reason, Attempts: 1}, fl)
			assert.Equal(t, int64(1), srv.Requests.Load(), "a permanent failure is not retried")
			dls := deadLetters(t, e.dlq)
			require.Len(t, dls, 1)
			assert.Equal(t, got.Failures[0], dls[0].Failure)
			assert.Equal(t, fetchShard, dls[0].Shard)
			assert.Equal(t, 1.0, testutil.ToFloat64(e.m.FetchFailures.WithLabelValues(tt.class)))
			assert.Equal(t, 0.0, testutil.ToFloat64(e.m.FetchRetries))
		})
	}
}

func TestFetcherRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status []int // answers before the 200
	}{
		{"5xx twice", []int{500, 503}},
		{"502 then 504", []int{502, 504}},
		{"429 without Retry-After", []int{429}},
		{"500 429 503", []int{500, 429, 503}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, n int64) {
				if int(n) <= len(tt.status) {
					w.WriteHeader(tt.status[n-1])
					_, _ = w.Write([]byte("<html>busy</html>"))
					return
				}
				_, _ = w.Write([]byte(sampleJSON(pk)))
			})
			e := newFetchEnv(t, srv.URL, nil)

			got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(7))))

			require.Empty(t, got.Failures)
			require.Len(t, got.Samples, 1)
			assert.Equal(t, handSample(7, got.Samples[0].FetchedAt), got.Samples[0])
			assert.True(t, got.Samples[0].FetchedAt.After(fetchStart), "fetched after the backoffs")
			assert.Equal(t, int64(len(tt.status)+1), srv.Requests.Load())
			assert.Equal(t, float64(len(tt.status)), testutil.ToFloat64(e.m.FetchRetries))
			assert.Empty(t, e.dlq.published())
		})
	}
}

func TestFetcherHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	var (
		mu   sync.Mutex
		seen []time.Time // fake time of each request
	)
	clock := clockwork.NewFakeClockAt(fetchStart)
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, pk, n int64) {
		mu.Lock()
		seen = append(seen, clock.Now())
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	e := newFetchEnvAt(t, srv.URL, clock, nil)
	f := e.f

	done := make(chan influencer.Batch, 1)
	go func() { done <- f.Fetch(context.Background(), task(7)) }()

	// The deadline timer and the Retry-After wait.
	require.NoError(t, clock.BlockUntilContext(ctx, 2))
	clock.Advance(2*time.Second - time.Millisecond)
	require.NoError(t, clock.BlockUntilContext(ctx, 2))
	assert.Equal(t, int64(1), srv.Requests.Load(), "no retry before Retry-After")
	clock.Advance(time.Millisecond)

	var got influencer.Batch
	select {
	case got = <-done:
	case <-ctx.Done():
		t.Fatal("fetch did not finish")
	}
	at := fetchStart.Add(2 * time.Second)
	assert.Equal(t, influencer.Batch{Minute: minute0, Shard: fetchShard, Samples: []influencer.Sample{handSample(7, at)}}, got)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []time.Time{fetchStart, at}, seen)
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.FetchRetries))
}

// A Retry-After past the deadline is not waited for: the pk is missed as
// rate limited (transient: recorded missed, not dead-lettered). A huge value
// is clamped (to a minute) before it becomes a wait, so it cannot overflow
// into a negative wait and an immediate retry.
func TestFetcherRetryAfterBeyondDeadlineGivesUp(t *testing.T) {
	t.Parallel()
	for _, retryAfter := range []string{"60", "99999999999999999"} {
		t.Run(retryAfter, func(t *testing.T) {
			t.Parallel()
			srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, _, _ int64) {
				w.Header().Set("Retry-After", retryAfter)
				w.WriteHeader(http.StatusTooManyRequests)
			})
			e := newFetchEnv(t, srv.URL, nil)
			e.clock.Advance(30 * time.Second) // 35 s left before the deadline

			got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(7))))

			assert.Equal(t, []influencer.Failure{{PK: 7, Minute: minute0, Class: mockstagramapi.ClassRateLimited,
				Reason: "HTTP 429; gave up at the minute's deadline", Attempts: 1}}, got.Failures)
			assert.Equal(t, int64(1), srv.Requests.Load())
			assert.Empty(t, deadLetters(t, e.dlq))
		})
	}
}

func TestFetcherGivesUpAtTheDeadline(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // connection refused

	tests := []struct {
		name   string
		url    func(t *testing.T) (string, func() int64)
		class  string
		reason string // prefix
	}{
		{"persistent 5xx", func(t *testing.T) (string, func() int64) {
			srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, _, _ int64) {
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			return srv.URL, srv.Requests.Load
		}, mockstagramapi.ClassServer, "HTTP 503; gave up at the minute's deadline"},
		{"connection refused", func(t *testing.T) (string, func() int64) {
			return closedURL, nil
		}, mockstagramapi.ClassConnection, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, requests := tt.url(t)
			e := newFetchEnv(t, url, nil)
			e.clock.Advance(fetchDeadline.Sub(fetchStart) - 50*time.Millisecond) // 50 ms left

			got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(7))))

			assert.Empty(t, got.Samples)
			require.Len(t, got.Failures, 1)
			fl := got.Failures[0]
			assert.Equal(t, tt.class, fl.Class)
			assert.Greater(t, fl.Attempts, 1)
			assert.True(t, strings.HasPrefix(fl.Reason, tt.reason), "reason %q", fl.Reason)
			assert.True(t, strings.HasSuffix(fl.Reason, "; gave up at the minute's deadline"), "reason %q", fl.Reason)
			if requests != nil {
				assert.Equal(t, int64(fl.Attempts), requests())
			}
			assert.Equal(t, float64(fl.Attempts-1), testutil.ToFloat64(e.m.FetchRetries))
			assert.Empty(t, deadLetters(t, e.dlq), "transient: recorded missed, not dead-lettered")
			assert.Equal(t, 1.0, testutil.ToFloat64(e.m.FetchFailures.WithLabelValues(tt.class)))
		})
	}
}

func TestFetcherRequestTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t, func(w http.ResponseWriter, r *http.Request, pk, n int64) {
		if n == 1 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	e := newFetchEnv(t, srv.URL, func(c *fetchSetup) { c.api.Timeout = 50 * time.Millisecond })

	got := result(t, drive(t, e.clock, 2, retryMax, e.handleFunc(t, task(7))))

	require.Empty(t, got.Failures)
	require.Len(t, got.Samples, 1)
	assert.Equal(t, handSample(7, got.Samples[0].FetchedAt), got.Samples[0])
	assert.Equal(t, int64(2), srv.Requests.Load())
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.FetchRetries))
}

// fetchPastTheDeadline handles task(7) on e, waits for its request to
// arrive, moves the clock to the deadline and returns the batch.
func fetchPastTheDeadline(ctx context.Context, t *testing.T, e fetchEnv, arrived <-chan struct{}) influencer.Batch {
	t.Helper()
	done := make(chan handled, 1)
	handle := e.handleFunc(t, task(7))
	go func() { done <- handle() }()
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("no request")
	}
	e.clock.Advance(fetchDeadline.Sub(fetchStart))
	select {
	case h := <-done:
		return result(t, h)
	case <-ctx.Done():
		t.Fatal("fetch did not end at the deadline")
	}
	return influencer.Batch{}
}

func TestFetcherRequestRunningAtTheDeadline(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	arrived := make(chan struct{}, 1)
	srv := apitest.New(t, func(_ http.ResponseWriter, r *http.Request, _, _ int64) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})
	// A sent request is not aborted: it runs on to its timeout (short, so
	// that the server closes soon after the test) after the fetch gave up.
	e := newFetchEnv(t, srv.URL, func(c *fetchSetup) { c.api.Timeout = 2 * time.Second })

	got := fetchPastTheDeadline(ctx, t, e, arrived)
	want := influencer.Failure{PK: 7, Minute: minute0, Class: mockstagramapi.ClassTimeout,
		Reason: "request still running; gave up at the minute's deadline", Attempts: 1}
	assert.Equal(t, influencer.Batch{Minute: minute0, Shard: fetchShard, Failures: []influencer.Failure{want}}, got)
	assert.Empty(t, deadLetters(t, e.dlq), "transient: recorded missed, not dead-lettered")
}

func TestFetcherExpiredTask(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		now      time.Time
		deadline time.Time // of the task
		expiry   time.Time // the effective deadline in the reason
	}{
		{"at the deadline", fetchDeadline, fetchDeadline, fetchDeadline},
		{"long after", fetchDeadline.Add(time.Hour), fetchDeadline, fetchDeadline},
		{"task deadline earlier than grace", minute0.Add(40 * time.Second), minute0.Add(30 * time.Second), minute0.Add(30 * time.Second)},
		{"task deadline later than grace", fetchDeadline, fetchDeadline.Add(time.Hour), fetchDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := apitest.New(t, func(http.ResponseWriter, *http.Request, int64, int64) {})
			e := newFetchEnv(t, srv.URL, nil)
			e.clock.Advance(tt.now.Sub(fetchStart))
			tk := task(9, 4)
			tk.Deadline = tt.deadline

			got := e.handle(t, tk)

			reason := fmt.Sprintf("task received at %s, after its deadline %s",
				tt.now.Format(time.RFC3339), tt.expiry.Format(time.RFC3339))
			assert.Equal(t, influencer.Batch{Minute: minute0, Shard: fetchShard, Failures: []influencer.Failure{
				{PK: 9, Minute: minute0, Class: handlers.ClassExpired, Reason: reason},
				{PK: 4, Minute: minute0, Class: handlers.ClassExpired, Reason: reason},
			}}, got)
			assert.Equal(t, int64(0), srv.Requests.Load(), "no request for an expired task")
			assert.Empty(t, e.dlq.published(), "expired pks are not dead-lettered")
			assert.Equal(t, 1.0, testutil.ToFloat64(e.m.TasksExpired))
			assert.Equal(t, 2.0, testutil.ToFloat64(e.m.FetchFailures.WithLabelValues(handlers.ClassExpired)))
			assert.Equal(t, 0.0, testutil.ToFloat64(e.m.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ)))
		})
	}
}

func TestFetcherHandleRejectsMalformedPayloads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
	}{
		{"not json", `{`},
		{"empty", ``},
		{"unknown field", `{"minute":"2025-03-14T09:26:00Z","shard":1,"deadline":"2025-03-14T09:27:05Z","pks":[1],"extra":1}`},
		{"trailing data", `{"minute":"2025-03-14T09:26:00Z","shard":1,"deadline":"2025-03-14T09:27:05Z","pks":[1]} {}`},
		{"minute not aligned", `{"minute":"2025-03-14T09:26:30Z","shard":1,"deadline":"2025-03-14T09:27:05Z","pks":[1]}`},
		{"missing minute", `{"shard":1,"deadline":"2025-03-14T09:27:05Z","pks":[1]}`},
		{"negative shard", `{"minute":"2025-03-14T09:26:00Z","shard":-1,"deadline":"2025-03-14T09:27:05Z","pks":[1]}`},
		{"deadline before minute", `{"minute":"2025-03-14T09:26:00Z","shard":1,"deadline":"2025-03-14T09:25:00Z","pks":[1]}`},
		{"non-positive pk", `{"minute":"2025-03-14T09:26:00Z","shard":1,"deadline":"2025-03-14T09:27:05Z","pks":[1,0]}`},
		{"pks of wrong type", `{"minute":"2025-03-14T09:26:00Z","shard":1,"deadline":"2025-03-14T09:27:05Z","pks":["1"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := apitest.New(t, func(http.ResponseWriter, *http.Request, int64, int64) {})
			e := newFetchEnv(t, srv.URL, nil)

			out, err := e.f.Handle(message.NewMessage(watermill.NewUUID(), []byte(tt.payload)))

			require.ErrorIs(t, err, messages.ErrMalformed)
			assert.Nil(t, out)
			assert.Equal(t, int64(0), srv.Requests.Load())
			assert.Empty(t, e.dlq.published())
		})
	}
}

func TestFetcherHandleFailsWhenTheDLQFails(t *testing.T) {
	t.Parallel()
	srv := apitest.New(t, func(w http.ResponseWriter, _ *http.Request, _, _ int64) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(simulator.NotFoundBody))
	})
	e := newFetchEnv(t, srv.URL, nil)
	e.dlq.failN, e.dlq.err = 1, fmt.Errorf("broker down")

	out, err := e.f.Handle(taskMessage(t, task(7)))

	require.EqualError(t, err, "publish dead letter: broker down")
	assert.NotErrorIs(t, err, messages.ErrMalformed)
	assert.Nil(t, out)
	assert.Equal(t, 0.0, testutil.ToFloat64(e.m.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ)))

	// The redelivered task's letter goes (the failed one is not remembered).
	out, err = e.f.Handle(taskMessage(t, task(7)))
	require.NoError(t, err)
	assert.Len(t, out, 1)
	pubs := e.dlq.published()
	require.Len(t, pubs, 1)
	assert.Equal(t, "1", pubs[0].msg.Metadata.Get(messages.MetaCount))
	assert.Equal(t, 0.0, testutil.ToFloat64(e.m.DeadLettersSuppressed))
}

// Permanent failures are dead-lettered once per pk and class per hour, the
// letter counting the failures since the previous one; transient failures
// (here 503 until the deadline, an open breaker) are recorded missed only.
func TestFetcherDeadLettersPermanentFailuresOncePerHour(t *testing.T) {
	t.Parallel()
	notFound := &mockstagramapi.Error{Class: mockstagramapi.ClassNotFound, Reason: "InfluencerNotFoundError"}
	invalid := &mockstagramapi.Error{Class: mockstagramapi.ClassInvalid, Reason: "username is empty"}
	var calls atomic.Int64
	api := &fakeAPI{answer: func(_ int, pk int64) (influencer.Sample, error) {
		switch n := calls.Add(1); {
		case pk == 500:
			return influencer.Sample{}, notFound
		case pk == 501 && n%2 == 0:
			return influencer.Sample{}, invalid
		case pk == 501:
			return influencer.Sample{}, notFound
		case pk == 502:
			return influencer.Sample{}, &mockstagramapi.Error{Class: mockstagramapi.ClassServer, Reason: "HTTP 503", Retryable: true}
		case pk == 503:
			return influencer.Sample{}, mockstagramapi.ErrRateLimitDeadline
		}
		return influencer.Sample{PK: pk, Username: "u", FollowerCount: 1, FollowingCount: 2}, nil
	}}
	e := newFakeFetchEnv(t, api)
	// Each round fetches the minute the clock is in, 10 s after it starts,
	// with a deadline so close that no retry fits.
	round := func(t *testing.T, after time.Duration, pks ...int64) []published {
		t.Helper()
		e.clock.Advance(after)
		m := e.clock.Now().Truncate(time.Minute)
		before := len(e.dlq.published())
		tk := messages.Task{Minute: m, Shard: fetchShard, Deadline: e.clock.Now().Add(time.Nanosecond), PKs: pks}
		out, err := e.f.Handle(taskMessage(t, tk))
		require.NoError(t, err)
		require.Len(t, out, 1)
		return e.dlq.published()[before:]
	}
	letter := func(p published) (int64, string, string) {
		var dl messages.FetchDeadLetter
		require.NoError(t, json.Unmarshal(p.msg.Payload, &dl))
		return dl.PK, dl.Class, p.msg.Metadata.Get(messages.MetaCount)
	}
	type sent struct {
		pk    int64
		class string
		count string
	}
	letters := func(ps []published) []sent {
		var out []sent
		for _, p := range ps {
			pk, class, count := letter(p)
			out = append(out, sent{pk, class, count})
		}
		return out
	}

	// calls 1, 2: pk 500 not found, pk 501 invalid (even call).
	assert.Equal(t, []sent{{500, mockstagramapi.ClassNotFound, "1"}, {501, mockstagramapi.ClassInvalid, "1"}},
		letters(round(t, 0, 500, 501)))
	// 30 minutes later: the same failures are suppressed; pk 501 fails
	// with another class this time (odd call): a letter of its own.
	assert.Equal(t, []sent{{501, mockstagramapi.ClassNotFound, "1"}},
		letters(round(t, 30*time.Minute, 500, 501, 1)))
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.DeadLettersSuppressed))
	// Transient failures are never dead-lettered.
	assert.Empty(t, letters(round(t, 10*time.Minute, 502, 503)))
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.DeadLettersSuppressed))
	// Over an hour after its letter, pk 500's next failure is
	// dead-lettered again, standing for itself and the one suppressed.
	assert.Equal(t, []sent{{500, mockstagramapi.ClassNotFound, "2"}},
		letters(round(t, 21*time.Minute, 500)))
	assert.Equal(t, 4.0, testutil.ToFloat64(e.m.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ)))
}

func TestFetcherBoundsConcurrency(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	const (
		limit = 3
		pks   = 10
	)
	var inFlight, peak atomic.Int64
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := apitest.New(t, func(w http.ResponseWriter, r *http.Request, pk, _ int64) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case entered <- struct{}{}:
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case <-r.Context().Done():
		}
		inFlight.Add(-1) // before the answer reaches the fetcher
		_, _ = w.Write([]byte(sampleJSON(pk)))
	})
	// The transport alone would allow all of them.
	e := newFetchEnv(t, srv.URL, func(c *fetchSetup) { c.fetcher.Concurrency, c.api.Concurrency = limit, pks })
	f := e.f

	var all []int64
	for pk := int64(1); pk <= pks; pk++ {
		all = append(all, pk)
	}
	done := make(chan influencer.Batch, 1)
	go func() { done <- f.Fetch(context.Background(), task(all...)) }()

	recv := func(ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("timed out")
		}
	}
	send := func() {
		t.Helper()
		select {
		case release <- struct{}{}:
		case <-ctx.Done():
			t.Fatal("timed out")
		}
	}
	for range limit {
		recv(entered)
	}
	// Each released request lets exactly one more in.
	for range pks - limit {
		send()
		recv(entered)
	}
	for range limit {
		send()
	}
	var got influencer.Batch
	select {
	case got = <-done:
	case <-ctx.Done():
		t.Fatal("fetch did not finish")
	}
	assert.Len(t, got.Samples, pks)
	assert.Empty(t, got.Failures)
	assert.Equal(t, int64(limit), peak.Load())
	assert.Equal(t, int64(pks), srv.Requests.Load())
}

func TestNewFetcherRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     handlers.FetcherConfig
		wantErr string
	}{
		{"zero concurrency", handlers.FetcherConfig{RetryInitial: time.Millisecond, RetryMax: time.Millisecond}, "fetcher concurrency 0 < 1"},
		{"no retry interval", handlers.FetcherConfig{Concurrency: 1}, "fetcher retry 0s..0s: want 0 < initial <= max"},
		{"max below initial", handlers.FetcherConfig{Concurrency: 1, RetryInitial: 2 * time.Millisecond, RetryMax: time.Millisecond}, "fetcher retry 2ms..1ms: want 0 < initial <= max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := handlers.NewFetcher(tt.cfg, nil, &fakePublisher{}, clockwork.NewFakeClock(), discardLogger(), newMetrics())
			require.EqualError(t, err, tt.wantErr)
			assert.Nil(t, f)
		})
	}
}
