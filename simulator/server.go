// Package simulator serves a fast simulation of the Mockstagram API for any pk
// range, in random-walk or deterministic mode, with fault injection (5xx, 429,
// latency and spikes, timeouts, malformed and oversized bodies, unknown pks)
// an optional bound on concurrent GETs and an optional capacity that queues
// requests like the real single-process server.
//
// Routes, exactly like the real server:
//
//	GET  /api/v1/influencers/{pk}
//	POST /api/v1/influencers/is_suspicious
//
// Anything else is 404.
//
// Serve it with net/http, or with HTTPServer, which answers the plain GETs of
// a Server without faults itself at less than half of net/http's CPU per
// request.
package simulator

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

const (
	pathPrefix     = "/api/v1/influencers/"
	suspiciousPath = "is_suspicious"

	// NotFoundBody is the real server's answer, with HTTP 500, for an unknown pk.
	NotFoundBody = `{"error":{"name":"InfluencerNotFoundError"}}`

	// OversizeBytes is the minimum size of an oversized body.
	OversizeBytes = 8 << 20
	// HugeHeaderBytes is the minimum size of a huge response header.
	HugeHeaderBytes = 9 << 20
	// AbsurdRetryAfter is the Retry-After of AbsurdRetryAfterRate answers.
	AbsurdRetryAfter = "99999999999999999"

	maxPKDigits = 18 // any 18-digit decimal fits in int64
)

// Server is an http.Handler simulating the Mockstagram API. It is safe for
// concurrent use.
type Server struct {
	cfg   Config
	clock clockwork.Clock

	walk       *walk         // random-walk state; nil in deterministic mode
	queue      *queue        // Capacity's single-server queue; nil when unlimited
	sem        chan struct{} // GET slots; nil when unlimited
	faultRate  float64       // sum of the exclusive response-fault rates
	retryAfter []string      // Retry-After header value
	padding    []byte        // OversizeBytes of filler; nil when OversizeRate is 0
	hugeHeader []string      // HugeHeaderBytes of header value; nil when HugeHeaderRate is 0
	absurd     []string      // AbsurdRetryAfter

	// Immutable header values shared by all responses (len == cap, so an
	// append by a middleware copies instead of writing into them).
	ctJSON, ctHTML, ctText, nosniff []string

	bufs sync.Pool // *[]byte response buffers

	requests  atomic.Int64 // GETs received
	posts     atomic.Int64 // is_suspicious requests received
	inFlight  atomic.Int64 // GETs holding a slot (only tracked with MaxInFlight)
	peakSlots atomic.Int64 // highest inFlight seen
}

var _ http.Handler = (*Server)(nil)

// New validates cfg, applies its defaults and returns a Server that reads time
// from clock (a clockwork.FakeClock in tests; clockwork.NewRealClock() else).
func New(cfg Config, clock clockwork.Clock) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:        cfg,
		clock:      clock,
		faultRate:  cfg.responseFaultRate(),
		retryAfter: []string{strconv.FormatInt(int64((cfg.RetryAfter+time.Second-1)/time.Second), 10)},
		ctJSON:     []string{"application/json"},
		ctHTML:     []string{"text/html; charset=utf-8"},
		ctText:     []string{"text/plain; charset=utf-8"},
		nosniff:    []string{"nosniff"},
		bufs: sync.Pool{New: func() any {
			b := make([]byte, 0, 256)
			return &b
		}},
	}
	if cfg.Mode == RandomWalk {
		s.walk = newWalk(cfg.Range.From, cfg.Range.To, cfg.Seed)
	}
	s.queue = newQueue(cfg.Capacity, clock)
	if cfg.MaxInFlight > 0 {
		s.sem = make(chan struct{}, cfg.MaxInFlight)
	}
	if cfg.OversizeRate > 0 {
		s.padding = []byte(strings.Repeat("x", OversizeBytes))
	}
	if cfg.HugeHeaderRate > 0 {
		s.hugeHeader = []string{strings.Repeat("x", HugeHeaderBytes)}
	}
	s.absurd = []string{AbsurdRetryAfter}
	return s, nil
}

// Requests is the number of GETs of an influencer received so far, whatever
// their answer.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Known reports whether pk is answered with data: it is in the range and not
// withheld by UnknownRate.
func (s *Server) Known(pk int64) bool {
	if pk < s.cfg.Range.From || pk > s.cfg.Range.To {
		return false
	}
	return s.cfg.UnknownRate == 0 ||
		unit(mix64(uint64(pk)^uint64(s.cfg.Seed)*saltFollower^saltUnknown)) >= s.cfg.UnknownRate
}

