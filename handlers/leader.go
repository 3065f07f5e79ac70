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
	select {
	case <-lease.Lost:
		l.Logger.Warn("scheduler lock lost; standing by")
	case <-done:
	case <-ctx.Done():
	}
	cancel()
	<-done
	releaseCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	if err := lease.Release(releaseCtx); err != nil {
		l.Logger.Warn("release scheduler lock", "err", err)
	}
}
