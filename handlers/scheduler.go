package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/tracing"
)

// RegistryReader is what the schedulers read of the tracked influencers.
type RegistryReader interface {
	ActivePKs(ctx context.Context) ([]int64, int64, error)
	RegistryVersion(ctx context.Context) (int64, error)
}

// SchedulerConfig configures the scheduler.
type SchedulerConfig struct {
	Shards        int           // pks are hashed into this many shards
	SpreadWindow  time.Duration // shard s is published at s/Shards of this window
	DeadlineGrace time.Duration // a task for minute M expires at influencer.Deadline(M, grace)
	// StartWindow is how long the first minute of Run takes: the minute in
	// which the scheduler starts (or takes the lock over) is published whole,
	// shard s at s/Shards of StartWindow after the start, cut to what is left
	// of the spread window (past it, at once). So a fresh start has every
	// tracked pk's first sample within seconds, not at its shard's offset
	// (up to SpreadWindow later), and no shard of the starting minute is
	// skipped; from the next minute on, each shard is at its offset. Zero:
	// DefaultStartWindow; negative: none (the shards due at the start are
	// published at once, the others at their offsets).
	StartWindow time.Duration
	// Tracer starts the trace of each shard-minute (nil: no spans); the
	// task's metadata carries it on to the fetcher and the recorder.
	Tracer trace.Tracer
}

// DefaultStartWindow is SchedulerConfig.StartWindow's default.
const DefaultStartWindow = 5 * time.Second

// Scheduler publishes, once per minute, one task per non-empty shard at the
// shard's fixed offset inside the spread window. Call Run only while this
// process holds the scheduler lock (see Leader).
type Scheduler struct {
	shardScheduler
	cfg SchedulerConfig
}

// NewScheduler creates a scheduler.
func NewScheduler(registry RegistryReader, pub Publisher, clock clockwork.Clock, cfg SchedulerConfig, logger *slog.Logger, m *metrics.Pipeline) *Scheduler {
	return &Scheduler{shardScheduler: newShardScheduler(registry, cfg.Shards, pub, clock, cfg.Tracer, logger, m), cfg: cfg}
}

// Offset is when shard s is published, relative to the start of the minute.
func (s *Scheduler) Offset(shard int) time.Duration {
	return s.spread().offset(shard)
}

func (s *Scheduler) spread() spread {
	start := s.cfg.StartWindow
	if start == 0 {
		start = DefaultStartWindow
	}
	return spread{shards: s.cfg.Shards, period: time.Minute, window: s.cfg.SpreadWindow, start: max(start, 0), clock: s.clock, logger: s.logger}
}

// Run schedules minutes until ctx is done. On start (or on taking over from
// another scheduler) the current minute's shards are published over the
// start window (SchedulerConfig.StartWindow), each once: they are all
// inside their deadline, and a duplicate of a shard the previous leader
// already published changes nothing (its samples are stored once).
func (s *Scheduler) Run(ctx context.Context) error {
	return s.spread().run(ctx, s.registry.refresh, s.publish)
}

func (s *Scheduler) publish(ctx context.Context, minute time.Time, shard int, lag time.Duration) error {
	published, err := s.publishShard(ctx, "scheduler publish", messages.TopicFetchTasks, minute, shard,
		func(pks []int64) (*message.Message, error) {
			return messages.NewTask(messages.Task{
				Minute:   minute,
				Shard:    shard,
				Deadline: influencer.Deadline(minute, s.cfg.DeadlineGrace),
				PKs:      pks,
			})
		})
	if err != nil {
		s.metrics.ScheduleFailures.Inc()
		return err
	}
	if published {
		s.metrics.TasksPublished.Inc()
		s.metrics.SchedulerLag.Observe(lag.Seconds())
	}
	return nil
}

// shardScheduler is what the minute and the suspicion schedulers share: the
// registry by shard, where tasks go, and the trace each task starts.
type shardScheduler struct {
	registry *shardedRegistry
	pub      Publisher
	clock    clockwork.Clock
	tracer   trace.Tracer
	logger   *slog.Logger
	metrics  *metrics.Pipeline
}

func newShardScheduler(registry RegistryReader, shards int, pub Publisher, clock clockwork.Clock, tracer trace.Tracer,
	logger *slog.Logger, m *metrics.Pipeline) shardScheduler {
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	return shardScheduler{registry: newShardedRegistry(registry, shards, logger, m), pub: pub, clock: clock, tracer: tracer, logger: logger, metrics: m}
}

// publishShard publishes to topic the task build makes of the shard's pks,
// as the root span (named span) of a new trace that the task's metadata
// carries on. An empty shard (or a registry not loaded yet) publishes nothing.
func (b shardScheduler) publishShard(ctx context.Context, span, topic string, period time.Time, shard int,
	build func(pks []int64) (*message.Message, error)) (published bool, err error) {
	pks := b.registry.shard(shard)
	if len(pks) == 0 {
		return false, nil
	}
	// A new trace per shard task (not a child of Run's context).
	ctx, sp := b.tracer.Start(ctx, span, trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.Int("mockstagram.shard", shard),
			attribute.String("mockstagram.minute", period.Format(time.RFC3339)),
			attribute.Int("mockstagram.pks", len(pks)),
		))
	defer endSpan(sp, &err)
	msg, err := build(pks)
	if err != nil {
		return false, err
	}
	tracing.Inject(ctx, msg.Metadata)
	if err := b.pub.Publish(topic, msg); err != nil {
		return false, fmt.Errorf("publish shard %d to %s: %w", shard, topic, err)
	}
	return true, nil
}

