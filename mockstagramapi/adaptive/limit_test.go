package adaptive_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi/adaptive"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testStart = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func newLimit(t *testing.T, cfg adaptive.Config) (*adaptive.Limit, *clockwork.FakeClock, *metrics.Pipeline) {
	t.Helper()
	clk := clockwork.NewFakeClockAt(testStart)
	m := metrics.New(prometheus.NewRegistry())
	l, err := adaptive.New(cfg, clk, m)
	require.NoError(t, err)
	return l, clk, m
}

// round acquires n slots (free at once), lets rtt pass and releases them all
// with o; with WindowSamples n and WindowMin ≤ rtt it is exactly one window.
func round(t *testing.T, l *adaptive.Limit, clk *clockwork.FakeClock, n int, rtt time.Duration, o adaptive.Outcome) {
	t.Helper()
	toks := make([]adaptive.Token, n)
	for i := range toks {
		var err error
		toks[i], err = l.Acquire(context.Background(), time.Time{})
		require.NoError(t, err)
	}
	clk.Advance(rtt)
	for _, tok := range toks {
		tok.Release(o)
	}
}

// gradientOnly: no absolute latency target, so only the RTT ratio counts.
func gradientOnly(min, max, initial, window int) adaptive.Config {
	return adaptive.Config{Min: min, Max: max, Initial: initial, Target: time.Nanosecond, WindowSamples: window, WindowMin: time.Nanosecond}
}

func TestSlowStartDoublesUntilAWindowIsUnhealthy(t *testing.T) {
	t.Parallel()
	l, clk, _ := newLimit(t, gradientOnly(1, 1000, 2, 2))
	for _, want := range []float64{4, 8, 8} { // 2 of 8 slots used: app-limited, no doubling
		round(t, l, clk, 2, time.Millisecond, adaptive.Success)
		require.Equal(t, want, l.Current())
	}
	round(t, l, clk, 2, 3*time.Millisecond, adaptive.Success) // 3× the no-load RTT: g = 2/3, slow start ends
	assert.InDelta(t, 8+(8*2.0/3-8)*0.2, l.Current(), 1e-9)
}

func TestGrowsUnderHealthyRTTUpToMax(t *testing.T) {
	t.Parallel()
	l, clk, m := newLimit(t, gradientOnly(1, 20, 10, 10))
	round(t, l, clk, 10, time.Millisecond, adaptive.Success)     // slow start: 20
	round(t, l, clk, 10, 10*time.Millisecond, adaptive.Overload) // overloaded: ×0.9, slow start ends
	require.Equal(t, 18.0, l.Current())
	want := 18.0
	for i := range 200 {
		round(t, l, clk, 10, time.Millisecond, adaptive.Success)
		want = math.Min(want+0.2*math.Sqrt(want), 20) // gradient 1: + √limit, smoothed by 0.2
		require.InDelta(t, want, l.Current(), 1e-9, "window %d", i)
	}
	assert.Equal(t, 20.0, l.Current(), "never above max")
	assert.Equal(t, 20.0, testutil.ToFloat64(m.AdaptiveLimit))
	assert.Zero(t, l.InFlight())
	assert.Zero(t, testutil.ToFloat64(m.AdaptiveInFlight))
}

func TestAppLimitedDoesNotGrow(t *testing.T) {
	t.Parallel()
	// 2 of 10 slots used: no queueing headroom is added.
	l, clk, _ := newLimit(t, gradientOnly(1, 100, 10, 2))
	for range 50 {
		round(t, l, clk, 2, time.Millisecond, adaptive.Success)
	}
	assert.Equal(t, 10.0, l.Current())
}

