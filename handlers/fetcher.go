package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/tracing"
)

// Failure classes.
const (
	ClassExpired     = "expired"
	ClassNotFound    = "not_found"
	ClassTimeout     = "timeout"
	ClassConnection  = "connection"
	ClassServer      = "http_5xx"
	ClassRateLimited = "rate_limited"
	ClassClient      = "http_4xx"
	ClassMalformed   = "malformed"
	ClassOversize    = "oversize"
	ClassInvalid     = "invalid"
	// ClassCircuitOpen: the circuit breaker failed the request fast because
	// the API is failing; retried within the deadline like a 5xx.
	ClassCircuitOpen = "circuit_open"
)

// FetcherConfig configures the fetcher.
type FetcherConfig struct {
	BaseURL       string        // Mockstagram API base URL; the only host ever called
	Concurrency   int           // in-flight requests per process, shared by all shards
	Timeout       time.Duration // per request
	RetryInitial  time.Duration // first backoff interval
	RetryMax      time.Duration // largest backoff interval
	DeadlineGrace time.Duration // a fetch for minute M counts until M+1m+grace
	MaxBody       int64         // largest accepted response body (default 64 KiB)

	// RateLimit is the most API requests per second of the whole process
	// (all shards together); 0 is unlimited. See NewRateLimiter.
	RateLimit float64
	// BreakerFailures consecutive API failures (connection errors, timeouts,
	// 5xx; not not_found, 429 or bad bodies, which prove the API answers)
	// open the circuit breaker; 0 disables it. While open, requests fail
	// fast with class circuit_open (retried within the deadline, with
	// backoff); after BreakerCooldown one probe request goes through, and
	// its success closes the breaker again.
	BreakerFailures int
	BreakerCooldown time.Duration
}

// Fetcher turns a shard-minute task into one result message: it fetches
// every pk with bounded concurrency and retries, and never keeps a value
// fetched outside the task's minute (plus grace).
type Fetcher struct {
	cfg     FetcherConfig
	base    string
	client  *http.Client
	sem     chan struct{}
	dlq     Publisher
	clock   clockwork.Clock
	logger  *slog.Logger
	metrics *metrics.Pipeline
	limiter *rate.Limiter                              // nil: unlimited
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}] // nil: disabled
}

// NewFetcher creates a fetcher. client should be a keep-alive client sized
// for cfg.Concurrency (see NewHTTPClient).
func NewFetcher(cfg FetcherConfig, client *http.Client, dlq Publisher, clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) (*Fetcher, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fetcher base URL %q: want http(s)://host[:port]", cfg.BaseURL)
	}
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("fetcher concurrency %d < 1", cfg.Concurrency)
	}
	if cfg.Timeout <= 0 || cfg.RetryInitial <= 0 || cfg.RetryMax < cfg.RetryInitial {
		return nil, fmt.Errorf("fetcher timeout %s / retry %s..%s: want positive timeout and 0 < initial <= max", cfg.Timeout, cfg.RetryInitial, cfg.RetryMax)
	}
	if math.IsNaN(cfg.RateLimit) || cfg.RateLimit < 0 {
		return nil, fmt.Errorf("fetcher rate limit %g: want >= 0 (0 = unlimited)", cfg.RateLimit)
	}
	if cfg.BreakerFailures < 0 || (cfg.BreakerFailures > 0 && cfg.BreakerCooldown <= 0) {
		return nil, fmt.Errorf("fetcher breaker %d failures / cooldown %s: want failures >= 0 (0 = off) and a positive cooldown", cfg.BreakerFailures, cfg.BreakerCooldown)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	base := u.Scheme + "://" + u.Host + trimSlash(u.Path) + "/api/v1/influencers/"
	f := &Fetcher{cfg: cfg, base: base, client: client, sem: make(chan struct{}, cfg.Concurrency),
		dlq: dlq, clock: clock, logger: logger, metrics: m}
	if cfg.RateLimit > 0 {
		f.limiter = NewRateLimiter(cfg.RateLimit)
	}
	if cfg.BreakerFailures > 0 {
		f.breaker = newBreaker(cfg.BreakerFailures, cfg.BreakerCooldown, logger, m)
	}
	return f, nil
}

// NewRateLimiter returns the fetcher's limiter for rps requests per second:
// a token bucket whose burst is 50 ms worth of requests (at least one), so
// that a request that was scheduled a little late does not lose its token,
// while no second sees more than rps plus that burst.
func NewRateLimiter(rps float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(rps), max(1, int(rps/20)))
}

// Outcomes of a request as the breaker counts them.
var (
	errAPIFailing  = errors.New("the API is failing")      // counts toward opening
	errNotAnAnswer = errors.New("request cut short by us") // counts neither way
)

