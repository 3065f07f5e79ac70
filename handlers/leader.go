package handlers

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// Lease is a held leadership lock.
type Lease struct {
	Lost    <-chan struct{}             // closed when the lock is lost
	Release func(context.Context) error // gives the lock up
}

// TryLeadFunc tries to take the scheduler lock without waiting.
type TryLeadFunc func(ctx context.Context) (Lease, bool, error)

// LeaderState is what a Leader is doing.
type LeaderState int32

// The states of a Leader.
const (
	LeaderIdle        LeaderState = iota // not tried yet, or the work ended: not scheduling
	LeaderLeading                        // holds the lock and works
	LeaderStandby                        // another scheduler holds the lock
	LeaderUnreachable                    // the lock cannot be reached: not scheduling
	LeaderAdrift                         // lost the lock and cannot reach it: works on, unconfirmed
)

func (s LeaderState) String() string {
	switch s {
	case LeaderIdle:
		return "idle"
	case LeaderLeading:
		return "leading"
	case LeaderStandby:
		return "standby"
	case LeaderUnreachable:
		return "unreachable"
	case LeaderAdrift:
		return "adrift"
	default:
		return "unknown"
	}
}

// LeaderStatus follows a Leader's state, for readiness. It is safe for
// concurrent use; the zero value is LeaderIdle.
type LeaderStatus struct{ state atomic.Int32 }

// State is the leader's current state.
func (s *LeaderStatus) State() LeaderState { return LeaderState(s.state.Load()) }

func (s *LeaderStatus) set(st LeaderState) {
	if s != nil {
		s.state.Store(int32(st))
	}
}

// Errors of LeaderStatus.Ready.
var (
	ErrNotScheduling = errors.New("scheduler: not scheduling and no other scheduler holds the lock")
	ErrLockAdrift    = errors.New("scheduler: lock lost and unreachable; scheduling unconfirmed")
)

// Ready is nil while the leader leads or stands by behind another
// scheduler: a process whose role is to schedule and which does not (the
// lock is unreachable, lost, or the work ended) is not ready.
func (s *LeaderStatus) Ready() error {
	switch s.State() {
	case LeaderLeading, LeaderStandby:
		return nil
	case LeaderAdrift:
		return ErrLockAdrift
	default:
		return ErrNotScheduling
	}
}

// Leader runs work only while it holds the lock; otherwise it waits as a hot
// standby and retries every Interval.
type Leader struct {
	TryLead  TryLeadFunc
	Interval time.Duration
	// Timeout bounds each TryLead (0: Interval): over a partitioned network
	// a call to the lock can hang for good.
	Timeout time.Duration
	Clock   clockwork.Clock
	Logger  *slog.Logger
	// Status, when set, follows what the leader does.
	Status *LeaderStatus
}

// Run blocks until ctx is done. work is started with a context that is
// cancelled when leadership is lost.
func (l Leader) Run(ctx context.Context, work func(context.Context) error) {
	standbyLogged := false
	for {
		lease, ok, err := l.tryLead(ctx)
		switch {
		case err != nil:
			l.Status.set(LeaderUnreachable)
			l.Logger.Error("scheduler lock", "err", err)
		case !ok:
			l.Status.set(LeaderStandby)
			if !standbyLogged {
				l.Logger.Info("another scheduler holds the lock; standing by")
				standbyLogged = true
			}
		default:
			standbyLogged = false
			l.Status.set(LeaderLeading)
			l.Logger.Info("scheduler lock acquired; scheduling")
			l.lead(ctx, lease, work)
		}
		select {
		case <-ctx.Done():
			return
		case <-l.Clock.After(l.Interval):
		}
	}
}

// tryLead calls TryLead within Timeout.
func (l Leader) tryLead(ctx context.Context) (Lease, bool, error) {
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = l.Interval
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return l.TryLead(ctx)
}

// lead runs work while the lease is held. When the lease is lost it tries
// to take the lock again at once: if another scheduler holds it, work stops
// (standby); if the store cannot be reached (TryLead fails), nobody can hold
// the lock, so work goes on from the scheduler's cached registry and the lock
// is retried every Interval: a database outage must not stop minutes being
// scheduled (they would be lost for good), and a rare duplicate task during
// a partition changes nothing (writes are idempotent). A lock session the
// partition left behind at the server is the store's to take back (see
// store.Store.TryLead), so it never reads as another scheduler for long.
func (l Leader) lead(ctx context.Context, lease Lease, work func(context.Context) error) {
	workCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := work(workCtx); err != nil {
			l.Logger.Error("scheduler stopped", "err", err)
		}
	}()
	for {
		select {
		case <-lease.Lost:
			l.Status.set(LeaderAdrift)
			l.release(ctx, lease)
			next, ok := l.regain(ctx, done)
			if !ok {
				cancel()
				<-done
				return
			}
			lease = next
		case <-done:
			l.Status.set(LeaderIdle)
			l.release(ctx, lease)
			return
		case <-ctx.Done():
			cancel()
			<-done
			l.release(ctx, lease)
			return
		}
	}
}

// regain retries the lock after a loss; false means stop working.
func (l Leader) regain(ctx context.Context, done <-chan struct{}) (Lease, bool) {
	warned := false
	for {
		lease, ok, err := l.tryLead(ctx)
		switch {
		case err == nil && ok:
			l.Status.set(LeaderLeading)
			l.Logger.Info("scheduler lock regained")
			return lease, true
		case err == nil:
			l.Status.set(LeaderStandby)
			l.Logger.Warn("scheduler lock lost to another scheduler; standing by")
			return Lease{}, false
		case !warned:
			l.Logger.Warn("scheduler lock lost and the store is unreachable; scheduling goes on from the cached registry", "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return Lease{}, false
		case <-done:
			l.Status.set(LeaderIdle)
			return Lease{}, false
		case <-l.Clock.After(l.Interval):
		}
	}
}

func (l Leader) release(ctx context.Context, lease Lease) {
	releaseCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	if err := lease.Release(releaseCtx); err != nil {
		l.Logger.Warn("release scheduler lock", "err", err)
	}
}