func TestShrinksOnQueueingLatencyDownToMin(t *testing.T) {
	t.Parallel()
	l, clk, _ := newLimit(t, gradientOnly(3, 100, 40, 3))
	round(t, l, clk, 3, time.Millisecond, adaptive.Success) // no-load RTT 1ms; app-limited, unchanged
	require.Equal(t, 40.0, l.Current())

	// 10ms against a healthy 2×1ms: gradient clamped to 0.5.
	want := 40.0
	for i := range 30 {
		round(t, l, clk, 3, 10*time.Millisecond, adaptive.Success)
		est := want * 0.5
		if 3*2 >= int(want) {
			est += math.Sqrt(want)
		}
		want = math.Max(want+(est-want)*0.2, 3)
		require.InDelta(t, want, l.Current(), 1e-9, "window %d", i)
		require.GreaterOrEqual(t, l.Current(), 3.0, "never below min")
	}
	assert.Less(t, l.Current(), 10.0)
}

func TestShrinksOnOverloadNeverBelowMin(t *testing.T) {
	t.Parallel()
	l, clk, m := newLimit(t, gradientOnly(2, 50, 10, 2))
	want := 10.0
	for i := range 40 {
		round(t, l, clk, 2, 5*time.Second, adaptive.Overload)
		want = math.Max(want*0.9, 2) // multiplicative decrease once per window
		require.InDelta(t, want, l.Current(), 1e-9, "window %d", i)
	}
	assert.Equal(t, 2.0, l.Current())
	assert.Equal(t, 80.0, testutil.ToFloat64(m.AdaptiveOverloads))
}

func TestSporadicOverloadBelowDropToleranceDoesNotShrink(t *testing.T) {
	t.Parallel()
	// One overload among 10 answers (10% < 20%) leaves the window healthy.
	l, clk, _ := newLimit(t, gradientOnly(1, 100, 10, 10))
	for range 5 {
		toks := make([]adaptive.Token, 10)
		for i := range toks {
			var err error
			toks[i], err = l.Acquire(context.Background(), time.Time{})
			require.NoError(t, err)
		}
		clk.Advance(time.Millisecond)
		toks[0].Release(adaptive.Overload)
		for _, tok := range toks[1:] {
			tok.Release(adaptive.Success)
		}
	}
	assert.Greater(t, l.Current(), 10.0)
}

func TestRareSlowAnswersDoNotShrink(t *testing.T) {
	t.Parallel()
	// Every window: 49 answers in 1 ms and one in 3 s (the chaos run's 2 %
	// latency spikes). The mean RTT is 61 ms, 61× the no-load RTT; the
	// median is the no-load RTT, so the limit keeps growing.
	l, clk, _ := newLimit(t, gradientOnly(1, 1000, 50, 50))
	round(t, l, clk, 50, time.Millisecond, adaptive.Success) // no-load RTT 1 ms; slow start: 100
	for range 20 {
		toks := make([]adaptive.Token, 50)
		for i := range toks {
			var err error
			toks[i], err = l.Acquire(context.Background(), time.Time{})
			require.NoError(t, err)
		}
		clk.Advance(time.Millisecond)
		for _, tok := range toks[1:] {
			tok.Release(adaptive.Success)
		}
		clk.Advance(3 * time.Second)
		toks[0].Release(adaptive.Success)
		require.GreaterOrEqual(t, l.Current(), 100.0) // else the next 50 Acquires would block
	}
}

func TestIgnoredOutcomesDoNotMoveTheLimit(t *testing.T) {
	t.Parallel()
	l, clk, _ := newLimit(t, gradientOnly(1, 100, 10, 1))
	for range 20 {
		round(t, l, clk, 10, 5*time.Second, adaptive.Ignore)
	}
	assert.Equal(t, 10.0, l.Current())
}

func TestTargetKeepsSmallLatencyHealthy(t *testing.T) {
	t.Parallel()
	// The default 25ms target: 1ms then 10ms is latency, but far from a
	// timeout; the limit keeps growing.
	l, clk, _ := newLimit(t, adaptive.Config{Min: 1, Max: 100, Initial: 10, WindowSamples: 10, WindowMin: time.Nanosecond})
	round(t, l, clk, 10, time.Millisecond, adaptive.Success)
	before := l.Current()
	round(t, l, clk, 10, 10*time.Millisecond, adaptive.Success)
	assert.Greater(t, l.Current(), before)
	before = l.Current()
	round(t, l, clk, 10, 100*time.Millisecond, adaptive.Success) // 4× the target: shrinks
	assert.Less(t, l.Current(), before)
}