func newBreaker(failures int, cooldown time.Duration, logger *slog.Logger, m *metrics.Pipeline) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "mockstagram-api",
		MaxRequests: 1, // one probe in half-open; its success closes the breaker
		Timeout:     cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		IsExcluded:  func(err error) bool { return errors.Is(err, errNotAnAnswer) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			m.BreakerTransitions.WithLabelValues(from.String(), to.String()).Inc()
			m.BreakerState.Set(map[gobreaker.State]float64{gobreaker.StateClosed: 0, gobreaker.StateHalfOpen: 1, gobreaker.StateOpen: 2}[to])
			logger.Warn("API circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
}

// breakerOutcome is what a request's outcome means to the breaker: only
// connection errors, timeouts and 5xx count as failures; any other answer
// (including not_found, 429 and bad bodies) shows the API is up.
func breakerOutcome(ferr *fetchError) error {
	if ferr == nil {
		return nil
	}
	switch ferr.class {
	case ClassConnection, ClassTimeout, ClassServer:
		return errAPIFailing
	}
	return nil
}

// allow asks the breaker for a request; done reports its outcome.
func (f *Fetcher) allow() (done func(error), ok bool) {
	if f.breaker == nil {
		return func(error) {}, true
	}
	done, err := f.breaker.Allow()
	if err != nil { // gobreaker.ErrOpenState or ErrTooManyRequests (half-open)
		return nil, false
	}
	return done, true
}

// waitToken waits for a rate-limit token, on the fetcher's clock. It returns
// false, without spending the token, when the token comes at or after the
// deadline or ctx ends first.
func (f *Fetcher) waitToken(ctx context.Context, deadline time.Time) bool {
	if f.limiter == nil {
		return true
	}
	now := f.clock.Now()
	r := f.limiter.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	f.metrics.RateLimitWait.Observe(delay.Seconds())
	if delay <= 0 {
		return true
	}
	if !now.Add(delay).Before(deadline) {
		r.CancelAt(now)
		return false
	}
	select {
	case <-ctx.Done():
		r.CancelAt(f.clock.Now())
		return false
	case <-f.clock.After(delay):
		return true
	}
}

// NewHTTPClient returns a keep-alive client for the fetcher that never
// follows redirects (the fetcher only ever calls the configured base URL).
func NewHTTPClient(concurrency int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency
	tr.MaxIdleConnsPerHost = concurrency
	tr.MaxConnsPerHost = concurrency
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func trimSlash(p string) string {
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// Handle is the Watermill handler for influencer_fetch_tasks.
func (f *Fetcher) Handle(msg *message.Message) ([]*message.Message, error) {
	task, err := messages.DecodeTask(msg.Payload)
	if err != nil {
		return nil, err
	}
	batch := f.Fetch(msg.Context(), task)

	for _, fl := range batch.Failures {
		if fl.Class == ClassExpired {
			continue // counted as missed by the recorder, not dead-lettered
		}
		dl, err := messages.NewFetchDeadLetter(messages.FetchDeadLetter{Failure: fl, Shard: task.Shard})
		if err != nil {
			return nil, err
		}
		// The task's metadata (correlation id) travels on; the dead letter
		// belongs to the fetcher's span of the task's trace.
		messages.InheritMetadata(dl.Metadata, msg.Metadata)
		tracing.Inject(msg.Context(), dl.Metadata)
		if err := f.dlq.Publish(messages.TopicFetcherDLQ, dl); err != nil {
			return nil, fmt.Errorf("publish dead letter: %w", err)
		}
		f.metrics.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ).Inc()
	}
	out, err := messages.NewResult(batch)
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}

// Fetch fetches every pk of the task and returns the batch: samples for the
// pks fetched inside the minute, failures (with class and reason) for the rest.
func (f *Fetcher) Fetch(ctx context.Context, task messages.Task) influencer.Batch {
	batch := influencer.Batch{Minute: task.Minute, Shard: task.Shard}
	deadline := task.Minute.Add(time.Minute + f.cfg.DeadlineGrace)
	if task.Deadline.Before(deadline) {
		deadline = task.Deadline
	}
	now := f.clock.Now()
	if !now.Before(deadline) {
		f.metrics.TasksExpired.Inc()
		for _, pk := range task.PKs {
			batch.Failures = append(batch.Failures, influencer.Failure{PK: pk, Minute: task.Minute, Class: ClassExpired,
				Reason: fmt.Sprintf("task received at %s, after its deadline %s", now.UTC().Format(time.RFC3339), deadline.UTC().Format(time.RFC3339))})
		}
		f.metrics.FetchFailures.WithLabelValues(ClassExpired).Add(float64(len(task.PKs)))
		return batch
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := f.clock.AfterFunc(deadline.Sub(now), cancel)
	defer stop.Stop()

	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, pk := range uniq(task.PKs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, fl := f.fetchPK(ctx, pk, task.Minute, deadline)
			mu.Lock()
			defer mu.Unlock()
			if fl != nil {
				batch.Failures = append(batch.Failures, *fl)
				f.metrics.FetchFailures.WithLabelValues(fl.Class).Inc()
				return
			}
			batch.Samples = append(batch.Samples, s)
		}()
	}
	wg.Wait()
	slices.SortFunc(batch.Samples, func(a, b influencer.Sample) int { return cmpInt(a.PK, b.PK) })
	slices.SortFunc(batch.Failures, func(a, b influencer.Failure) int { return cmpInt(a.PK, b.PK) })
	return batch
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func uniq(pks []int64) []int64 {
	out := slices.Clone(pks)
	slices.Sort(out)
	return slices.Compact(out)
}

// fetchPK fetches one pk with retries until the deadline.
func (f *Fetcher) fetchPK(ctx context.Context, pk int64, minute, deadline time.Time) (influencer.Sample, *influencer.Failure) {
	fail := func(class, reason string, attempts int) (influencer.Sample, *influencer.Failure) {
		return influencer.Sample{}, &influencer.Failure{PK: pk, Minute: minute, Class: class, Reason: reason, Attempts: attempts}
	}
	// A value read before the minute starts belongs to the previous minute.
	if wait := minute.Sub(f.clock.Now()); wait > 0 {
		select {
		case <-ctx.Done():
			return fail(ClassExpired, "deadline passed before the minute started", 0)
		case <-f.clock.After(wait):
		}
	}
	backoff := f.cfg.RetryInitial
	var (
		last     *fetchError // the previous attempt's error
		attempts int         // requests sent (not those the breaker failed fast)
	)
	for {
		select {
		case f.sem <- struct{}{}:
		case <-ctx.Done():
			return fail(ClassExpired, "deadline passed while waiting for a fetch slot", attempts)
		}
		var (
			s    influencer.Sample
			ferr *fetchError
		)
		done, allowed := f.allow()
		switch {
		case !allowed:
			<-f.sem
			f.metrics.BreakerRejected.Inc()
			ferr = &fetchError{class: ClassCircuitOpen, reason: "circuit breaker open: the API is failing", retryable: true}
		case !f.waitToken(ctx, deadline):
			<-f.sem
			done(errNotAnAnswer)
			return fail(ClassExpired, "deadline passed while waiting for the rate limit", attempts)
		default:
			attempts++
			start := time.Now()
			s, ferr = f.get(ctx, pk)
			cutShort := ferr != nil && ctx.Err() != nil
			// The breaker learns the outcome before the slot is free, so
			// with one slot exactly BreakerFailures requests open it.
			if cutShort {
				done(errNotAnAnswer)
			} else {
				done(breakerOutcome(ferr))
			}
			<-f.sem
			class := "ok"
			if ferr != nil {
				class = ferr.class
			}
			f.metrics.FetchDuration.WithLabelValues(class).Observe(time.Since(start).Seconds())
			if cutShort {
				// The minute's deadline (or shutdown) cut this request short: its
				// "context canceled" is no connection error of the API.
				if last == nil {
					last = &fetchError{class: ClassTimeout, reason: "request still running"}
				}
				return fail(last.class, last.reason+"; gave up at the minute's deadline", attempts)
			}
		}
		now := f.clock.Now()
		last = ferr

		if ferr == nil {
			if !now.Before(deadline) {
				return fail(ClassExpired, "response arrived after the minute's deadline", attempts)
			}
			s.Minute, s.FetchedAt = minute, now
			return s, nil
		}
		if !ferr.retryable {
			return fail(ferr.class, ferr.reason, attempts)
		}
		// Exponential backoff with full jitter; Retry-After when longer.
		wait := time.Duration(rand.Int64N(int64(backoff) + 1))
		backoff = min(backoff*2, f.cfg.RetryMax)
		if ferr.retryAfter > wait {
			wait = ferr.retryAfter
		}
		if ctx.Err() != nil || !now.Add(wait).Before(deadline) {
			return fail(ferr.class, ferr.reason+"; gave up at the minute's deadline", attempts)
		}
		if ferr.class != ClassCircuitOpen {
			f.metrics.FetchRetries.Inc()
		}
		select {
		case <-ctx.Done():
			return fail(ferr.class, ferr.reason+"; gave up at the minute's deadline", attempts)
		case <-f.clock.After(wait):
		}
	}
}

type fetchError struct {
	class      string
	reason     string
	retryable  bool
	retryAfter time.Duration
}

// apiInfluencer is the API's response; pointers detect missing fields.
type apiInfluencer struct {
	PK             *int64  `json:"pk"`
	Username       *string `json:"username"`
	FollowerCount  *int64  `json:"followerCount"`
	FollowingCount *int64  `json:"followingCount"`
}

func (f *Fetcher) get(ctx context.Context, pk int64) (influencer.Sample, *fetchError) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+strconv.FormatInt(pk, 10), nil)
	if err != nil {
		return influencer.Sample{}, &fetchError{class: ClassClient, reason: err.Error()}
	}
	status, header, body, ferr := roundTrip(f.client, req, f.cfg.MaxBody)
	if ferr != nil {
		return influencer.Sample{}, ferr
	}
	if status == http.StatusOK {
		return decodeInfluencer(pk, body)
	}
	return influencer.Sample{}, statusError(status, header, body)
}

// roundTrip sends req and reads at most maxBody bytes of the answer. A
// transport failure (timeout, connection) and an oversized body are
// classified fetch errors.
func roundTrip(client *http.Client, req *http.Request, maxBody int64) (int, http.Header, []byte, *fetchError) {
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return 0, nil, nil, &fetchError{class: ClassTimeout, reason: "request timed out", retryable: true}
		}
		return 0, nil, nil, &fetchError{class: ClassConnection, reason: err.Error(), retryable: true}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
		resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return 0, nil, nil, &fetchError{class: ClassTimeout, reason: "timed out reading the body", retryable: true}
		}
		return 0, nil, nil, &fetchError{class: ClassConnection, reason: "reading body: " + err.Error(), retryable: true}
	}
	if int64(len(body)) > maxBody {
		return 0, nil, nil, &fetchError{class: ClassOversize, reason: fmt.Sprintf("HTTP %d body larger than %d bytes", resp.StatusCode, maxBody)}
	}
	return resp.StatusCode, resp.Header, body, nil
}

