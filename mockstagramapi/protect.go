package mockstagramapi

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/mockstagram/pipeline/metrics"
)

// NewRateLimiter returns the client's limiter for rps requests per second:
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
// connection errors (refused, reset) and 5xx count as failures; a timeout
// counts neither way (it may be our own overload: slowness is for the
// concurrency limit, not a reason to fail whole shards fast); any other
// answer (including not_found, 429 and bad bodies) shows the API is up.
func breakerOutcome(e *Error) error {
	if e == nil {
		return nil
	}
	switch e.Class {
	case ClassConnection, ClassServer:
		return errAPIFailing
	case ClassTimeout:
		return errNotAnAnswer
	}
	return nil
}

// noOutcome is the done func when the breaker is off.
func noOutcome(error) {}

// allow asks the breaker for a request; done reports its outcome.
func (c *Client) allow() (done func(error), ok bool) {
	if c.breaker == nil {
		return noOutcome, true
	}
	done, err := c.breaker.Allow()
	if err != nil { // gobreaker.ErrOpenState or ErrTooManyRequests (half-open)
		return nil, false
	}
	return done, true
}

// waitToken waits for a rate-limit token, on the client's clock. It returns
// false, without spending the token, when the token comes at or after the
// deadline (the zero deadline is none) or ctx ends first.
func (c *Client) waitToken(ctx context.Context, deadline time.Time) bool {
	if c.limiter == nil {
		return true
	}
	now := c.clock.Now()
	r := c.limiter.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	c.metrics.RateLimitWait.Observe(delay.Seconds())
	if delay <= 0 {
		return true
	}
	if !deadline.IsZero() && !now.Add(delay).Before(deadline) {
		r.CancelAt(now)
		return false
	}
	Waiting(ctx)
	select {
	case <-ctx.Done():
		r.CancelAt(c.clock.Now())
		return false
	case <-c.clock.After(delay):
		Sending(ctx)
		return true
	}
}
