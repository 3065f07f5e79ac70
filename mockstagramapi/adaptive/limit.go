// Package adaptive finds how many requests the Mockstagram API can take at
// once and keeps the fetcher's in-flight requests under that number: an
// adaptive concurrency limit (a gradient on round-trip time against the
// API's no-load round-trip time, with a multiplicative decrease on overload
// answers), and a decorator of the fetcher's API that acquires a slot
// before each request and reports the outcome after it.
//
// A server that is past its capacity queues: every request in flight beyond
// what it serves at once only adds waiting time, until the callers' timeouts
// fire and their retries add load. The limit keeps that queue on our side,
// in arrival order, where waiting costs the API nothing and a request whose
// deadline passes is never sent.
package adaptive

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/metrics"
)

// ErrDeadline: no slot freed up before the caller's deadline.
var ErrDeadline = errors.New("deadline passed while waiting for a concurrency slot")

// Outcome is what a request's answer tells the limit.
type Outcome uint8

const (
	// Success: the API answered in time (a 200, or a permanent answer such as
	// an unknown pk: the API had the capacity to answer). Its RTT counts.
	Success Outcome = iota
	// Overload: the API is past its capacity (timeout, 429, 503, refused
	// connection). Enough of them in a window shrink the limit.
	Overload
	// Ignore: the answer says nothing about the API's capacity (the request
	// was not sent, or we cut it short).
	Ignore
)

// Config bounds and tunes a Limit. Zero fields take the defaults noted.
type Config struct {
	Min     int // smallest limit, >= 1
	Max     int // largest limit, >= Min
	Initial int // starting limit (default: Min, at least 8, at most Max)

	// Tolerance: a window whose median RTT is at most Tolerance × the no-load
	// RTT is healthy and lets the limit grow (default 2).
	Tolerance float64
	// Target: a window whose median RTT is at most Target is healthy whatever
	// the no-load RTT (default 25ms). It keeps the limit from shrinking for
	// latency that is small next to the request timeout (scheduling noise of a
	// busy client), while a queue of seconds is far above it.
	Target time.Duration
	// Smoothing is the weight of a window's new estimate (default 0.2).
	Smoothing float64
	// Backoff multiplies the limit on an overloaded window (default 0.9).
	Backoff float64
	// DropTolerance: a window is overloaded when at least this fraction of
	// its answers are Overload (default 0.2). Below it, sporadic failures
	// (one 5xx, one slow answer) are left to the retries.
	DropTolerance float64
	// A window of measurements closes on the first Release when it holds at
	// least WindowSamples answers and WindowMin has passed since it opened
	// (defaults 32 and 100ms), or WindowMax has passed (default 1s).
	WindowSamples int
	WindowMin     time.Duration
	WindowMax     time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Min < 1 || c.Max < c.Min {
		return c, fmt.Errorf("adaptive limit bounds %d..%d: want 1 <= min <= max", c.Min, c.Max)
	}
	if c.Initial == 0 {
		c.Initial = min(max(c.Min, 8), c.Max)
	}
	if c.Initial < c.Min || c.Initial > c.Max {
		return c, fmt.Errorf("adaptive limit initial %d not in [%d, %d]", c.Initial, c.Min, c.Max)
	}
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Tolerance, 2)
	def(&c.Smoothing, 0.2)
	def(&c.Backoff, 0.9)
	def(&c.DropTolerance, 0.2)
	if c.Target == 0 {
		c.Target = 25 * time.Millisecond
	}
	if c.WindowSamples == 0 {
		c.WindowSamples = 32
	}
	if c.WindowMin == 0 {
		c.WindowMin = 100 * time.Millisecond
	}
	if c.WindowMax == 0 {
		c.WindowMax = time.Second
	}
	switch {
	case c.Tolerance < 1 || math.IsNaN(c.Tolerance):
		return c, fmt.Errorf("adaptive limit tolerance %g: want >= 1", c.Tolerance)
	case !(c.Smoothing > 0 && c.Smoothing <= 1):
		return c, fmt.Errorf("adaptive limit smoothing %g: want in (0, 1]", c.Smoothing)
	case !(c.Backoff > 0 && c.Backoff < 1):
		return c, fmt.Errorf("adaptive limit backoff %g: want in (0, 1)", c.Backoff)
	case !(c.DropTolerance > 0 && c.DropTolerance <= 1):
		return c, fmt.Errorf("adaptive limit drop tolerance %g: want in (0, 1]", c.DropTolerance)
	case c.Target < 0 || c.WindowSamples < 1 || c.WindowMin < 0 || c.WindowMax < c.WindowMin:
		return c, fmt.Errorf("adaptive limit target %s, window %d samples %s..%s: want target >= 0, samples >= 1, 0 <= min <= max",
			c.Target, c.WindowSamples, c.WindowMin, c.WindowMax)
	}
	return c, nil
}