// statusError classifies an answer other than 200: 429 (retryable, with
// Retry-After), the real server's unknown pk, 5xx (retryable), other 4xx.
func statusError(status int, header http.Header, body []byte) *fetchError {
	switch {
	case status == http.StatusTooManyRequests:
		return &fetchError{class: ClassRateLimited, reason: "HTTP 429", retryable: true,
			retryAfter: parseRetryAfter(header.Get("Retry-After"), time.Now())}
	case isNotFound(status, body):
		return &fetchError{class: ClassNotFound, reason: "InfluencerNotFoundError"}
	case status >= 500:
		return &fetchError{class: ClassServer, reason: fmt.Sprintf("HTTP %d", status), retryable: true}
	default:
		return &fetchError{class: ClassClient, reason: fmt.Sprintf("HTTP %d", status)}
	}
}

// isNotFound recognises the real server's unknown-pk answer:
// HTTP 500 {"error":{"name":"InfluencerNotFoundError"}}.
func isNotFound(status int, body []byte) bool {
	if status != http.StatusInternalServerError && status != http.StatusNotFound {
		return false
	}
	var e struct {
		Error struct {
			Name string `json:"name"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error.Name == "InfluencerNotFoundError"
}

// decodeInfluencer parses and validates an API body for pk.
func decodeInfluencer(pk int64, body []byte) (influencer.Sample, *fetchError) {
	var in apiInfluencer
	if err := json.Unmarshal(body, &in); err != nil {
		return influencer.Sample{}, &fetchError{class: ClassMalformed, reason: "malformed body: " + truncate(err.Error(), 200)}
	}
	var missing []string
	if in.PK == nil {
		missing = append(missing, "pk")
	}
	if in.Username == nil {
		missing = append(missing, "username")
	}
	if in.FollowerCount == nil {
		missing = append(missing, "followerCount")
	}
	if in.FollowingCount == nil {
		missing = append(missing, "followingCount")
	}
	if len(missing) > 0 {
		return influencer.Sample{}, &fetchError{class: ClassMalformed, reason: fmt.Sprintf("body misses %v", missing)}
	}
	if *in.PK != pk {
		return influencer.Sample{}, &fetchError{class: ClassInvalid, reason: fmt.Sprintf("body is for pk %d, asked for %d", *in.PK, pk)}
	}
	s := influencer.Sample{PK: pk, Username: *in.Username, FollowerCount: *in.FollowerCount, FollowingCount: *in.FollowingCount}
	check := s
	check.Minute = time.Unix(0, 0).UTC() // minute is set by the caller
	if err := check.Validate(); err != nil {
		return influencer.Sample{}, &fetchError{class: ClassInvalid, reason: truncate(err.Error(), 300)}
	}
	return s, nil
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return min(time.Duration(secs)*time.Second, time.Minute)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), time.Minute)
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
