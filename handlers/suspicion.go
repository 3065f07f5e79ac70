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
	"go.opentelemetry.io/otel/trace"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/tracing"
)

// SuspicionSchedulerConfig configures the suspicion scheduler.
type SuspicionSchedulerConfig struct {
	Shards int // the same shards as the minute tasks
	// Interval between two checks of a pk (a day): rounds are aligned on
	// it, and shard s is published at s/Shards of it after the round starts,
	// so the slow is_suspicious calls spread evenly over the round.
	Interval time.Duration
	Tracer   trace.Tracer // nil: no spans
}

// SuspicionScheduler publishes, once per round, one suspicion task per
// non-empty shard at the shard's offset in the round. It runs next to the
// minute scheduler, under the same leadership. Shards already due when it
// starts (a restart, a standby taking over) are published at once: the
// checker skips pks already answered in the round, so that is cheap.
type SuspicionScheduler struct {
	shardScheduler
	cfg SuspicionSchedulerConfig
}

// NewSuspicionScheduler creates a suspicion scheduler.
func NewSuspicionScheduler(registry RegistryReader, pub Publisher, clock clockwork.Clock, cfg SuspicionSchedulerConfig, logger *slog.Logger, m *metrics.Pipeline) *SuspicionScheduler {
	return &SuspicionScheduler{shardScheduler: newShardScheduler(registry, cfg.Shards, pub, clock, cfg.Tracer, logger, m), cfg: cfg}
}

// SuspicionScheduler returns a suspicion scheduler that publishes through
// this scheduler's publisher and reads its view of the registry, which the
// minute scheduler reloads each minute: the registry is loaded once, and a
// round's tasks carry the latest tracked pks. cfg.Shards is this
// scheduler's.
func (s *Scheduler) SuspicionScheduler(cfg SuspicionSchedulerConfig, logger *slog.Logger) *SuspicionScheduler {
	cfg.Shards = s.cfg.Shards
	b := s.shardScheduler
	b.logger = logger
	if cfg.Tracer != nil {
		b.tracer = cfg.Tracer
	}
	return &SuspicionScheduler{shardScheduler: b, cfg: cfg}
}

func (s *SuspicionScheduler) spread() spread {
	return spread{shards: s.cfg.Shards, period: s.cfg.Interval, window: s.cfg.Interval, clock: s.clock, logger: s.logger}
}

// Offset is when shard s is published, relative to the start of the round.
func (s *SuspicionScheduler) Offset(shard int) time.Duration { return s.spread().offset(shard) }

// Run schedules rounds until ctx is done.
func (s *SuspicionScheduler) Run(ctx context.Context) error {
	return s.spread().run(ctx, s.registry.refresh, s.publish)
}

func (s *SuspicionScheduler) publish(ctx context.Context, round time.Time, shard int, _ time.Duration) error {
	published, err := s.publishShard(ctx, "suspicion scheduler publish", messages.TopicSuspicionTasks, round, shard,
		func(pks []int64) (*message.Message, error) {
			return messages.NewSuspicionTask(messages.SuspicionTask{
				Round: round, Shard: shard,
				// The next round's task for this shard supersedes this one.
				Deadline: round.Add(s.Offset(shard) + s.cfg.Interval),
				PKs:      pks,
			})
		})
	if published {
		s.metrics.SuspicionTasksPublished.Inc()
	}
	return err
}

// SuspicionStore is what the checker reads and writes.
type SuspicionStore interface {
	SuspicionCandidates(ctx context.Context, pks []int64, checkedSince time.Time) ([]influencer.SuspicionCandidate, error)
	SaveSuspicion(ctx context.Context, answers []influencer.Suspicion) error
}

// SuspicionAPI is what the checker calls (mockstagramapi.Client): the
// is_suspicious answer for a candidate's latest values. Errors are
// classified (mockstagramapi.Error).
type SuspicionAPI interface {
	IsSuspicious(ctx context.Context, cand influencer.SuspicionCandidate) (bool, error)
}

// SuspicionConfig configures the suspicion checker.
type SuspicionConfig struct {
	Concurrency  int           // in-flight is_suspicious requests per process, all tasks together
	Attempts     int           // requests per pk at most, for retryable failures
	RetryInitial time.Duration // first backoff interval
	RetryMax     time.Duration // largest backoff interval
	// TaskBudget bounds one delivery of a task (0: none): once it has
	// passed, no new request or retry starts, the requests in flight end
	// (each within its timeout), the answers are stored (within
	// SuspicionSaveTimeout) and the pks not asked yet
	// are published as a continuation task of the same round, shard and
	// deadline, and the task is acked. For brokers that take a message back
	// when its handler runs too long (the postgres broker's ack deadline).
	TaskBudget time.Duration
}

