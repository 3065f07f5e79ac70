// Package mockstagramapi is the client of the Mockstagram API: the requests
// (GET an influencer, POST is_suspicious), their decoding and validation,
// the classification of failures (permanent, transient, rate limited with
// Retry-After), and the protections of the API: a rate limit and a circuit
// breaker. Retries are the caller's: it knows the deadline of its work.
package mockstagramapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/metrics"
)

// Limits of an answer.
const (
	// MaxResponseHeaderBytes bounds an answer's status line and headers; a
	// larger answer is a permanent failure (class oversize).
	MaxResponseHeaderBytes = 16 << 10
	// DefaultMaxBody is the default bound of an influencer answer's body.
	DefaultMaxBody = 64 << 10
	// maxSuspicionBody bounds an is_suspicious answer.
	maxSuspicionBody = 4 << 10
	// maxDrain is how much of an unread body is read to keep the connection.
	maxDrain = 64 << 10
)

// Config configures a client.
type Config struct {
	// BaseURL is http(s)://[user[:password]@]host[:port][/path], the only
	// host ever called; a user and password are sent as basic auth with
	// every request and are in no error message.
	BaseURL     string
	Concurrency int           // requests in flight at most; sizes the connection pool
	Timeout     time.Duration // per request
	MaxBody     int64         // largest accepted influencer body (0: DefaultMaxBody)

	// RateLimit is the most requests per second of this client (all its
	// callers together); 0 is unlimited. See NewRateLimiter.
	RateLimit float64
	// BreakerFailures consecutive API failures (connection errors and 5xx;
	// not not_found, 429 or bad bodies, which prove the API answers, nor
	// timeouts, which may be our own overload and are the concurrency
	// limit's business) open the circuit breaker; 0 disables it. While open, requests fail
	// fast with class circuit_open; after BreakerCooldown one probe request
	// goes through, and its success closes the breaker again.
	BreakerFailures int
	BreakerCooldown time.Duration
}

// Client calls the Mockstagram API. It is safe for concurrent use.
//
// The per-minute GET goes through a fasthttp HostClient (a fraction of
// net/http's CPU per request, pooled request and response objects, no
// goroutine per connection); is_suspicious, slow and rare, stays on net/http.
type Client struct {
	cfg       Config
	suspicion string // the is_suspicious URL
	http      *http.Client
	fast      *fasthttp.HostClient
	prefix    string // scheme://host/path/api/v1/influencers/ : the pk follows
	auth      string // the Authorization header of the base URL's user, or empty
	clock     clockwork.Clock
	metrics   *metrics.Pipeline
	limiter   *rate.Limiter                              // nil: unlimited
	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}] // nil: disabled
	bufs      sync.Pool                                  // *bytes.Buffer for is_suspicious bodies
	calls     sync.Pool                                  // *getCall
	durations sync.Map                                   // class -> FetchDuration's prometheus.Observer
}

// getCall is the pooled state of one GET.
type getCall struct {
	req  fasthttp.Request
	resp fasthttp.Response
	uri  []byte
}

// userAgent is sent with every request.
const userAgent = "mockstagram-pipeline"

// New creates a client with its own keep-alive connection pool, sized for
// cfg.Concurrency, that never follows redirects. The rate limit waits on
// clock; the breaker's cooldown is real time (gobreaker has no clock).
func New(cfg Config, clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mockstagram API base URL %q: want http(s)://host[:port]", WithoutUserinfo(cfg.BaseURL))
	}
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("mockstagram API concurrency %d < 1", cfg.Concurrency)
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("mockstagram API timeout %s: want > 0", cfg.Timeout)
	}
	if math.IsNaN(cfg.RateLimit) || cfg.RateLimit < 0 {
		return nil, fmt.Errorf("mockstagram API rate limit %g: want >= 0 (0 = unlimited)", cfg.RateLimit)
	}
	if cfg.BreakerFailures < 0 || (cfg.BreakerFailures > 0 && cfg.BreakerCooldown <= 0) {
		return nil, fmt.Errorf("mockstagram API breaker %d failures / cooldown %s: want failures >= 0 (0 = off) and a positive cooldown", cfg.BreakerFailures, cfg.BreakerCooldown)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	base := u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/") + "/api/v1/influencers/"
	c := &Client{cfg: cfg, suspicion: base + "is_suspicious", prefix: base,
		http: newHTTPClient(cfg.Concurrency), fast: newHostClient(u, cfg),
		auth: basicAuth(u.User), clock: clock, metrics: m,
		bufs:  sync.Pool{New: func() any { return new(bytes.Buffer) }},
		calls: sync.Pool{New: func() any { return new(getCall) }}}
	if cfg.RateLimit > 0 {
		c.limiter = NewRateLimiter(cfg.RateLimit)
	}
	if cfg.BreakerFailures > 0 {
		c.breaker = newBreaker(cfg.BreakerFailures, cfg.BreakerCooldown, logger, m)
	}
	return c, nil
}