// Limit is an adaptive concurrency limit: Acquire blocks while the requests
// in flight are at the limit, first come first served; each Token's Release
// reports the request's outcome and round-trip time, and at the end of every
// window of measurements the limit moves:
//
//   - overloaded window (DropTolerance of its answers Overload): the limit is
//     multiplied by Backoff (multiplicative decrease);
//   - until the first window that is not healthy (slow start), a healthy
//     window that used at least half the limit doubles it;
//   - otherwise, with r the window's median RTT of successful answers and
//     r0 the no-load RTT (the smallest window median seen), the gradient
//     g = clamp(max(Tolerance·r0, Target)/r, 0.5, 1) and the new estimate is
//     limit·g + √limit (the √limit is queueing headroom, only granted when
//     the window used at least half the limit); the limit moves toward it by
//     Smoothing.
//
// The median, not the mean: a few slow answers in a window (an API whose
// every 50th answer takes 3 s while the rest take a millisecond) say
// nothing about its capacity, yet they make the mean 60 ms, and a limit on
// the mean shrank to Min under such faults (66 requests/s where 330 were
// needed). A server past its capacity queues every request: the median
// grows with the queue.
//
// The limit stays in [Min, Max]. At Min, r0 follows r upward (by Smoothing)
// too: what the API takes at our smallest load is its no-load RTT now.
//
// A single-threaded server at capacity C answers L requests in flight in
// L/C, so the limit settles where L/C ≈ max(Tolerance·r0, Target): the
// server stays busy, and its queue stays far from the request timeout.
type Limit struct {
	cfg    Config
	clock  clockwork.Clock
	m      *metrics.Pipeline
	mu     sync.Mutex
	limit  float64
	inUse  int        // slots held (granted and not released)
	queue  *list.List // of *waiter, oldest first
	noLoad time.Duration
	// slowStart: no window has been unhealthy yet, so the limit doubles per
	// window instead of adding √limit (TCP's slow start): a fetcher that
	// starts at its minute's peak reaches the API's capacity in a few windows.
	slowStart bool

	// The open window.
	winStart   time.Time
	winOK      int             // successes
	winRTTs    []time.Duration // their RTTs
	winDrops   int             // overloads
	winPeakUse int             // most slots held at once
}

type waiter struct {
	ready   chan struct{} // closed when the slot is granted
	granted bool          // under Limit.mu
}

// New returns a limit at cfg.Initial.
func New(cfg Config, clock clockwork.Clock, m *metrics.Pipeline) (*Limit, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Limit{cfg: cfg, clock: clock, m: m, limit: float64(cfg.Initial), queue: list.New(), winStart: clock.Now(), slowStart: true}
	m.AdaptiveLimit.Set(l.limit)
	return l, nil
}

// Token is a held slot. Release it exactly once.
type Token struct {
	l     *Limit
	start time.Time
}

// Current is the limit now (in flight at most its integer part, at least 1).
func (l *Limit) Current() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// InFlight is the number of slots held.
func (l *Limit) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inUse
}

func (l *Limit) slots() int { return max(int(l.limit), 1) }

