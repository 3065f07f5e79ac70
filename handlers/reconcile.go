package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/metrics"
)

// ReconcileStore is what the reconciler needs of the store (see
// store.Store: UnreconciledMinutes, Reconcile).
type ReconcileStore interface {
	UnreconciledMinutes(ctx context.Context, from, to time.Time) ([]time.Time, error)
	Reconcile(ctx context.Context, minute time.Time, reason string) (int, error)
}

// ReconcilerConfig configures the reconciler.
type ReconcilerConfig struct {
	// Lookback bounds how far back minutes are reconciled: a minute older
	// than Lookback that nobody reconciled stays unaccounted for.
	Lookback time.Duration
	// DeadlineGrace is the tasks' (influencer.Deadline).
	DeadlineGrace time.Duration
	// Settle is how long after a minute's deadline its late results get
	// before the minute is reconciled (a result recorded after that still
	// replaces its miss).
	Settle time.Duration
	// Interval is the time between two passes (default one minute).
	Interval time.Duration
}

// ReasonNotScheduled is the reason of the misses the reconciler records.
const ReasonNotScheduled = "nothing stored or missed by the minute's deadline: its shard was not scheduled (no scheduler running), or its task or result was lost"

// Reconciler makes sure every tracked pk has, for every minute, a sample or
// a miss: once per Interval it reconciles (store.Store.Reconcile) the
// minutes of the last Lookback whose deadline passed Settle ago and that
// are not reconciled yet, oldest first. A minute nobody scheduled (the
// scheduler was down, or killed mid-minute) is thus reported as missed
// (class not-scheduled) instead of silently absent, and the last complete
// minute moves past it. Run it with the scheduler, only while this process
// holds the scheduler lock.
type Reconciler struct {
	store   ReconcileStore
	clock   clockwork.Clock
	cfg     ReconcilerConfig
	logger  *slog.Logger
	metrics *metrics.Pipeline
}

// NewReconciler creates a reconciler.
func NewReconciler(s ReconcileStore, clock clockwork.Clock, cfg ReconcilerConfig, logger *slog.Logger, m *metrics.Pipeline) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	return &Reconciler{store: s, clock: clock, cfg: cfg, logger: logger, metrics: m}
}

// Run reconciles at once, then every Interval, until ctx is done. A failed
// pass is logged and retried at the next one.
func (r *Reconciler) Run(ctx context.Context) error {
	for {
		if _, err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.logger.ErrorContext(ctx, "reconcile missed minutes", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.clock.After(r.cfg.Interval):
		}
	}
}

// Once runs one pass and returns the number of (pk, minute)s it recorded
// as missed.
func (r *Reconciler) Once(ctx context.Context) (int, error) {
	now := r.clock.Now()
	// Minute M is due when Deadline(M, grace) + Settle <= now.
	to := now.Add(-r.cfg.Settle - r.cfg.DeadlineGrace - time.Minute).Truncate(time.Minute).Add(time.Minute)
	from := now.Add(-r.cfg.Lookback)
	minutes, err := r.store.UnreconciledMinutes(ctx, from, to)
	if err != nil {
		return 0, fmt.Errorf("unreconciled minutes: %w", err)
	}
	total := 0
	for _, m := range minutes {
		if !now.Before(influencer.Deadline(m, r.cfg.DeadlineGrace).Add(r.cfg.Settle)) {
			n, err := r.store.Reconcile(ctx, m, ReasonNotScheduled)
			total += n
			r.metrics.SamplesMissed.Add(float64(n))
			r.metrics.MissedNotScheduled.Add(float64(n))
			if err != nil {
				return total, err
			}
			if n > 0 {
				r.logger.WarnContext(ctx, "minute reconciled: pks nobody fetched recorded as missed",
					"minute", m, "missed", n, "class", "not-scheduled")
			}
		}
	}
	return total, nil
}