// SuspicionSaveTimeout bounds the store's write of a task's answers.
const SuspicionSaveTimeout = 30 * time.Second

// SuspicionChecker refreshes the is_suspicious answers of a shard: for the
// task's pks that are tracked, have data and were not answered in the task's
// round, it asks is_suspicious about their latest stored values with bounded
// concurrency (its own slots and API client, so the slow API never holds up
// the per-minute fetches), retries what can succeed, stores the answers in
// one batch and dead-letters, with reasons, the pks it gave up on.
type SuspicionChecker struct {
	cfg     SuspicionConfig
	api     SuspicionAPI
	sem     chan struct{}
	store   SuspicionStore
	pub     Publisher // dead letters and continuation tasks
	clock   clockwork.Clock
	logger  *slog.Logger
	metrics *metrics.Pipeline
}

// NewSuspicionChecker creates a checker; api should have a connection pool
// of its own, sized for cfg.Concurrency.
func NewSuspicionChecker(cfg SuspicionConfig, api SuspicionAPI, store SuspicionStore, pub Publisher,
	clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) (*SuspicionChecker, error) {
	if cfg.Concurrency < 1 || cfg.Attempts < 1 || cfg.RetryInitial <= 0 || cfg.RetryMax < cfg.RetryInitial || cfg.TaskBudget < 0 {
		return nil, fmt.Errorf("suspicion checker: want concurrency >= 1, attempts >= 1, 0 < retry initial <= max and task budget >= 0; got %+v", cfg)
	}
	return &SuspicionChecker{
		cfg: cfg, api: api, sem: make(chan struct{}, cfg.Concurrency), store: store, pub: pub,
		clock: clock, logger: logger, metrics: m,
	}, nil
}

// Handle is the Watermill handler for suspicion_tasks.
func (c *SuspicionChecker) Handle(msg *message.Message) error {
	task, err := messages.DecodeSuspicionTask(msg.Payload)
	if err != nil {
		return err
	}
	ctx := msg.Context()
	if now := c.clock.Now(); !now.Before(task.Deadline) {
		c.metrics.SuspicionChecks.WithLabelValues(ClassExpired).Add(float64(len(task.PKs)))
		c.logger.WarnContext(ctx, "suspicion task superseded by the next round; skipped",
			"shard", task.Shard, "round", task.Round, "deadline", task.Deadline, "pks", len(task.PKs))
		return nil
	}
	candidates, err := c.store.SuspicionCandidates(ctx, uniq(task.PKs), task.Round)
	if err != nil {
		return fmt.Errorf("suspicion candidates of shard %d: %w", task.Shard, err)
	}
	answers, failures, rest := c.check(ctx, task, candidates)
	if len(answers) > 0 {
		// Stored even when shutdown cut the task short: what was answered
		// is not asked again on redelivery.
		saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SuspicionSaveTimeout)
		err := c.store.SaveSuspicion(saveCtx, answers)
		cancel()
		if err != nil {
			return fmt.Errorf("save suspicion answers of shard %d: %w", task.Shard, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("suspicion task of shard %d cut short (%d answered): %w", task.Shard, len(answers), err)
	}
	if len(rest) > 0 {
		next := task
		next.PKs = rest
		cont, err := messages.NewSuspicionTask(next)
		if err != nil {
			return err
		}
		messages.InheritMetadata(cont.Metadata, msg.Metadata)
		tracing.Inject(ctx, cont.Metadata)
		if err := c.pub.Publish(messages.TopicSuspicionTasks, cont); err != nil {
			return fmt.Errorf("publish the continuation of suspicion task of shard %d: %w", task.Shard, err)
		}
		c.logger.InfoContext(ctx, "suspicion task over its budget; the rest continues in a new task",
			"shard", task.Shard, "round", task.Round, "answered", len(answers), "rest", len(rest), "budget", c.cfg.TaskBudget)
	}
	for _, fl := range failures {
		if fl.Class == ClassExpired {
			continue // counted; the next round checks it again
		}
		dl, err := messages.NewSuspicionDeadLetter(messages.FetchDeadLetter{Failure: fl, Shard: task.Shard})
		if err != nil {
			return err
		}
		messages.InheritMetadata(dl.Metadata, msg.Metadata)
		tracing.Inject(ctx, dl.Metadata)
		if err := c.pub.Publish(messages.TopicSuspicionDLQ, dl); err != nil {
			return fmt.Errorf("publish suspicion dead letter: %w", err)
		}
		c.metrics.DeadLetters.WithLabelValues(messages.TopicSuspicionDLQ).Inc()
	}
	return nil
}

// check asks is_suspicious for every candidate until the task's deadline;
// rest are the pks not asked when the task's budget ran out.
func (c *SuspicionChecker) check(ctx context.Context, task messages.SuspicionTask, candidates []influencer.SuspicionCandidate) ([]influencer.Suspicion, []influencer.Failure, []int64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := c.clock.AfterFunc(task.Deadline.Sub(c.clock.Now()), cancel)
	defer stop.Stop()
	budgetOver := make(chan struct{}) // never closed without a budget
	if c.cfg.TaskBudget > 0 {
		stopBudget := c.clock.AfterFunc(c.cfg.TaskBudget, func() { close(budgetOver) })
		defer stopBudget.Stop()
	}

	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		answers  []influencer.Suspicion
		failures []influencer.Failure
		rest     []int64
	)
	for _, cand := range candidates {
		wg.Go(func() {
			a, fl, later := c.checkOne(ctx, budgetOver, cand, task.Round, task.Deadline)
			mu.Lock()
			defer mu.Unlock()
			if later {
				rest = append(rest, cand.PK)
				return
			}
			if fl != nil {
				failures = append(failures, *fl)
				c.metrics.SuspicionChecks.WithLabelValues(fl.Class).Inc()
				return
			}
			answers = append(answers, a)
			outcome := "not_suspicious"
			if a.Suspicious {
				outcome = "suspicious"
			}
			c.metrics.SuspicionChecks.WithLabelValues(outcome).Inc()
		})
	}
	wg.Wait()
	slices.SortFunc(answers, func(a, b influencer.Suspicion) int { return cmpInt(a.PK, b.PK) })
	slices.SortFunc(failures, func(a, b influencer.Failure) int { return cmpInt(a.PK, b.PK) })
	slices.Sort(rest)
	return answers, failures, rest
}