// ServeHTTP routes without allocating: GET (or HEAD) of an influencer, POST of
// is_suspicious, 404 for anything else.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, pathPrefix)
	if !ok || rest == "" || strings.IndexByte(rest, '/') >= 0 {
		s.writeRouteNotFound(w)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.serveGet(w, r, rest)
	case http.MethodPost:
		if rest != suspiciousPath {
			s.writeRouteNotFound(w)
			return
		}
		s.serveSuspicious(w, r)
	default:
		s.writeRouteNotFound(w)
	}
}

// fault is the outcome of the per-request fault draw.
type fault uint8

const (
	faultNone fault = iota
	faultTimeout
	faultError
	faultRateLimit
	faultMalformed
	faultOversize
	faultHugeHeader
	faultAbsurdRetryAfter
)

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, rawPK string) {
	n := s.requests.Add(1)
	rnd := newRNG(s.cfg.Seed, n)
	ctx := r.Context()

	if s.queue != nil && !s.queue.wait(ctx) {
		return // the client gave up while queued
	}
	if s.sem != nil {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return // the client gave up while queued
		}
		s.enter()
		defer s.leave()
	}
	if err := s.sleep(ctx, s.latency(&rnd)); err != nil {
		return
	}

	f := s.drawFault(&rnd)
	switch f {
	case faultTimeout:
		<-ctx.Done()
		return
	case faultError:
		s.writeServerError(w, &rnd)
		return
	case faultRateLimit:
		s.writeRateLimited(w, s.retryAfter)
		return
	case faultAbsurdRetryAfter:
		s.writeRateLimited(w, s.absurd)
		return
	}

	pk, ok := parsePK(rawPK)
	if !ok || !s.Known(pk) {
		s.writeNotFound(w)
		return
	}
	follower, following := s.counts(pk, &rnd)
	switch f {
	case faultMalformed:
		s.writeMalformed(w, pk, follower, following, &rnd)
	case faultOversize:
		s.writeOversize(w, pk, follower, following)
	case faultHugeHeader:
		w.Header()["X-Padding"] = s.hugeHeader
		s.writeSample(w, pk, follower, following)
	default:
		s.writeSample(w, pk, follower, following)
	}
}

// counts answers a known pk: the next random-walk step, or the deterministic
// counts of the current minute.
func (s *Server) counts(pk int64, rnd *rng) (follower, following int64) {
	if s.walk != nil {
		return s.walk.step(pk, rnd)
	}
	return Counts(pk, s.clock.Now())
}

// plain reports whether a GET is answered at once, without drawing from its
// random generator before the counts: no queue, no latency, no faults. Only
// then may the lean HTTP server answer GETs itself.
func (s *Server) plain() bool {
	return s.queue == nil && s.sem == nil && s.faultRate == 0 &&
		s.cfg.Latency == 0 && s.cfg.LatencyJitter == 0 && s.cfg.SpikeRate == 0
}

// latency draws the delay of one GET.
func (s *Server) latency(rnd *rng) time.Duration {
	d := s.cfg.Latency + rnd.durationBelow(s.cfg.LatencyJitter)
	if s.cfg.SpikeRate > 0 && rnd.float() < s.cfg.SpikeRate {
		d += s.cfg.SpikeLatency
	}
	return d
}

// drawFault picks at most one response fault; the rates partition [0, 1).
func (s *Server) drawFault(rnd *rng) fault {
	if s.faultRate == 0 {
		return faultNone
	}
	u := rnd.float()
	for _, c := range [...]struct {
		f    fault
		rate float64
	}{
		{faultTimeout, s.cfg.TimeoutRate},
		{faultError, s.cfg.ErrorRate},
		{faultRateLimit, s.cfg.RateLimitRate},
		{faultMalformed, s.cfg.MalformedRate},
		{faultOversize, s.cfg.OversizeRate},
		{faultHugeHeader, s.cfg.HugeHeaderRate},
		{faultAbsurdRetryAfter, s.cfg.AbsurdRetryAfterRate},
	} {
		if u < c.rate {
			return c.f
		}
		u -= c.rate
	}
	return faultNone
}

// sleep waits d on the server's clock, or until ctx is done.
func (s *Server) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := s.clock.NewTimer(d)
	select {
	case <-t.Chan():
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}

func (s *Server) enter() {
	n := s.inFlight.Add(1)
	for {
		peak := s.peakSlots.Load()
		if n <= peak || s.peakSlots.CompareAndSwap(peak, n) {
			return
		}
	}
}

func (s *Server) leave() {
	s.inFlight.Add(-1)
	<-s.sem
}

// parsePK accepts a positive decimal integer without sign, as a path segment.
func parsePK(s string) (int64, bool) {
	if len(s) == 0 || len(s) > maxPKDigits {
		return 0, false
	}
	var pk int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		pk = pk*10 + int64(c-'0')
	}
	return pk, pk > 0
}
