package handlers_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mockstagram/pipeline/handlers"
)

const leaderInterval = 5 * time.Second

// tryResult is one scripted answer of fakeLock.TryLead.
type tryResult struct {
	ok   bool
	err  error
	hang bool // block until the call's context is done (a partitioned network)
}

// fakeLock answers TryLead from a script (then "not ok") and records releases.
type fakeLock struct {
	script []tryResult

	mu       sync.Mutex
	tries    int
	lost     []chan struct{}
	released chan error // the release context's Err at each Release
}

func newFakeLock(script ...tryResult) *fakeLock {
	return &fakeLock{script: script, released: make(chan error, 10)}
}

func (l *fakeLock) TryLead(ctx context.Context) (handlers.Lease, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tries++
	if l.tries > len(l.script) {
		return handlers.Lease{}, false, nil
	}
	r := l.script[l.tries-1]
	if r.hang {
		l.mu.Unlock()
		<-ctx.Done()
		l.mu.Lock()
		return handlers.Lease{}, false, ctx.Err()
	}
	if !r.ok {
		return handlers.Lease{}, false, r.err
	}
	lost := make(chan struct{})
	l.lost = append(l.lost, lost)
	return handlers.Lease{Lost: lost, Release: func(ctx context.Context) error {
		l.released <- ctx.Err()
		return nil
	}}, true, nil
}

func (l *fakeLock) triesSoFar() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tries
}

func (l *fakeLock) lose(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.lost[i])
}

// fakeWork records when it starts and stops.
type fakeWork struct {
	lock    *fakeLock
	started chan int // TryLead calls made when work started
	stopped chan error
	err     error // returned at once when set
}

func newFakeWork(lock *fakeLock) *fakeWork {
	return &fakeWork{lock: lock, started: make(chan int, 10), stopped: make(chan error, 10)}
}

func (w *fakeWork) run(ctx context.Context) error {
	w.started <- w.lock.triesSoFar()
	if w.err != nil {
		w.stopped <- w.err
		return w.err
	}
	<-ctx.Done()
	w.stopped <- ctx.Err()
	return nil
}

func recvT[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func assertNotReceived[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Errorf("unexpected %s: %v", what, v)
	default:
	}
}

// startLeader runs the leader and returns a cancel that waits for Run.
func startLeader(t *testing.T, clock clockwork.Clock, lock *fakeLock, work *fakeWork) (stop func()) {
	t.Helper()
	return runLeader(t, handlers.Leader{TryLead: lock.TryLead, Interval: leaderInterval, Clock: clock, Logger: discardLogger()}, work)
}

// runLeader runs l and returns a cancel that waits for Run.
func runLeader(t *testing.T, l handlers.Leader, work *fakeWork) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, work.run)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("Leader.Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestLeaderWorksOnlyWhileHoldingTheLock(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	lock := newFakeLock(tryResult{}, tryResult{err: errors.New("db down")}, tryResult{}, tryResult{ok: true})
	work := newFakeWork(lock)
	startLeader(t, clock, lock, work)

	for tries := 1; tries <= 3; tries++ {
		require.NoError(t, clock.BlockUntilContext(ctx, 1)) // standing by
		assert.Equal(t, tries, lock.triesSoFar())
		assertNotReceived(t, work.started, "work start without the lock")
		clock.Advance(leaderInterval)
	}
	assert.Equal(t, 4, recvT(t, ctx, work.started, "work start"), "work starts once the lock is held")
	assertNotReceived(t, work.stopped, "work stop while holding the lock")
	assertNotReceived(t, lock.released, "release while holding the lock")

	// Losing the lock to another scheduler (the immediate retry says "not
	// ok") stops the work.
	lock.lose(0)
	assert.NoError(t, recvT(t, ctx, lock.released, "release"))
	assert.ErrorIs(t, recvT(t, ctx, work.stopped, "work stop"), context.Canceled)

	// Back to standby: the next try comes one interval later.
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	assert.Equal(t, 5, lock.triesSoFar(), "one immediate retry after the loss")
	clock.Advance(leaderInterval)
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	assert.Equal(t, 6, lock.triesSoFar())
	assertNotReceived(t, work.started, "work start without the lock")
}

