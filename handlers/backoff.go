package handlers

import (
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jonboulle/clockwork"
)

// retryBackoff is the one backoff of the handlers' retries: exponential with
// full jitter, the k-th wait uniform in [0, min(initial·2^k, max)], or the
// server's Retry-After when longer, never past the deadline. The intervals
// come from cenkalti/backoff; the callers wait them on the injected clock
// (its Retry waits on real timers), so tests drive them with a fake clock.
// One per pk (not safe for concurrent use); a value, so it costs no
// allocation.
type retryBackoff struct {
	exp   backoff.ExponentialBackOff
	clock clockwork.Clock
}

// newRetryBackoff returns a backoff bounded by initial and max (0 < initial <= max).
func newRetryBackoff(initial, maxWait time.Duration, clock clockwork.Clock) retryBackoff {
	// RandomizationFactor 1 spreads an interval i over [0, 2i]: around half
	// the bound, that is full jitter up to the bound.
	return retryBackoff{exp: backoff.ExponentialBackOff{
		InitialInterval:     max(initial/2, 1),
		RandomizationFactor: 1,
		Multiplier:          2,
		MaxInterval:         max(maxWait/2, 1),
	}, clock: clock}
}

// next returns the wait before the next attempt: the jittered backoff, or
// retryAfter when longer. ok is false when the wait would end at or after
// deadline: the caller gives up instead of waiting.
func (b *retryBackoff) next(retryAfter time.Duration, deadline time.Time) (wait time.Duration, ok bool) {
	wait = max(b.exp.NextBackOff(), retryAfter)
	return wait, b.clock.Now().Add(wait).Before(deadline)
}
