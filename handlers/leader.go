package handlers

import (
	"context"
	"log/slog"
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

// Leader runs work only while it holds the lock; otherwise it waits as a hot
// standby and retries every Interval.
type Leader struct {
	TryLead  TryLeadFunc
	Interval time.Duration
	Clock    clockwork.Clock
	Logger   *slog.Logger
}

// Run blocks until ctx is done. work is started with a context that is
// cancelled when leadership is lost.
func (l Leader) Run(ctx context.Context, work func(context.Context) error) {
	standbyLogged := false
	for {
		lease, ok, err := l.TryLead(ctx)
		switch {
		case err != nil:
			l.Logger.Error("scheduler lock", "err", err)
		case !ok:
			if !standbyLogged {
				l.Logger.Info("another scheduler holds the lock; standing by")
				standbyLogged = true
			}
		default:
			standbyLogged = false
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

// lead runs work while the lease is held. When the lease is lost it tries
// to take the lock again at once: if another scheduler holds it, work stops
// (standby); if the store cannot be reached (TryLead fails), nobody can hold
// the lock, so work goes on from the scheduler's cached registry and the lock
// is retried every Interval: a database outage must not stop minutes being
// scheduled (they would be lost for good), and a rare duplicate task during
// a partition changes nothing (writes are idempotent).
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
			l.release(ctx, lease)
			next, ok := l.regain(ctx, done)
			if !ok {
				cancel()
				<-done
				return
			}
			lease = next
		case <-done:
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
		lease, ok, err := l.TryLead(ctx)
		switch {
		case err == nil && ok:
			l.Logger.Info("scheduler lock regained")
			return lease, true
		case err == nil:
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
