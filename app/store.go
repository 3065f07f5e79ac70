package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/store/memory"
	"github.com/mockstagram/pipeline/store/postgres"
)

// StoreModule provides the store named by the configuration: in-memory when
// database-url is empty, else PostgreSQL (migrated at start, partitions
// maintained hourly), and seeds the registry at the first start.
var StoreModule = fx.Module("store",
	fx.Provide(NewStore),
	fx.Invoke(bootstrapRegistry),
)

// NewStore opens the configured store and closes it on stop.
func NewStore(lc fx.Lifecycle, cfg config.Config, clock clockwork.Clock, tp trace.TracerProvider, logger *slog.Logger) (store.Store, error) {
	if cfg.DatabaseURL == "" {
		logger.Info("using the in-memory store (nothing survives a restart)")
		mem := memory.New(clock)
		hourly(lc, clock, func(ctx context.Context) {
			now := clock.Now()
			if err := mem.Prune(ctx, now, cfg.Retention); err != nil {
				logger.Error("retention", "err", err)
			}
			expired, err := mem.Expire(ctx, now.Add(-cfg.DeadLetterRetention), now.Add(-cfg.MissedRetention))
			if err != nil {
				logger.Error("retention", "err", err)
			} else if expired.DeadLetters > 0 || expired.Missed > 0 {
				logger.Info("retention: expired dead letters and missed entries",
					"dead_letters", expired.DeadLetters, "missed", expired.Missed)
			}
		})
		return mem, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg, err := postgres.New(ctx, cfg.DatabaseURL, logger, clock, postgres.WithRetention(cfg.Retention),
		postgres.WithDeadLetterRetention(cfg.DeadLetterRetention), postgres.WithMissedRetention(cfg.MissedRetention),
		postgres.WithWriters(cfg.PostgresWriters), postgres.WithTracerProvider(tp))
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	// Partitions ahead, retention behind (whole partitions; dead letters
	// and missed entries in batches), hourly, in every process with the
	// store: Maintain is safe to run concurrently.
	hourly(lc, clock, func(ctx context.Context) {
		if err := pg.Maintain(ctx); err != nil {
			logger.Error("partition maintenance", "err", err)
		}
	})
	every(lc, clock, time.Minute, func(ctx context.Context) {
		if err := pg.VacuumCounters(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("vacuum of the counter tables", "err", err)
		}
	})
	lc.Append(fx.StopHook(pg.Close))
	return pg, nil
}

// hourly runs fn every hour from start to stop.
func hourly(lc fx.Lifecycle, clock clockwork.Clock, fn func(ctx context.Context)) {
	every(lc, clock, time.Hour, fn)
}

// every runs fn every d from start to stop.
func every(lc fx.Lifecycle, clock clockwork.Clock, d time.Duration, fn func(ctx context.Context)) {
	background(lc, func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case <-clock.After(d):
			}
			fn(ctx)
		}
	})
}

func bootstrapRegistry(lc fx.Lifecycle, cfg config.Config, s store.Store, logger *slog.Logger) {
	r, ok := cfg.BootstrapRange()
	if !ok {
		return
	}
	lc.Append(fx.StartHook(func(ctx context.Context) error {
		seeded, err := s.Bootstrap(ctx, r.PKs())
		if err != nil {
			return fmt.Errorf("bootstrap registry %s: %w", r, err)
		}
		if seeded {
			logger.Info("registry bootstrapped", "range", r.String())
		}
		return nil
	}))
}

// tryLead adapts the store's lock to the scheduler's Leader.
func tryLead(s store.Store) handlers.TryLeadFunc {
	return func(ctx context.Context) (handlers.Lease, bool, error) {
		l, ok, err := s.TryLead(ctx, "mockstagram-scheduler")
		if err != nil || !ok {
			return handlers.Lease{}, ok, err
		}
		return handlers.Lease{Lost: l.Lost(), Release: l.Release}, true, nil
	}
}
