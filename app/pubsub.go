package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/store"
)

// PubSubModule provides the configured broker and its shared publisher, and
// exports the broker's queue depths (postgres) as metrics.
var PubSubModule = fx.Module("pubsub",
	fx.Provide(NewBroker, func(b *broker.Broker) message.Publisher { return b.Publisher() }),
	fx.Invoke(func(reg *prometheus.Registry, b *broker.Broker) {
		reg.MustRegister(metrics.NewQueueCollector(b, 5*time.Second))
	}),
)

// pooler is a store that can lend its connection pool to the Postgres broker.
type pooler interface{ Pool() *pgxpool.Pool }

// NewBroker builds the broker named by the configuration and closes it on
// stop (after the router, which depends on it). The Postgres broker uses the
// store's database and pool.
func NewBroker(lc fx.Lifecycle, cfg config.Config, s store.Store, logger *slog.Logger) (*broker.Broker, error) {
	deps := broker.Deps{Logger: logger}
	if p, ok := s.(pooler); ok {
		deps.Pool = p.Pool()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := broker.New(ctx, cfg, deps)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", cfg.Broker, err)
	}
	lc.Append(fx.StopHook(b.Close))
	return b, nil
}
