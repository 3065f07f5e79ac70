package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	wmetrics "github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/tracing"
)

// RouterModule provides the Watermill router; it runs from OnStart (with a
// context of its own) until OnStop closes it.
var RouterModule = fx.Module("router",
	fx.Provide(NewRouter),
)

// NewRouter creates the router and ties it to the lifecycle. Handlers are
// added by HandlersModule before start; a router without handlers (an
// api-only or scheduler-only process) is not run. It takes the broker so
// that the broker is created first and therefore closed after the router,
// and its start waits until every handler's subscription receives.
func NewRouter(lc fx.Lifecycle, cfg config.Config, b *broker.Broker, reg *prometheus.Registry, tp trace.TracerProvider, logger *slog.Logger) (*message.Router, error) {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.ShutdownTimeout}, watermill.NewSlogLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	// Watermill's handler, publisher and subscriber metrics (outermost
	// middleware: the handler time includes retries).
	wmetrics.NewPrometheusMetricsBuilder(reg, "mockstagram", "watermill").AddPrometheusRouterMetrics(router)
	// Then a span per handler call, continuing the message's trace.
	router.AddMiddleware(tracing.Middleware(tp))
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if len(router.Handlers()) == 0 {
				close(done)
				return nil
			}
			// The router gets a context of its own, not the start hook's: it
			// runs until OnStop closes it.
			go func() { //nolint:gosec // G118: see above
				defer close(done)
				if err := router.Run(context.Background()); err != nil {
					logger.Error("router stopped", "err", err)
				}
			}()
			select {
			case <-router.Running():
			case <-ctx.Done():
				return fmt.Errorf("router did not start: %w", ctx.Err())
			}
			// Every handler has subscribed; on kafka each subscription
			// still has to join its consumer group. The start ends (and
			// the scheduler, which starts after the router, publishes
			// its first minute) only once they all receive: tasks
			// published during a slow join would wait for it and expire.
			if err := b.WaitSubscribed(ctx); err != nil {
				return fmt.Errorf("router subscriptions: %w", err)
			}
			return nil
		},
		OnStop: func(ctx context.Context) error {
			err := router.Close()
			select {
			case <-done:
			case <-ctx.Done():
			}
			return err
		},
	})
	return router, nil
}