func TestLeaderCancelStopsWorkAndReleases(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	lock := newFakeLock(tryResult{ok: true})
	work := newFakeWork(lock)
	stop := startLeader(t, clock, lock, work)

	assert.Equal(t, 1, recvT(t, ctx, work.started, "work start"))
	stop() // returns only once Run has returned

	assert.ErrorIs(t, recvT(t, ctx, work.stopped, "work stop"), context.Canceled)
	assert.NoError(t, recvT(t, ctx, lock.released, "release"), "release gets a live context")
	assert.Equal(t, 1, lock.triesSoFar())
}

func TestLeaderCancelWhileStandingBy(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	lock := newFakeLock()
	work := newFakeWork(lock)
	stop := startLeader(t, clock, lock, work)

	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	stop()

	assert.Equal(t, 1, lock.triesSoFar())
	assertNotReceived(t, work.started, "work start")
}

func TestLeaderReleasesWhenWorkEnds(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	lock := newFakeLock(tryResult{ok: true}, tryResult{ok: true})
	work := newFakeWork(lock)
	work.err = errors.New("scheduler failed")
	startLeader(t, clock, lock, work)

	assert.Equal(t, 1, recvT(t, ctx, work.started, "work start"))
	assert.NoError(t, recvT(t, ctx, lock.released, "release"))

	// It tries again one interval later and leads again.
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	clock.Advance(leaderInterval)
	assert.Equal(t, 2, recvT(t, ctx, work.started, "second work start"))
	assert.NoError(t, recvT(t, ctx, lock.released, "second release"))
}

// While the store is unreachable nobody can hold the lock: the scheduler
// keeps working and retries the lock; it stops only when another scheduler
// holds it.
func TestLeaderKeepsWorkingWhileTheStoreIsUnreachable(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	down := errors.New("connection refused")
	lock := newFakeLock(tryResult{ok: true}, tryResult{err: down}, tryResult{err: down}, tryResult{ok: true}, tryResult{})
	work := newFakeWork(lock)
	startLeader(t, clock, lock, work)
	assert.Equal(t, 1, recvT(t, ctx, work.started, "work start"))

	lock.lose(0) // the connection holding the lock died
	assert.NoError(t, recvT(t, ctx, lock.released, "release of the lost lease"))
	require.NoError(t, clock.BlockUntilContext(ctx, 1)) // waiting to retry
	assert.Equal(t, 2, lock.triesSoFar())
	assertNotReceived(t, work.stopped, "work stop while the store is unreachable")
	clock.Advance(leaderInterval)
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	assert.Equal(t, 3, lock.triesSoFar())
	clock.Advance(leaderInterval) // the store is back: lock regained
	require.Eventually(t, func() bool { return lock.triesSoFar() == 4 }, 5*time.Second, time.Millisecond)
	assertNotReceived(t, work.stopped, "work stop after regaining the lock")
	assertNotReceived(t, work.started, "a second work start")

	lock.lose(1) // lost again, and this time another scheduler holds it
	assert.NoError(t, recvT(t, ctx, lock.released, "release"))
	assert.ErrorIs(t, recvT(t, ctx, work.stopped, "work stop"), context.Canceled)
	assert.Equal(t, 5, lock.triesSoFar())
}