// endSpan records *err on span and ends it.
func endSpan(span trace.Span, err *error) {
	if *err != nil {
		span.RecordError(*err)
		span.SetStatus(codes.Error, (*err).Error())
	}
	span.End()
}

// spread publishes every shard once per period, shard s at s/shards of the
// window after the period starts (periods are aligned on the clock: minutes,
// days). It refreshes the registry at the start of each period. In the
// period it starts in, with a start window, every shard s is published at
// s/shards of min(start, what is left of the window) after the start;
// without one, the shards already due are published at once and the
// others at their offsets.
type spread struct {
	shards         int
	period, window time.Duration
	start          time.Duration // 0: no start window
	clock          clockwork.Clock
	logger         *slog.Logger
}

func (sp spread) offset(shard int) time.Duration {
	return influencer.SpreadOffset(shard, sp.shards, sp.window)
}

// run calls publish(ctx, period start, shard, lag) for each shard once
// when it is due (lag: how late), until ctx is done; a failed publish is
// retried shortly.
func (sp spread) run(ctx context.Context, refresh func(context.Context) error,
	publish func(ctx context.Context, round time.Time, shard int, lag time.Duration) error) error {
	var (
		round time.Time
		next  int // next shard index to publish in round
		// The starting period's schedule: shard s at catchUp + s/shards of
		// catchUpWidth (catchUp zero: the regular offsets).
		catchUp      time.Time
		catchUpWidth time.Duration
	)
	due := func(shard int) time.Time {
		if !catchUp.IsZero() {
			return catchUp.Add(time.Duration(int64(catchUpWidth) * int64(shard) / int64(sp.shards)))
		}
		return round.Add(sp.offset(shard))
	}
	for {
		now := sp.clock.Now()
		if r := now.Truncate(sp.period); !r.Equal(round) {
			starting := round.IsZero()
			if !starting && next < sp.shards {
				sp.logger.Warn("period ended before all shards were published", "period_start", round, "period", sp.period, "unpublished_from_shard", next)
			}
			round, next, catchUp = r, 0, time.Time{}
			if left := r.Add(sp.window).Sub(now); starting && sp.start > 0 && left > 0 {
				catchUp, catchUpWidth = now, min(sp.start, left)
			}
			if err := refresh(ctx); err != nil {
				// Keep scheduling the last known registry; retry next period.
				sp.logger.Error("registry refresh", "err", err)
			}
		}
		failed := false
		for next < sp.shards && !now.Before(due(next)) {
			if err := publish(ctx, round, next, now.Sub(due(next))); err != nil {
				sp.logger.ErrorContext(ctx, "publish task", "period_start", round, "shard", next, "err", err)
				failed = true
				break // retry shortly
			}
			next++
		}
		// The wait counts from now, not from before the publishes: a slow
		// broker would otherwise push every later shard, and the next
		// period, back by as long as its publishes took.
		now = sp.clock.Now()
		wait := round.Add(sp.period).Sub(now)
		if next < sp.shards {
			wait = due(next).Sub(now)
		}
		if failed {
			wait = max(wait, 200*time.Millisecond) // back off a little
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sp.clock.After(wait):
		}
	}
}

// shardedRegistry is the registry's active pks grouped by shard, reloaded
// when the registry's version changes.
// It is safe for concurrent use: the minute and suspicion schedulers share one.
type shardedRegistry struct {
	registry RegistryReader
	shards   int
	logger   *slog.Logger
	metrics  *metrics.Pipeline

	mu      sync.RWMutex
	version int64
	byShard [][]int64 // pks by shard, ascending
}

func newShardedRegistry(r RegistryReader, shards int, logger *slog.Logger, m *metrics.Pipeline) *shardedRegistry {
	return &shardedRegistry{registry: r, shards: shards, logger: logger, metrics: m, version: -1}
}

// shard returns the pks of shard (nil before the first load).
func (r *shardedRegistry) shard(shard int) []int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if shard >= len(r.byShard) {
		return nil
	}
	return r.byShard[shard]
}

// refresh reloads the registry when its version changed.
func (r *shardedRegistry) refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	version, err := r.registry.RegistryVersion(ctx)
	if err != nil {
		return fmt.Errorf("registry version: %w", err)
	}
	if version == r.version && r.byShard != nil {
		return nil
	}
	pks, version, err := r.registry.ActivePKs(ctx)
	if err != nil {
		return fmt.Errorf("active pks: %w", err)
	}
	r.byShard = Assign(pks, r.shards)
	r.version = version
	r.metrics.RegistrySize.Set(float64(len(pks)))
	r.logger.Info("registry loaded", "pks", len(pks), "version", version)
	return nil
}

// Assign groups pks by shard (stable hash), each shard's pks ascending.
func Assign(pks []int64, shards int) [][]int64 {
	out := make([][]int64, shards)
	for _, pk := range pks {
		sh := influencer.ShardOf(pk, shards)
		out[sh] = append(out[sh], pk)
	}
	for _, p := range out {
		slices.Sort(p)
	}
	return out
}