func TestAtMinTheNoLoadRTTFollowsAndTheLimitRecovers(t *testing.T) {
	t.Parallel()
	l, clk, _ := newLimit(t, gradientOnly(2, 50, 2, 2))
	round(t, l, clk, 2, time.Millisecond, adaptive.Success)
	// The API got slower for everyone: at min, 20ms becomes the no-load RTT,
	// so the limit grows again.
	grew := false
	for range 100 {
		round(t, l, clk, 2, 20*time.Millisecond, adaptive.Success)
		if l.Current() > 2 {
			grew = true
			break
		}
	}
	assert.True(t, grew, "limit %v stayed at min", l.Current())
}

func TestWindowWaitsForSamplesAndMinDuration(t *testing.T) {
	t.Parallel()
	cfg := adaptive.Config{Min: 1, Max: 100, Initial: 10, Target: time.Nanosecond, WindowSamples: 10, WindowMin: time.Second, WindowMax: 5 * time.Second}
	l, clk, _ := newLimit(t, cfg)
	round(t, l, clk, 10, time.Millisecond, adaptive.Success) // 10 samples, 1ms old: open
	assert.Equal(t, 10.0, l.Current())
	clk.Advance(time.Second)
	round(t, l, clk, 5, time.Millisecond, adaptive.Success) // now older than WindowMin: closes
	assert.Greater(t, l.Current(), 10.0)

	grown := l.Current()
	clk.Advance(5 * time.Second)
	round(t, l, clk, 1, time.Millisecond, adaptive.Overload) // one sample, WindowMax old: closes
	assert.InDelta(t, grown*0.9, l.Current(), 1e-9)
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, time.Millisecond, msg)
}

func TestWaitersAreServedFirstComeFirstServed(t *testing.T) {
	t.Parallel()
	l, _, m := newLimit(t, gradientOnly(1, 1, 1, 1000))
	holder, err := l.Acquire(context.Background(), time.Time{})
	require.NoError(t, err)

	const n = 5
	order := make(chan int, n)
	done := make(chan struct{})
	for i := range n {
		go func() {
			tok, err := l.Acquire(context.Background(), time.Time{})
			if err != nil {
				order <- -1
				return
			}
			order <- i
			tok.Release(adaptive.Success)
			if i == n-1 {
				close(done)
			}
		}()
		// The next caller starts only once this one is queued.
		waitFor(t, func() bool { return testutil.ToFloat64(m.AdaptiveWaiting) == float64(i+1) }, "caller queued")
	}
	assert.Equal(t, 1, l.InFlight())
	holder.Release(adaptive.Success)
	<-done
	for i := range n {
		assert.Equal(t, i, <-order)
	}
	assert.Zero(t, l.InFlight())
	assert.Zero(t, testutil.ToFloat64(m.AdaptiveInFlight))
	assert.Zero(t, testutil.ToFloat64(m.AdaptiveWaiting))
}

func TestCancelledWaiterHoldsNothing(t *testing.T) {
	t.Parallel()
	l, _, m := newLimit(t, gradientOnly(1, 1, 1, 1000))
	holder, err := l.Acquire(context.Background(), time.Time{})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx, time.Time{})
		got <- err
	}()
	waitFor(t, func() bool { return testutil.ToFloat64(m.AdaptiveWaiting) == 1 }, "caller queued")
	cancel()
	require.ErrorIs(t, <-got, context.Canceled)
	assert.Equal(t, 1, l.InFlight(), "the holder's slot only")

	holder.Release(adaptive.Success)
	assert.Zero(t, l.InFlight(), "the cancelled waiter was not granted the freed slot")
	tok, err := l.Acquire(context.Background(), time.Time{})
	require.NoError(t, err, "the slot is free")
	tok.Release(adaptive.Success)
	assert.Zero(t, testutil.ToFloat64(m.AdaptiveInFlight))

	_, err = l.Acquire(ctx, time.Time{})
	require.ErrorIs(t, err, context.Canceled, "an ended ctx gets no slot, even a free one")
	assert.Zero(t, l.InFlight())
}