// checkOne asks for one pk, retrying retryable failures with the backoff
// (Retry-After when longer) up to cfg.Attempts, never past the deadline.
// later: the task's budget ran out before a request could start (the pk
// goes on in the continuation task; a failed attempt is asked again there).
func (c *SuspicionChecker) checkOne(ctx context.Context, budgetOver <-chan struct{}, cand influencer.SuspicionCandidate, round, deadline time.Time) (_ influencer.Suspicion, _ *influencer.Failure, later bool) {
	fail := func(class, reason string, attempts int) (influencer.Suspicion, *influencer.Failure, bool) {
		return influencer.Suspicion{}, &influencer.Failure{PK: cand.PK, Minute: round, Class: class, Reason: reason, Attempts: attempts}, false
	}
	retry := newRetryBackoff(c.cfg.RetryInitial, c.cfg.RetryMax, c.clock)
	for attempt := 1; ; attempt++ {
		select {
		case <-budgetOver:
			return influencer.Suspicion{}, nil, true
		default:
		}
		select {
		case c.sem <- struct{}{}:
		case <-budgetOver:
			return influencer.Suspicion{}, nil, true
		case <-ctx.Done():
			return fail(ClassExpired, "stopped (round over or shutdown) while waiting for a request slot", attempt-1)
		}
		suspicious, err := c.api.IsSuspicious(ctx, cand)
		<-c.sem
		if err == nil {
			return influencer.Suspicion{PK: cand.PK, Suspicious: suspicious, CheckedAt: c.clock.Now().UTC()}, nil, false
		}
		ferr := mockstagramapi.AsError(err)
		if ctx.Err() != nil {
			return fail(ClassExpired, ferr.Reason+"; stopped (round over or shutdown)", attempt)
		}
		if !ferr.Retryable || attempt >= c.cfg.Attempts {
			return fail(ferr.Class, ferr.Reason, attempt)
		}
		wait, ok := retry.next(ferr.RetryAfter, deadline)
		if !ok {
			return fail(ClassExpired, ferr.Reason+"; stopped (round over or shutdown)", attempt)
		}
		select {
		case <-c.clock.After(wait):
		case <-budgetOver:
			return influencer.Suspicion{}, nil, true
		case <-ctx.Done():
			return fail(ClassExpired, ferr.Reason+"; stopped (round over or shutdown)", attempt)
		}
	}
}