// Acquire waits for a slot, after every earlier caller still waiting. It
// returns ctx's error when ctx ends first, and ErrDeadline when the deadline
// (on the limit's clock; zero is none) passes first; either way it holds
// nothing. The token's RTT runs from the moment the slot is granted.
func (l *Limit) Acquire(ctx context.Context, deadline time.Time) (Token, error) {
	if err := ctx.Err(); err != nil {
		return Token{}, err
	}
	l.mu.Lock()
	if l.queue.Len() == 0 && l.inUse < l.slots() {
		l.inUse++
		l.winPeakUse = max(l.winPeakUse, l.inUse)
		l.mu.Unlock()
		l.m.AdaptiveInFlight.Inc()
		l.m.AdaptiveWait.Observe(0)
		return Token{l: l, start: l.clock.Now()}, nil
	}
	start := l.clock.Now()
	if !deadline.IsZero() && !start.Before(deadline) {
		l.mu.Unlock()
		l.m.AdaptiveTimedOut.Inc()
		return Token{}, ErrDeadline
	}
	w := &waiter{ready: make(chan struct{})}
	e := l.queue.PushBack(w)
	l.mu.Unlock()
	l.m.AdaptiveWaiting.Inc()
	defer l.m.AdaptiveWaiting.Dec()

	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := l.clock.NewTimer(deadline.Sub(start))
		defer t.Stop()
		expired = t.Chan()
	}
	var err error
	select {
	case <-w.ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-expired:
		err = ErrDeadline
	}
	if err != nil {
		l.mu.Lock()
		granted := w.granted
		if !granted {
			l.queue.Remove(e)
		}
		l.mu.Unlock()
		if !granted {
			if errors.Is(err, ErrDeadline) {
				l.m.AdaptiveTimedOut.Inc()
			}
			return Token{}, err
		}
		// Granted as we gave up: the slot is ours, so hand it on unused.
		l.release(false, Ignore, 0)
		return Token{}, err
	}
	now := l.clock.Now()
	l.m.AdaptiveWait.Observe(now.Sub(start).Seconds())
	return Token{l: l, start: now}, nil
}

// Release gives the slot back with the request's outcome; the RTT is the
// time since the slot was granted.
func (t Token) Release(o Outcome) {
	t.l.release(true, o, t.l.clock.Since(t.start))
}

// release frees a slot (measured: it carried a request) and grants the
// slots free under the (possibly new) limit to the oldest waiters.
func (l *Limit) release(measured bool, o Outcome, rtt time.Duration) {
	l.mu.Lock()
	l.inUse--
	if measured {
		l.observe(o, rtt)
	}
	granted := l.grant()
	l.mu.Unlock()
	l.m.AdaptiveInFlight.Add(float64(granted - 1))
}

// grant hands free slots to the oldest waiters; it returns how many.
func (l *Limit) grant() int {
	n := 0
	for l.inUse < l.slots() && l.queue.Len() > 0 {
		w := l.queue.Remove(l.queue.Front()).(*waiter)
		w.granted = true
		close(w.ready)
		l.inUse++
		n++
	}
	l.winPeakUse = max(l.winPeakUse, l.inUse)
	return n
}

// observe adds an outcome to the window and closes it when it is full.
func (l *Limit) observe(o Outcome, rtt time.Duration) {
	switch o {
	case Success:
		l.winOK++
		l.winRTTs = append(l.winRTTs, rtt)
	case Overload:
		l.winDrops++
		l.m.AdaptiveOverloads.Inc()
	}
	now := l.clock.Now()
	age := now.Sub(l.winStart)
	n := l.winOK + l.winDrops
	full := n >= l.cfg.WindowSamples && age >= l.cfg.WindowMin // enough answers, long enough
	stale := n > 0 && age >= l.cfg.WindowMax                   // some answers, window at its longest
	if !full && !stale {
		return
	}
	l.update()
	l.winStart, l.winOK, l.winRTTs, l.winDrops, l.winPeakUse = now, 0, l.winRTTs[:0], 0, l.inUse
	l.m.AdaptiveLimit.Set(l.limit)
}

// update moves the limit at the end of a window.
func (l *Limit) update() {
	n := l.winOK + l.winDrops
	if float64(l.winDrops) >= l.cfg.DropTolerance*float64(n) {
		l.limit = max(l.limit*l.cfg.Backoff, float64(l.cfg.Min))
		l.slowStart = false
		return
	}
	if l.winOK == 0 {
		return
	}
	slices.Sort(l.winRTTs)
	r := l.winRTTs[len(l.winRTTs)/2]
	switch {
	case l.noLoad == 0 || r < l.noLoad:
		l.noLoad = r
	case l.limit <= float64(l.cfg.Min):
		l.noLoad += time.Duration(float64(r-l.noLoad) * l.cfg.Smoothing)
	}
	healthy := max(time.Duration(l.cfg.Tolerance*float64(l.noLoad)), l.cfg.Target)
	g := min(max(float64(healthy)/float64(max(r, 1)), 0.5), 1)
	used := l.winPeakUse*2 >= l.slots()
	if g < 1 {
		l.slowStart = false
	} else if l.slowStart {
		if used {
			l.limit = min(l.limit*2, float64(l.cfg.Max))
		}
		return
	}
	estimate := l.limit * g
	if used {
		estimate += math.Sqrt(l.limit)
	}
	next := l.limit + (estimate-l.limit)*l.cfg.Smoothing
	l.limit = min(max(next, float64(l.cfg.Min)), float64(l.cfg.Max))
}
