package simulator

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/mockstagram/pipeline/influencer"
)

// Mode selects how the simulator produces follower counts.
type Mode string

// Modes.
const (
	// RandomWalk behaves like the real server: every GET moves the pk's counts
	// by a small random step.
	RandomWalk Mode = "random-walk"
	// Deterministic answers Counts(pk, minute): a pure function, so tests and
	// benchmarks can check every stored value exactly.
	Deterministic Mode = "deterministic"
)

// Defaults applied by New to zero-valued fields.
const (
	DefaultRetryAfter         = time.Second
	DefaultSuspiciousDelayMin = time.Second
	DefaultSuspiciousDelayMax = 10 * time.Second

	// maxCapacity keeps the service time of Capacity at least a nanosecond.
	maxCapacity = 1e9

	// maxRangeSize matches influencer.ParseRange.
	maxRangeSize = 10_000_000
)

// Config configures a Server. The zero value of every field except Range is
// usable: random-walk mode, no faults, no latency, unlimited concurrency and capacity.
//
// The response faults (TimeoutRate, ErrorRate, RateLimitRate, MalformedRate,
// OversizeRate, HugeHeaderRate, AbsurdRetryAfterRate) are mutually exclusive outcomes of one draw per GET, so their
// rates are exact fractions and must sum to at most 1. UnknownRate and
// SpikeRate are independent of them.
type Config struct {
	Mode  Mode             // default RandomWalk
	Range influencer.Range // known pks; any other pk is answered not found
	Seed  int64            // random-walk start values and fault-injection randomness

	ErrorRate     float64       // fraction of GETs answered 500/502/503 with a non-JSON body
	RateLimitRate float64       // fraction of GETs answered 429 with Retry-After
	RetryAfter    time.Duration // Retry-After value, rounded up to whole seconds (>= 1); default 1s

	Latency       time.Duration // base latency added to every GET
	LatencyJitter time.Duration // plus uniform [0, LatencyJitter)
	SpikeRate     float64       // fraction of GETs that get SpikeLatency extra
	SpikeLatency  time.Duration

	// TimeoutRate is the fraction of GETs that hang until the request context
	// is done (the client gives up). http.Server.Shutdown waits for them: give
	// the server a BaseContext that is cancelled on shutdown, or use Close.
	TimeoutRate   float64
	MalformedRate float64 // fraction of GETs answered 200 with a body that is not a valid sample
	OversizeRate  float64 // fraction of GETs answered 200 with a body of more than 8 MiB
	// HugeHeaderRate is the fraction of GETs answered 200 with a valid sample
	// and a response header of more than HugeHeaderBytes (a hostile server).
	HugeHeaderRate float64
	// AbsurdRetryAfterRate is the fraction of GETs answered 429 with
	// "Retry-After: 99999999999999999" (overflows a naive seconds-to-duration).
	AbsurdRetryAfterRate float64
	// UnknownRate is the fraction of the pks in Range that are answered as not
	// found anyway (a fixed subset chosen by a hash of pk and Seed, like
	// deleted accounts). Server.Known reports the choice.
	UnknownRate float64

	// MaxInFlight bounds the GETs served concurrently (0 = unlimited); the
	// others wait for a slot, like requests queued at a single-process server.
	MaxInFlight int

	// Capacity makes the server behave like the real single-process server:
	// it serves this many requests per second (GETs and is_suspicious), one at
	// a time in arrival order, each taking 1/Capacity seconds; the others
	// queue, so latency grows with the queue when the offered load exceeds
	// Capacity (0 = unlimited). A client that gives up stops waiting, but the
	// slot it reserved stays spent. Applied before MaxInFlight and Latency.
	Capacity float64

	// SuspiciousDelayMin and SuspiciousDelayMax bound the latency of
	// is_suspicious. Both zero selects 1s..10s; for an (almost) instant answer
	// set SuspiciousDelayMax to time.Nanosecond.
	SuspiciousDelayMin, SuspiciousDelayMax time.Duration
	// SuspiciousNoDelay answers is_suspicious at once, whatever the delays
	// (tests on a fake clock).
	SuspiciousNoDelay bool
}

// Validate reports every problem of the configuration, joined, or nil.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case "", RandomWalk, Deterministic:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %q or %q", c.Mode, RandomWalk, Deterministic))
	}
	switch {
	case c.Range.From <= 0 || c.Range.To < c.Range.From:
		errs = append(errs, fmt.Errorf("range %d-%d: want 0 < From <= To", c.Range.From, c.Range.To))
	case c.Range.To-c.Range.From >= maxRangeSize:
		errs = append(errs, fmt.Errorf("range %s: more than %d pks", c.Range, maxRangeSize))
	}
	rates := []struct {
		name string
		v    float64
	}{
		{"error rate", c.ErrorRate},
		{"rate-limit rate", c.RateLimitRate},
		{"spike rate", c.SpikeRate},
		{"timeout rate", c.TimeoutRate},
		{"malformed rate", c.MalformedRate},
		{"oversize rate", c.OversizeRate},
		{"huge header rate", c.HugeHeaderRate},
		{"absurd retry-after rate", c.AbsurdRetryAfterRate},
		{"unknown rate", c.UnknownRate},
	}
	validRates := true
	for _, r := range rates {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			errs = append(errs, fmt.Errorf("%s %v: want a fraction in [0, 1]", r.name, r.v))
			validRates = false
		}
	}
	if sum := c.responseFaultRate(); validRates && sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("timeout, error, rate-limit, malformed, oversize, huge-header and absurd-retry-after rates sum to %v: want at most 1", sum))
	}
	durations := []struct {
		name string
		v    time.Duration
	}{
		{"retry-after", c.RetryAfter},
		{"latency", c.Latency},
		{"latency jitter", c.LatencyJitter},
		{"spike latency", c.SpikeLatency},
		{"suspicious delay min", c.SuspiciousDelayMin},
		{"suspicious delay max", c.SuspiciousDelayMax},
	}
	for _, d := range durations {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must not be negative", d.name, d.v))
		}
	}
	if c.SuspiciousDelayMin >= 0 && c.SuspiciousDelayMax >= 0 &&
		(c.SuspiciousDelayMin != 0 || c.SuspiciousDelayMax != 0) && c.SuspiciousDelayMax < c.SuspiciousDelayMin {
		errs = append(errs, fmt.Errorf("suspicious delay max %s is less than min %s", c.SuspiciousDelayMax, c.SuspiciousDelayMin))
	}
	if math.IsNaN(c.Capacity) || c.Capacity < 0 || c.Capacity > maxCapacity {
		errs = append(errs, fmt.Errorf("capacity %v: want 0 (unlimited) or a rate up to %v requests per second", c.Capacity, float64(maxCapacity)))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("max in flight %d: must not be negative", c.MaxInFlight))
	}
	return errors.Join(errs...)
}

// responseFaultRate is the total rate of the mutually exclusive response faults.
func (c Config) responseFaultRate() float64 {
	return c.TimeoutRate + c.ErrorRate + c.RateLimitRate + c.MalformedRate + c.OversizeRate +
		c.HugeHeaderRate + c.AbsurdRetryAfterRate
}

// withDefaults fills zero-valued fields with their defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = RandomWalk
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.SuspiciousDelayMin == 0 && c.SuspiciousDelayMax == 0 {
		c.SuspiciousDelayMin, c.SuspiciousDelayMax = DefaultSuspiciousDelayMin, DefaultSuspiciousDelayMax
	}
	return c
}
