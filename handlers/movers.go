package handlers

import (
	"context"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
)

// MoversStore is what the movers job needs of the store (see store.Store:
// RecomputeMovers).
type MoversStore interface {
	RecomputeMovers(ctx context.Context, now time.Time, window time.Duration) error
}

// MoversJob recomputes the store's top-movers list of Window at once, then
// every Interval (default one hour). A pass reads every active influencer
// once (one timeline lookup each), so it runs in one process only: with the
// scheduler, while this process holds the scheduler lock. A failed pass is
// logged and retried at the next one; the API serves the previous list
// meanwhile.
type MoversJob struct {
	Store    MoversStore
	Clock    clockwork.Clock
	Window   time.Duration
	Interval time.Duration
	Logger   *slog.Logger
}

// Run recomputes until ctx is done.
func (j MoversJob) Run(ctx context.Context) error {
	interval := j.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	for {
		began := time.Now()
		switch err := j.Store.RecomputeMovers(ctx, j.Clock.Now(), j.Window); {
		case err == nil:
			j.Logger.DebugContext(ctx, "movers recomputed", "window", j.Window, "took", time.Since(began))
		case ctx.Err() == nil: // not stopping
			j.Logger.ErrorContext(ctx, "recompute movers", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-j.Clock.After(interval):
		}
	}
}
