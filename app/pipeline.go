package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmetrics "github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"golang.org/x/sync/errgroup"

	"github.com/mockstagram/pipeline/broker"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/middleware"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/simulator"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/tracing"
)

// PubSubModule provides the configured broker and its shared publisher.
var PubSubModule = fx.Module("pubsub",
	fx.Provide(NewBroker, func(b *broker.Broker) message.Publisher { return b.Publisher() }),
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

// APIBaseURL is the Mockstagram API the fetcher calls.
type APIBaseURL string

// SimulatorModule provides the API base URL, starting the built-in simulator
// when 'run' has no API URL configured.
var SimulatorModule = fx.Module("simulator",
	fx.Provide(NewAPIBaseURL),
)

// NewAPIBaseURL returns the configured API URL or starts the simulator.
func NewAPIBaseURL(lc fx.Lifecycle, cfg config.Config, roles Roles, clock clockwork.Clock, logger *slog.Logger) (APIBaseURL, error) {
	if cfg.APIURL != "" || !roles.BuiltInSimulator {
		return APIBaseURL(cfg.FetcherBaseURL()), nil
	}
	rng := influencer.Range{From: 1_000_000, To: 1_999_999}
	if r, ok := cfg.BootstrapRange(); ok {
		rng.From, rng.To = min(rng.From, r.From), max(rng.To, r.To)
	}
	simCfg := simulator.Config{Mode: simulator.Mode(cfg.SimulatorMode), Range: rng,
		SuspiciousDelayMin: cfg.SimulatorSuspiciousDelayMin, SuspiciousDelayMax: cfg.SimulatorSuspiciousDelayMax}
	simCfg.SuspiciousNoDelay = simCfg.SuspiciousDelayMax == 0 // (both zero would mean the defaults)
	sim, err := simulator.New(simCfg, clock)
	if err != nil {
		return "", fmt.Errorf("built-in simulator: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("built-in simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logger.Error("built-in simulator", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error { return srv.Shutdown(ctx) },
	})
	url := "http://" + ln.Addr().String()
	logger.Info("started the built-in Mockstagram simulator", "url", url, "mode", cfg.SimulatorMode, "range", rng.String())
	return APIBaseURL(url), nil
}

// RouterModule provides the Watermill router; it runs from OnStart (with a
// context of its own) until OnStop closes it.
var RouterModule = fx.Module("router",
	fx.Provide(NewRouter),
)

// NewRouter creates the router and ties it to the lifecycle. Handlers are
// added by HandlersModule before start; a router without handlers (an
// api-only or scheduler-only process) is not run. It takes the broker so
// that the broker is created first and therefore closed after the router.
func NewRouter(lc fx.Lifecycle, cfg config.Config, _ *broker.Broker, reg *prometheus.Registry, tp trace.TracerProvider, logger *slog.Logger) (*message.Router, error) {
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
			go func() {
				defer close(done)
				if err := router.Run(context.Background()); err != nil {
					logger.Error("router stopped", "err", err)
				}
			}()
			select {
			case <-router.Running():
				return nil
			case <-ctx.Done():
				return fmt.Errorf("router did not start: %w", ctx.Err())
			}
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

// HandlersModule adds the stages this process runs.
var HandlersModule = fx.Module("handlers",
	fx.Invoke(addFetcher, addRecorder, addSuspicionChecker, addDeadLetterArchiver, runScheduler),
)

func retryConfig(cfg config.Config) middleware.Retry {
	return middleware.Retry{MaxRetries: cfg.RecorderRetries, InitialInterval: 100 * time.Millisecond, MaxInterval: 5 * time.Second}
}

func addFetcher(roles Roles, cfg config.Config, base APIBaseURL, router *message.Router, b *broker.Broker, pub message.Publisher,
	clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) error {
	if !roles.Fetcher {
		return nil
	}
	sub, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerFetcher))
	if err != nil {
		return err
	}
	api, err := mockstagramapi.New(mockstagramapi.Config{
		BaseURL:         string(base),
		Concurrency:     cfg.FetchConcurrency,
		Timeout:         cfg.FetchTimeout,
		RateLimit:       cfg.FetchRateLimit,
		BreakerFailures: cfg.BreakerFailures,
		BreakerCooldown: cfg.BreakerCooldown,
	}, clock, logger.With("stage", "fetcher"), m)
	if err != nil {
		return err
	}
	f, err := handlers.NewFetcher(handlers.FetcherConfig{
		Concurrency:   cfg.FetchConcurrency,
		RetryInitial:  cfg.FetchRetryInitial,
		RetryMax:      cfg.FetchRetryMax,
		DeadlineGrace: cfg.DeadlineGrace,
	}, api, pub, clock, logger.With("stage", "fetcher"), m)
	if err != nil {
		return err
	}
	h := router.AddHandler(messages.HandlerFetcher, messages.TopicFetchTasks, sub, messages.TopicFetcherResults, pub, f.Handle)
	mws, err := middleware.Chain(logger, pub, messages.TopicFetcherDLQ, retryConfig(cfg))
	if err != nil {
		return err
	}
	h.AddMiddleware(mws...)
	return nil
}

func addRecorder(roles Roles, cfg config.Config, s store.Store, router *message.Router, b *broker.Broker, pub message.Publisher,
	logger *slog.Logger, m *metrics.Pipeline) error {
	if !roles.Recorder {
		return nil
	}
	sub, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerRecorder))
	if err != nil {
		return err
	}
	r := handlers.NewRecorder(s, logger.With("stage", "recorder"), m)
	h := router.AddConsumerHandler(messages.HandlerRecorder, messages.TopicFetcherResults, sub, r.Handle)
	mws, err := middleware.Chain(logger, pub, messages.TopicResultDLQ, retryConfig(cfg))
	if err != nil {
		return err
	}
	h.AddMiddleware(mws...)
	return nil
}