// The status says what the leader does; only leading and standing by
// behind another scheduler are ready.
func TestLeaderStatus(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	down := errors.New("connection refused")
	lock := newFakeLock(
		tryResult{err: down}, // unreachable at start
		tryResult{},          // another scheduler holds it
		tryResult{ok: true},  // leads
		tryResult{err: down}, // lost; the store is unreachable
		tryResult{ok: true},  // regained
		tryResult{},          // lost to another scheduler
	)
	work := newFakeWork(lock)
	status := &handlers.LeaderStatus{}
	assert.Equal(t, handlers.LeaderIdle, status.State())
	assert.ErrorIs(t, status.Ready(), handlers.ErrNotScheduling, "before the first try")
	runLeader(t, handlers.Leader{TryLead: lock.TryLead, Interval: leaderInterval, Clock: clock, Logger: discardLogger(), Status: status}, work)

	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	assert.Equal(t, handlers.LeaderUnreachable, status.State())
	assert.ErrorIs(t, status.Ready(), handlers.ErrNotScheduling)
	clock.Advance(leaderInterval)
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	assert.Equal(t, handlers.LeaderStandby, status.State())
	assert.NoError(t, status.Ready(), "a standby behind another scheduler is ready")
	clock.Advance(leaderInterval)
	assert.Equal(t, 3, recvT(t, ctx, work.started, "work start"))
	assert.Equal(t, handlers.LeaderLeading, status.State())
	assert.NoError(t, status.Ready())

	lock.lose(0)
	assert.NoError(t, recvT(t, ctx, lock.released, "release of the lost lease"))
	require.NoError(t, clock.BlockUntilContext(ctx, 1)) // waiting to retry
	assert.Equal(t, handlers.LeaderAdrift, status.State())
	assert.ErrorIs(t, status.Ready(), handlers.ErrLockAdrift)
	clock.Advance(leaderInterval)
	require.Eventually(t, func() bool { return status.State() == handlers.LeaderLeading }, 5*time.Second, time.Millisecond, "regained")
	assert.NoError(t, status.Ready())

	lock.lose(1)
	assert.ErrorIs(t, recvT(t, ctx, work.stopped, "work stop"), context.Canceled)
	assert.Equal(t, handlers.LeaderStandby, status.State())
	assert.NoError(t, status.Ready())
}

// A lock call that hangs (a silent network) is given up after Timeout: the
// lost lease's work goes on, and the lock is retried every Interval.
func TestLeaderBoundsHangingLockCalls(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	lock := newFakeLock(tryResult{ok: true}, tryResult{hang: true}, tryResult{hang: true}, tryResult{ok: true})
	work := newFakeWork(lock)
	status := &handlers.LeaderStatus{}
	runLeader(t, handlers.Leader{TryLead: lock.TryLead, Interval: leaderInterval, Timeout: 10 * time.Millisecond,
		Clock: clock, Logger: discardLogger(), Status: status}, work)
	assert.Equal(t, 1, recvT(t, ctx, work.started, "work start"))

	lock.lose(0)
	assert.NoError(t, recvT(t, ctx, lock.released, "release of the lost lease"))
	require.NoError(t, clock.BlockUntilContext(ctx, 1)) // the hanging call was given up
	assert.Equal(t, 2, lock.triesSoFar())
	assert.Equal(t, handlers.LeaderAdrift, status.State())
	clock.Advance(leaderInterval)
	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	assert.Equal(t, 3, lock.triesSoFar())
	clock.Advance(leaderInterval)
	require.Eventually(t, func() bool { return status.State() == handlers.LeaderLeading }, 5*time.Second, time.Millisecond, "regained")
	assert.Equal(t, 4, lock.triesSoFar())
	assertNotReceived(t, work.stopped, "work stop while the lock was unreachable")
	assertNotReceived(t, work.started, "a second work start")
}

// A standby whose lock calls hang is unreachable, not ready, and retries.
func TestLeaderHangingLockCallAtStart(t *testing.T) {
	t.Parallel()
	ctx := waitCtx(t)
	clock := clockwork.NewFakeClock()
	lock := newFakeLock(tryResult{hang: true}, tryResult{ok: true})
	work := newFakeWork(lock)
	status := &handlers.LeaderStatus{}
	runLeader(t, handlers.Leader{TryLead: lock.TryLead, Interval: leaderInterval, Timeout: 10 * time.Millisecond,
		Clock: clock, Logger: discardLogger(), Status: status}, work)

	require.NoError(t, clock.BlockUntilContext(ctx, 1))
	assert.Equal(t, handlers.LeaderUnreachable, status.State())
	assert.ErrorIs(t, status.Ready(), handlers.ErrNotScheduling)
	clock.Advance(leaderInterval)
	assert.Equal(t, 2, recvT(t, ctx, work.started, "work start"))
	assert.Equal(t, handlers.LeaderLeading, status.State())
}

func TestLeaderStateString(t *testing.T) {
	t.Parallel()
	for st, want := range map[handlers.LeaderState]string{
		handlers.LeaderIdle: "idle", handlers.LeaderLeading: "leading", handlers.LeaderStandby: "standby",
		handlers.LeaderUnreachable: "unreachable", handlers.LeaderAdrift: "adrift", handlers.LeaderState(99): "unknown",
	} {
		assert.Equal(t, want, st.String())
	}
}
