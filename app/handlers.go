package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
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
	"github.com/mockstagram/pipeline/mockstagramapi/adaptive"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/tracing"
)

// HandlersModule adds the stages this process runs.
var HandlersModule = fx.Module("handlers",
	// What the scheduler's leader does, for readiness (HTTPModule).
	fx.Provide(func() *handlers.LeaderStatus { return &handlers.LeaderStatus{} }),
	fx.Invoke(addFetcher, addRecorder, addSuspicionChecker, addDeadLetterArchiver, runScheduler),
)

func retryConfig(cfg config.Config) middleware.Retry {
	return middleware.Retry{MaxRetries: cfg.RecorderRetries, InitialInterval: 100 * time.Millisecond, MaxInterval: 5 * time.Second}
}

// redeliveryMinFailing is how long a message must have kept failing (on
// top of redelivery-limit deliveries) before it is given up: a recorder
// that loses its connection for a few seconds retries, it does not
// dead-letter.
const redeliveryMinFailing = time.Minute

// redeliveryConfig caps the redeliveries of a stage's messages; minutely
// messages (tasks and results, with a minute in their metadata) are also
// given up once past their minute's deadline. A store outage (Ping fails
// too) is excused: those messages wait for the store.
func redeliveryConfig(cfg config.Config, clock clockwork.Clock, m *metrics.Pipeline, minutely bool) middleware.Redelivery {
	rd := middleware.Redelivery{
		Limit: cfg.RedeliveryLimit, MinFailing: redeliveryMinFailing, Clock: clock, GivenUp: m.MessagesGivenUp,
		Excused: func(err error) bool { return errors.Is(err, handlers.ErrStoreUnavailable) },
	}
	if minutely {
		rd.Deadline = func(msg *message.Message) (time.Time, bool) {
			minute, err := time.Parse(time.RFC3339, msg.Metadata.Get(messages.MetaMinute))
			if err != nil || !influencer.IsMinute(minute) {
				return time.Time{}, false
			}
			return influencer.Deadline(minute, cfg.DeadlineGrace), true
		}
	}
	return rd
}

func addFetcher(lc fx.Lifecycle, roles Roles, cfg config.Config, base APIBaseURL, router *message.Router, b *broker.Broker, pub message.Publisher,
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
	var fetchAPI handlers.InfluencerAPI = api
	if cfg.FetchAdaptive {
		limit, err := adaptive.New(adaptive.Config{Min: cfg.FetchAdaptiveMin, Max: cfg.FetchConcurrency, Target: cfg.FetchAdaptiveRTT}, clock, m)
		if err != nil {
			return err
		}
		fetchAPI = adaptive.Wrap(api, limit)
	}
	f, err := handlers.NewFetcher(handlers.FetcherConfig{
		Concurrency:   cfg.FetchConcurrency,
		RetryInitial:  cfg.FetchRetryInitial,
		RetryMax:      cfg.FetchRetryMax,
		DeadlineGrace: cfg.DeadlineGrace,
	}, fetchAPI, pub, clock, logger.With("stage", "fetcher"), m)
	if err != nil {
		return err
	}
	// On stop its workers end with the last shard in flight (not after
	// their linger); shards the router still hands over are fetched.
	lc.Append(fx.Hook{OnStop: func(context.Context) error {
		f.Close()
		api.CloseIdleConnections()
		return nil
	}})
	h := router.AddHandler(messages.HandlerFetcher, messages.TopicFetchTasks, sub, messages.TopicFetcherResults, pub, f.Handle)
	mws, err := middleware.Chain(logger, pub, messages.TopicFetcherDLQ, retryConfig(cfg), redeliveryConfig(cfg, clock, m, true))
	if err != nil {
		return err
	}
	h.AddMiddleware(mws...)
	return nil
}

func addRecorder(roles Roles, cfg config.Config, s store.Store, router *message.Router, b *broker.Broker, pub message.Publisher,
	clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) error {
	if !roles.Recorder {
		return nil
	}
	sub, err := b.Subscriber(broker.ConsumerGroup(messages.HandlerRecorder))
	if err != nil {
		return err
	}
	r := handlers.NewRecorder(s, logger.With("stage", "recorder"), m)
	h := router.AddConsumerHandler(messages.HandlerRecorder, messages.TopicFetcherResults, sub, r.Handle)
	mws, err := middleware.Chain(logger, pub, messages.TopicResultDLQ, retryConfig(cfg), redeliveryConfig(cfg, clock, m, true))
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

// reconcileSettle is how long after a minute's deadline its late results
// (a recorder backlog) get before the reconciler records what is still
// missing as not-scheduled. A late sample still replaces its miss, but
// recording a million misses only to take them back is work a recorder
// that is behind cannot spare: 90 s covers the backlogs seen at 1,000,000
// pks a minute (freshness p99 under a minute).
const reconcileSettle = 90 * time.Second

// runScheduler runs the scheduler as leader or hot standby. It starts after
// the router (it depends on it), so in-process subscribers are ready before
// the first task is published.
func runScheduler(lc fx.Lifecycle, roles Roles, cfg config.Config, s store.Store, _ *message.Router, pub message.Publisher,
	clock clockwork.Clock, tp trace.TracerProvider, logger *slog.Logger, m *metrics.Pipeline, status *handlers.LeaderStatus) {
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
	reconciler := handlers.NewReconciler(s, clock, handlers.ReconcilerConfig{
		Lookback: cfg.ReconcileLookback, DeadlineGrace: cfg.DeadlineGrace, Settle: reconcileSettle,
	}, logger.With("work", "reconcile"), m)
	movers := handlers.MoversJob{Store: s, Clock: clock, Window: store.MoversWindow, Logger: logger.With("work", "movers")}
	// A lock call hanging on a silent network is given up after 10 s (a
	// healthy database answers in milliseconds, a busy pool within seconds).
	leader := handlers.Leader{TryLead: tryLead(s), Interval: 5 * time.Second, Timeout: 10 * time.Second,
		Clock: clock, Logger: logger, Status: status}
	background(lc, func(ctx context.Context) {
		// The leader schedules the minute tasks and the suspicion rounds,
		// reconciles the minutes nobody scheduled, and recomputes the top
		// movers hourly.
		leader.Run(ctx, func(ctx context.Context) error {
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return sched.Run(ctx) })
			g.Go(func() error { return reconciler.Run(ctx) })
			g.Go(func() error { return movers.Run(ctx) })
			g.Go(func() error { return suspicion.Run(ctx) })
			return g.Wait()
		})
	})
}

// addSuspicionChecker adds the daily is_suspicious checks (SPEC §1.6): its
// own consumer group, request slots and HTTP client, so the slow API calls
// never hold up the per-minute fetches.
func addSuspicionChecker(roles Roles, cfg config.Config, base APIBaseURL, s store.Store, router *message.Router, b *broker.Broker,
	pub message.Publisher, clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) error {
	if !roles.Suspicion {
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
		TaskBudget:   suspicionTaskBudget(cfg),
	}, api, s, pub, clock, logger.With("stage", messages.HandlerSuspicion), m)
	if err != nil {
		return err
	}
	h := router.AddConsumerHandler(messages.HandlerSuspicion, messages.TopicSuspicionTasks, sub, c.Handle)
	mws, err := middleware.Chain(logger, pub, messages.TopicSuspicionDLQ, retryConfig(cfg), redeliveryConfig(cfg, clock, m, false))
	if err != nil {
		return err
	}
	h.AddMiddleware(mws...)
	return nil
}