func TestDeadlineOnTheClock(t *testing.T) {
	t.Parallel()
	l, clk, m := newLimit(t, gradientOnly(1, 1, 1, 1000))
	holder, err := l.Acquire(context.Background(), time.Time{})
	require.NoError(t, err)

	_, err = l.Acquire(context.Background(), clk.Now())
	require.ErrorIs(t, err, adaptive.ErrDeadline, "a passed deadline does not queue")

	got := make(chan error, 1)
	go func() {
		_, err := l.Acquire(context.Background(), clk.Now().Add(time.Second))
		got <- err
	}()
	require.NoError(t, clk.BlockUntilContext(context.Background(), 1)) // the waiter's deadline timer
	clk.Advance(999 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("gave up before its deadline: %v", err)
	default:
	}
	clk.Advance(time.Millisecond)
	require.ErrorIs(t, <-got, adaptive.ErrDeadline)
	assert.Equal(t, 1, l.InFlight())
	assert.Equal(t, 2.0, testutil.ToFloat64(m.AdaptiveTimedOut))

	holder.Release(adaptive.Success)
	assert.Zero(t, l.InFlight())
}

func TestLimitGrowthGrantsWaiters(t *testing.T) {
	t.Parallel()
	// Limit 2 → 4 (slow start) after one healthy window of 2.
	l, clk, m := newLimit(t, gradientOnly(1, 10, 2, 2))
	a, err := l.Acquire(context.Background(), time.Time{})
	require.NoError(t, err)
	b, err := l.Acquire(context.Background(), time.Time{})
	require.NoError(t, err)
	got := make(chan adaptive.Token, 2)
	for range 2 {
		go func() {
			tok, err := l.Acquire(context.Background(), time.Time{})
			if err == nil {
				got <- tok
			}
		}()
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.AdaptiveWaiting) == 2 }, "both queued")
	clk.Advance(time.Millisecond)
	a.Release(adaptive.Success)
	b.Release(adaptive.Success) // closes the window: limit 4, both waiters get a slot
	t1, t2 := <-got, <-got
	assert.Equal(t, 2, l.InFlight())
	assert.Equal(t, 4.0, l.Current())
	t1.Release(adaptive.Ignore)
	t2.Release(adaptive.Ignore)
	assert.Zero(t, l.InFlight())
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  adaptive.Config
		want string
	}{
		{"min zero", adaptive.Config{Min: 0, Max: 4}, "bounds 0..4"},
		{"max below min", adaptive.Config{Min: 5, Max: 4}, "bounds 5..4"},
		{"initial above max", adaptive.Config{Min: 1, Max: 4, Initial: 5}, "initial 5 not in [1, 4]"},
		{"tolerance below 1", adaptive.Config{Min: 1, Max: 4, Tolerance: 0.5}, "tolerance 0.5"},
		{"backoff 1", adaptive.Config{Min: 1, Max: 4, Backoff: 1}, "backoff 1"},
		{"smoothing above 1", adaptive.Config{Min: 1, Max: 4, Smoothing: 2}, "smoothing 2"},
		{"drop tolerance above 1", adaptive.Config{Min: 1, Max: 4, DropTolerance: 1.5}, "drop tolerance 1.5"},
		{"window max below min", adaptive.Config{Min: 1, Max: 4, WindowMin: time.Second, WindowMax: time.Millisecond}, "window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := adaptive.New(tc.cfg, clockwork.NewFakeClock(), metrics.New(prometheus.NewRegistry()))
			require.ErrorContains(t, err, tc.want)
		})
	}
	l, err := adaptive.New(adaptive.Config{Min: 1, Max: 256}, clockwork.NewFakeClock(), metrics.New(prometheus.NewRegistry()))
	require.NoError(t, err)
	assert.Equal(t, 8.0, l.Current(), "default initial: min, at least 8")
}