// basicAuth is the Authorization header value of a URL's user and
// password (RFC 7617), or empty without a user.
func basicAuth(user *url.Userinfo) string {
	if user == nil {
		return ""
	}
	pass, _ := user.Password()
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user.Username()+":"+pass))
}

// WithoutUserinfo is raw without its user and password, to be printed or
// logged: the one way a URL that may carry credentials (the base URL's
// basic auth) is shown, here and in config's errors. From a raw URL that
// does not parse, what lies between "//" and the last "@" is cut.
func WithoutUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		if u.User == nil {
			return raw
		}
		u.User = nil
		return u.String()
	}
	if i := strings.Index(raw, "//"); i >= 0 {
		if j := strings.LastIndex(raw, "@"); j > i {
			return raw[:i+2] + raw[j+1:]
		}
	}
	return raw
}

// newHTTPClient returns a keep-alive client for concurrency requests in
// flight that never follows redirects (only the configured base URL is ever
// called) and refuses answers with oversized headers.
func newHTTPClient(concurrency int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency
	tr.MaxIdleConnsPerHost = concurrency
	tr.MaxConnsPerHost = concurrency
	tr.IdleConnTimeout = 90 * time.Second
	tr.MaxResponseHeaderBytes = MaxResponseHeaderBytes
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// idleConnTimeout closes keep-alive connections unused for that long.
const idleConnTimeout = 30 * time.Second

// newHostClient returns the GET path's connection pool to u's host: at most
// cfg.Concurrency connections (a caller beyond them waits for one, within
// its timeout), the status line and headers bounded by the read buffer (a
// larger head is refused: class oversize), the body by cfg.MaxBody. Do never
// follows redirects; a request is sent again only when a kept-alive
// connection turns out to be closed before any answer.
func newHostClient(u *url.URL, cfg Config) *fasthttp.HostClient {
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	return &fasthttp.HostClient{
		Addr:                          addr,
		IsTLS:                         u.Scheme == "https",
		Name:                          userAgent,
		MaxConns:                      cfg.Concurrency,
		MaxConnWaitTimeout:            cfg.Timeout,
		MaxIdleConnDuration:           idleConnTimeout,
		ReadBufferSize:                MaxResponseHeaderBytes,
		MaxResponseBodySize:           int(cfg.MaxBody),
		ReadTimeout:                   cfg.Timeout,
		WriteTimeout:                  cfg.Timeout,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: true,
		RetryIfErr:                    retryIfClosed,
		// net's dialer (the request's timeout bounds the dial), not
		// fasthttp's, whose DNS cache runs a goroutine for the process's life.
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
			return d.Dial("tcp", addr)
		},
	}
}

// retryIfClosed lets fasthttp send a request again only after a first
// attempt whose connection was closed before any answer (a kept-alive
// connection the server had just closed), like net/http; never after a
// timeout, an oversized answer or anything the server said.
func retryIfClosed(_ *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	return false, attempts == 1 && (errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF))
}

// CloseIdleConnections closes the pool's idle connections.
func (c *Client) CloseIdleConnections() {
	c.fast.CloseIdleConnections()
	c.http.CloseIdleConnections()
}

// Influencer fetches pk's current values. The sample has no minute and no
// fetch time (the caller sets them). Unless it is zero, deadline is the
// latest moment the request may start: a rate-limit token that comes at or
// after it is not waited for (ErrRateLimitDeadline). Any other error is an
// *Error; class circuit_open means the request was not sent.
//
// A request that was sent runs until its answer or the timeout (bounded by
// ctx's deadline, if any): an ended ctx does not abort it, but its outcome
// then counts neither way for the breaker.
func (c *Client) Influencer(ctx context.Context, pk int64, deadline time.Time) (influencer.Sample, error) {
	done, ok := c.allow()
	if !ok {
		c.metrics.BreakerRejected.Inc()
		return influencer.Sample{}, errCircuitOpen
	}
	if !c.waitToken(ctx, deadline) {
		done(errNotAnAnswer)
		return influencer.Sample{}, ErrRateLimitDeadline
	}
	start := time.Now()
	s, e := c.getInfluencer(ctx, pk, start)
	// The breaker learns the outcome before the caller frees its slot, so
	// with one slot exactly BreakerFailures requests open it.
	if e != nil && ctx.Err() != nil {
		done(errNotAnAnswer) // the caller cut it short: no failure of the API
	} else {
		done(breakerOutcome(e))
	}
	class := "ok"
	if e != nil {
		class = e.Class
	}
	c.observe(class, time.Since(start))
	if e != nil {
		return influencer.Sample{}, e
	}
	return s, nil
}

// errCircuitOpen is the error of a request the open breaker failed fast.
var errCircuitOpen = &Error{Class: ClassCircuitOpen, Reason: "circuit breaker open: the API is failing", Retryable: true}