// addDeadLetterArchiver archives both dead-letter topics in every process
// with the recorder role (it has the store), one router handler per topic in
// the consumer group "dead-letters". It has no poison queue of its own: a
// message it cannot store is retried, then nacked and redelivered.
func addDeadLetterArchiver(roles Roles, cfg config.Config, s store.Store, router *message.Router, b *broker.Broker,
	clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) error {
	if !roles.Recorder {
		return nil
	}
	a := handlers.NewDeadLetterArchiver(s, clock, logger.With("stage", messages.HandlerDeadLetters), m)
	for _, topic := range []string{messages.TopicFetcherDLQ, messages.TopicResultDLQ, messages.TopicSuspicionDLQ} {
		sub, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerDeadLetters))
		if err != nil {
			return err
		}
		h := router.AddConsumerHandler(messages.HandlerDeadLetters+"-"+topic, topic, sub, a.Handler(topic))
		h.AddMiddleware(middleware.Retrying(logger, retryConfig(cfg))...)
	}
	return nil
}

// runScheduler runs the scheduler as leader or hot standby. It starts after
// the router (it depends on it), so in-process subscribers are ready before
// the first task is published.
func runScheduler(lc fx.Lifecycle, roles Roles, cfg config.Config, s store.Store, _ *message.Router, pub message.Publisher,
	clock clockwork.Clock, tp trace.TracerProvider, logger *slog.Logger, m *metrics.Pipeline) {
	if !roles.Scheduler {
		return
	}
	logger = logger.With("stage", "scheduler")
	sched := handlers.NewScheduler(s, pub, clock, handlers.SchedulerConfig{
		Shards: cfg.Shards, SpreadWindow: cfg.SpreadWindow, DeadlineGrace: cfg.DeadlineGrace,
		Tracer: tp.Tracer(tracing.Name),
	}, logger, m)
	suspicion := sched.SuspicionScheduler(handlers.SuspicionSchedulerConfig{
		Interval: cfg.SuspicionInterval, Tracer: tp.Tracer(tracing.Name),
	}, logger.With("schedule", "suspicion"))
	leader := handlers.Leader{TryLead: tryLead(s), Interval: 5 * time.Second, Clock: clock, Logger: logger}
	background(lc, func(ctx context.Context) {
		// The leader schedules both the minute tasks and the suspicion rounds.
		leader.Run(ctx, func(ctx context.Context) error {
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return sched.Run(ctx) })
			if suspicionChecks(cfg) {
				g.Go(func() error { return suspicion.Run(ctx) })
			}
			return g.Wait()
		})
	})
}

// suspicionChecks reports whether the suspicion rounds run. Not on the
// Postgres broker: watermill-sql keeps its transaction open while a handler
// runs, and a message becomes visible only when no older transaction is open
// on the server, so a suspicion task (seconds per is_suspicious answer) would
// stall the per-minute pipeline while it runs.
func suspicionChecks(cfg config.Config) bool { return cfg.Broker != config.BrokerPostgres }

// addSuspicionChecker adds the daily is_suspicious checks (SPEC §1.6): its
// own consumer group, request slots and HTTP client, so the slow API calls
// never hold up the per-minute fetches.
func addSuspicionChecker(roles Roles, cfg config.Config, base APIBaseURL, s store.Store, router *message.Router, b *broker.Broker,
	pub message.Publisher, clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) error {
	if !roles.Suspicion {
		return nil
	}
	if !suspicionChecks(cfg) {
		logger.Warn("suspicion checks are off on the postgres broker: a handler that waits seconds for is_suspicious would hold back every delivery on the database server; use kafka (or gochannel in 'run') for them")
		return nil
	}
	sub, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerSuspicion))
	if err != nil {
		return err
	}
	// A client of its own (no rate limit or breaker): the slow
	// is_suspicious calls never take the fetches' connections.
	api, err := mockstagramapi.New(mockstagramapi.Config{
		BaseURL:     string(base),
		Concurrency: cfg.SuspicionConcurrency,
		Timeout:     cfg.SuspicionTimeout,
	}, clock, logger.With("stage", messages.HandlerSuspicion), m)
	if err != nil {
		return err
	}
	c, err := handlers.NewSuspicionChecker(handlers.SuspicionConfig{
		Concurrency:  cfg.SuspicionConcurrency,
		Attempts:     cfg.SuspicionAttempts,
		RetryInitial: cfg.FetchRetryInitial,
		RetryMax:     cfg.FetchRetryMax,
	}, api, s, pub, clock, logger.With("stage", messages.HandlerSuspicion), m)
	if err != nil {
		return err
	}
	h := router.AddConsumerHandler(messages.HandlerSuspicion, messages.TopicSuspicionTasks, sub, c.Handle)
	mws, err := middleware.Chain(logger, pub, messages.TopicSuspicionDLQ, retryConfig(cfg))
	if err != nil {
		return err
	}
	h.AddMiddleware(mws...)
	return nil
}
