package handlers

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The k-th wait is uniform in [0, min(initial·2^k, max)] (full jitter):
// never above the bound, and spread over all of it.
func TestRetryBackoffIsExponentialWithFullJitter(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		initial, max time.Duration
		bounds       []time.Duration
	}{
		{ms, 4 * ms, []time.Duration{ms, 2 * ms, 4 * ms, 4 * ms, 4 * ms}},
		{ms, 3 * ms, []time.Duration{ms, 2 * ms, 3 * ms, 3 * ms}},
		{100 * ms, 100 * ms, []time.Duration{100 * ms, 100 * ms}},
		{250 * ms, 10 * time.Second, []time.Duration{250 * ms, 500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}},
	}
	clock := clockwork.NewFakeClock()
	far := clock.Now().Add(time.Hour)
	for _, tt := range tests {
		const runs = 2000
		lowest := make([]time.Duration, len(tt.bounds))
		highest := make([]time.Duration, len(tt.bounds))
		for i := range lowest {
			lowest[i] = tt.max
		}
		for range runs {
			b := newRetryBackoff(tt.initial, tt.max, clock)
			for k, bound := range tt.bounds {
				wait, ok := b.next(0, far)
				require.True(t, ok)
				require.GreaterOrEqual(t, wait, time.Duration(0))
				require.LessOrEqual(t, wait, bound, "wait %d of %s..%s", k, tt.initial, tt.max)
				lowest[k], highest[k] = min(lowest[k], wait), max(highest[k], wait)
			}
		}
		for k, bound := range tt.bounds {
			assert.Less(t, lowest[k], bound/10, "wait %d of %s..%s reaches down to 0", k, tt.initial, tt.max)
			assert.Greater(t, highest[k], bound*9/10, "wait %d of %s..%s reaches up to its bound", k, tt.initial, tt.max)
		}
	}
}

func TestRetryBackoffRetryAfterAndDeadline(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	b := newRetryBackoff(time.Millisecond, 4*time.Millisecond, clock)

	wait, ok := b.next(2*time.Second, clock.Now().Add(time.Minute))
	assert.Equal(t, 2*time.Second, wait, "Retry-After when longer than the backoff")
	assert.True(t, ok)

	wait, ok = b.next(2*time.Second, clock.Now().Add(2*time.Second))
	assert.Equal(t, 2*time.Second, wait)
	assert.False(t, ok, "a wait that ends at the deadline is not taken")

	_, ok = b.next(0, clock.Now())
	assert.False(t, ok, "no wait at or past the deadline")
}