// observe records a request's duration; the child of each class is looked
// up once (a series appears with its first observation).
func (c *Client) observe(class string, d time.Duration) {
	o, ok := c.durations.Load(class)
	if !ok {
		o, _ = c.durations.LoadOrStore(class, c.metrics.FetchDuration.WithLabelValues(class))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

func (c *Client) getInfluencer(ctx context.Context, pk int64, start time.Time) (influencer.Sample, *Error) {
	end := start.Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	call := c.calls.Get().(*getCall)
	defer c.calls.Put(call)
	call.uri = strconv.AppendInt(append(call.uri[:0], c.prefix...), pk, 10)
	call.req.Reset()
	call.req.SetRequestURIBytes(call.uri)
	if c.auth != "" {
		call.req.Header.Set("Authorization", c.auth)
	}
	err := c.fast.DoDeadline(&call.req, &call.resp, end)
	status := call.resp.StatusCode()
	if err != nil {
		return influencer.Sample{}, fastError(err, status, c.cfg.MaxBody)
	}
	body := call.resp.Body()
	var s influencer.Sample
	var e *Error
	if status == http.StatusOK {
		s, e = decodeInfluencer(pk, body)
	} else {
		e = statusError(status, string(call.resp.Header.Peek("Retry-After")), body, c.clock.Now())
	}
	return s, e
}

// fastError classifies a failure of a fasthttp round trip.
func fastError(err error, status int, maxBody int64) *Error {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return &Error{Class: ClassOversize, Reason: fmt.Sprintf("HTTP %d body larger than %d bytes", status, maxBody)}
	case errors.As(err, &small):
		return &Error{Class: ClassOversize, Reason: fmt.Sprintf("response headers larger than %d bytes", MaxResponseHeaderBytes)}
	case isTimeout(err) || errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout):
		return errTimedOut
	}
	return &Error{Class: ClassConnection, Reason: truncate(err.Error(), 300), Retryable: true}
}

// errTimedOut is the error of a request without answer in its timeout.
var errTimedOut = &Error{Class: ClassTimeout, Reason: "request timed out", Retryable: true}

// IsSuspicious asks is_suspicious about a candidate's latest values. An
// error is an *Error. It uses neither the rate limit nor the breaker (they
// guard the per-minute fetches); give it a client of its own.
func (c *Client) IsSuspicious(ctx context.Context, cand influencer.SuspicionCandidate) (bool, error) {
	start := time.Now()
	suspicious, e := c.postSuspicion(ctx, cand)
	c.metrics.SuspicionDuration.Observe(time.Since(start).Seconds())
	if e != nil {
		return false, e
	}
	return suspicious, nil
}

func (c *Client) postSuspicion(ctx context.Context, cand influencer.SuspicionCandidate) (bool, *Error) {
	body, err := json.Marshal(suspicionRequest(cand))
	if err != nil {
		return false, &Error{Class: ClassInvalid, Reason: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.suspicion, bytes.NewReader(body))
	if err != nil {
		return false, &Error{Class: ClassClient, Reason: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	buf := c.bufs.Get().(*bytes.Buffer)
	defer c.bufs.Put(buf)
	status, header, e := c.roundTrip(req, buf, maxSuspicionBody)
	if e != nil {
		return false, e
	}
	if status != http.StatusOK {
		return false, statusError(status, header.Get("Retry-After"), buf.Bytes(), c.clock.Now())
	}
	return decodeSuspicion(cand.PK, buf.Bytes())
}

// roundTrip sends req and reads at most maxBody bytes of the answer into
// buf (reset first). A transport failure (timeout, connection), oversized
// headers and an oversized body are classified errors.
func (c *Client) roundTrip(req *http.Request, buf *bytes.Buffer, maxBody int64) (int, http.Header, *Error) {
	buf.Reset()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, transportError(err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain)) // keep the connection reusable
		resp.Body.Close()
	}()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1)); err != nil {
		return 0, nil, bodyError(err)
	}
	if int64(buf.Len()) > maxBody {
		return 0, nil, &Error{Class: ClassOversize, Reason: fmt.Sprintf("HTTP %d body larger than %d bytes", resp.StatusCode, maxBody)}
	}
	return resp.StatusCode, resp.Header, nil
}

// transportError classifies a failure of the round trip.
func transportError(err error) *Error {
	switch {
	case strings.Contains(err.Error(), "server response headers exceeded"):
		// net/http has no sentinel for it; the answer is refused, not retried.
		return &Error{Class: ClassOversize, Reason: fmt.Sprintf("response headers larger than %d bytes", MaxResponseHeaderBytes)}
	case isTimeout(err):
		return &Error{Class: ClassTimeout, Reason: "request timed out", Retryable: true}
	}
	return &Error{Class: ClassConnection, Reason: err.Error(), Retryable: true}
}

// bodyError classifies a failure to read an answer's body.
func bodyError(err error) *Error {
	if isTimeout(err) {
		return &Error{Class: ClassTimeout, Reason: "timed out reading the body", Retryable: true}
	}
	return &Error{Class: ClassConnection, Reason: "reading body: " + err.Error(), Retryable: true}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
