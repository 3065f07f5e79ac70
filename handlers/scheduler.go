package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

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

// Registry is what the scheduler reads of the tracked influencers.
type Registry interface {
	ActivePKs(ctx context.Context) ([]int64, int64, error)
	RegistryVersion(ctx context.Context) (int64, error)
}

// SchedulerConfig configures the scheduler.
type SchedulerConfig struct {
	Shards        int           // pks are hashed into this many shards
	SpreadWindow  time.Duration // shard s is published at s/Shards of this window
	DeadlineGrace time.Duration // a task for minute M expires at M+1m+grace
	// Tracer starts the trace of each shard-minute (nil: no spans); the
	// task's metadata carries it on to the fetcher and the recorder.
	Tracer trace.Tracer
}

// Scheduler publishes, once per minute, one task per non-empty shard at the
// shard's fixed offset inside the spread window. Call Run only while this
// process holds the scheduler lock (see Leader).
type Scheduler struct {
	registry Registry
	pub      Publisher
	clock    clockwork.Clock
	cfg      SchedulerConfig
	logger   *slog.Logger
	metrics  *metrics.Pipeline

	version int64
	shards  [][]int64 // pks by shard, ascending
}

// NewScheduler creates a scheduler.
func NewScheduler(registry Registry, pub Publisher, clock clockwork.Clock, cfg SchedulerConfig, logger *slog.Logger, m *metrics.Pipeline) *Scheduler {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	return &Scheduler{registry: registry, pub: pub, clock: clock, cfg: cfg, logger: logger, metrics: m, version: -1}
}

// Offset is when shard s is published, relative to the start of the minute.
func (s *Scheduler) Offset(shard int) time.Duration {
	return time.Duration(int64(s.cfg.SpreadWindow) * int64(shard) / int64(s.cfg.Shards))
}

// Run schedules minutes until ctx is done. On start (or on taking over from
// another scheduler) the current minute's shards that are already due are
// published at once: they are still inside their deadline, and a duplicate
// of a shard the previous leader already published changes nothing.
func (s *Scheduler) Run(ctx context.Context) error {
	var (
		minute time.Time
		next   int // next shard index to publish in minute
	)
	for {
		now := s.clock.Now()
		if m := now.Truncate(time.Minute); !m.Equal(minute) {
			if !minute.IsZero() && next < s.cfg.Shards {
				s.logger.Warn("minute ended before all shards were published", "minute", minute, "unpublished_from_shard", next)
			}
			minute, next = m, 0
			if err := s.refresh(ctx); err != nil {
				// Keep scheduling the last known registry; retry next minute.
				s.logger.Error("registry refresh", "err", err)
			}
		}
		for next < s.cfg.Shards && !now.Before(minute.Add(s.Offset(next))) {
			if err := s.publish(ctx, minute, next, now); err != nil {
				s.metrics.ScheduleFailures.Inc()
				s.logger.ErrorContext(ctx, "publish task", "minute", minute, "shard", next, "err", err)
				break // retry shortly
			}
			next++
		}
		wait := minute.Add(time.Minute).Sub(now)
		if next < s.cfg.Shards {
			wait = minute.Add(s.Offset(next)).Sub(now)
			if wait <= 0 {
				wait = 200 * time.Millisecond // publishing failed; back off a little
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.clock.After(wait):
		}
	}
}

func (s *Scheduler) publish(ctx context.Context, minute time.Time, shard int, now time.Time) (err error) {
	if shard >= len(s.shards) {
		return nil // the registry has not been loaded yet
	}
	pks := s.shards[shard]
	if len(pks) == 0 {
		return nil
	}
	// A new trace per shard-minute (not a child of Run's context).
	ctx, span := s.cfg.Tracer.Start(ctx, "scheduler publish", trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.Int("mockstagram.shard", shard),
			attribute.String("mockstagram.minute", minute.Format(time.RFC3339)),
			attribute.Int("mockstagram.pks", len(pks)),
		))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	msg, err := messages.NewTask(messages.Task{
		Minute:   minute,
		Shard:    shard,
		Deadline: minute.Add(time.Minute + s.cfg.DeadlineGrace),
		PKs:      pks,
	})
	if err != nil {
		return err
	}
	tracing.Inject(ctx, msg.Metadata)
	if err := s.pub.Publish(messages.TopicFetchTasks, msg); err != nil {
		return fmt.Errorf("publish shard %d: %w", shard, err)
	}
	s.metrics.TasksPublished.Inc()
	s.metrics.SchedulerLag.Observe(now.Sub(minute.Add(s.Offset(shard))).Seconds())
	return nil
}

// refresh reloads the registry when its version changed.
func (s *Scheduler) refresh(ctx context.Context) error {
	version, err := s.registry.RegistryVersion(ctx)
	if err != nil {
		return fmt.Errorf("registry version: %w", err)
	}
	if version == s.version && s.shards != nil {
		return nil
	}
	pks, version, err := s.registry.ActivePKs(ctx)
	if err != nil {
		return fmt.Errorf("active pks: %w", err)
	}
	s.shards = Assign(pks, s.cfg.Shards)
	s.version = version
	s.metrics.RegistrySize.Set(float64(len(pks)))
	s.logger.Info("registry loaded", "pks", len(pks), "version", version)
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
