package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/tracing"
)

// ClassExpired is the failure class of work that ran out of time: a task
// received after its deadline, or a pk the deadline cut short before a
// request was sent. It is counted as missed, never dead-lettered. The
// classes of a request's failure are the API client's (mockstagramapi).
const ClassExpired = "expired"

// InfluencerAPI is what the fetcher calls (mockstagramapi.Client): pk's
// current values, without minute or fetch time. Unless zero, deadline is
// the latest moment the request may start. Errors are classified
// (mockstagramapi.Error, mockstagramapi.ErrRateLimitDeadline).
type InfluencerAPI interface {
	Influencer(ctx context.Context, pk int64, deadline time.Time) (influencer.Sample, error)
}

// FetcherConfig configures the fetcher.
type FetcherConfig struct {
	Concurrency   int           // in-flight requests per process, shared by all shards
	RetryInitial  time.Duration // first backoff interval
	RetryMax      time.Duration // largest backoff interval
	DeadlineGrace time.Duration // a fetch for minute M counts until influencer.Deadline(M, grace)
}

// Fetcher turns a shard-minute task into one result message: it fetches
// every pk with bounded concurrency and retries, and never keeps a value
// fetched outside the task's minute (plus grace). Dead letters carry the
// pks it gave up on.
type Fetcher struct {
	cfg     FetcherConfig
	api     InfluencerAPI
	sem     chan struct{}
	dlq     Publisher
	clock   clockwork.Clock
	logger  *slog.Logger
	metrics *metrics.Pipeline
}

// NewFetcher creates a fetcher.
func NewFetcher(cfg FetcherConfig, api InfluencerAPI, dlq Publisher, clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) (*Fetcher, error) {
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("fetcher concurrency %d < 1", cfg.Concurrency)
	}
	if cfg.RetryInitial <= 0 || cfg.RetryMax < cfg.RetryInitial {
		return nil, fmt.Errorf("fetcher retry %s..%s: want 0 < initial <= max", cfg.RetryInitial, cfg.RetryMax)
	}
	return &Fetcher{cfg: cfg, api: api, sem: make(chan struct{}, cfg.Concurrency),
		dlq: dlq, clock: clock, logger: logger, metrics: m}, nil
}

// Handle is the Watermill handler for influencer_fetch_tasks.
func (f *Fetcher) Handle(msg *message.Message) ([]*message.Message, error) {
	task, err := messages.DecodeTask(msg.Payload)
	if err != nil {
		return nil, err
	}
	batch := f.Fetch(msg.Context(), task)

	for _, fl := range batch.Failures {
		if fl.Class == ClassExpired {
			continue // counted as missed by the recorder, not dead-lettered
		}
		dl, err := messages.NewFetchDeadLetter(messages.FetchDeadLetter{Failure: fl, Shard: task.Shard})
		if err != nil {
			return nil, err
		}
		// The task's metadata (correlation id) travels on; the dead letter
		// belongs to the fetcher's span of the task's trace.
		messages.InheritMetadata(dl.Metadata, msg.Metadata)
		tracing.Inject(msg.Context(), dl.Metadata)
		if err := f.dlq.Publish(messages.TopicFetcherDLQ, dl); err != nil {
			return nil, fmt.Errorf("publish dead letter: %w", err)
		}
		f.metrics.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ).Inc()
	}
	out, err := messages.NewResult(batch)
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}

// Fetch fetches every pk of the task and returns the batch: samples for the
// pks fetched inside the minute, failures (with class and reason) for the rest.
func (f *Fetcher) Fetch(ctx context.Context, task messages.Task) influencer.Batch {
	batch := influencer.Batch{Minute: task.Minute, Shard: task.Shard}
	deadline := influencer.Deadline(task.Minute, f.cfg.DeadlineGrace)
	if task.Deadline.Before(deadline) {
		deadline = task.Deadline
	}
	now := f.clock.Now()
	if !now.Before(deadline) {
		f.metrics.TasksExpired.Inc()
		for _, pk := range task.PKs {
			batch.Failures = append(batch.Failures, influencer.Failure{PK: pk, Minute: task.Minute, Class: ClassExpired,
				Reason: fmt.Sprintf("task received at %s, after its deadline %s", now.UTC().Format(time.RFC3339), deadline.UTC().Format(time.RFC3339))})
		}
		f.metrics.FetchFailures.WithLabelValues(ClassExpired).Add(float64(len(task.PKs)))
		return batch
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := f.clock.AfterFunc(deadline.Sub(now), cancel)
	defer stop.Stop()

	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, pk := range uniq(task.PKs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, fl := f.fetchPK(ctx, pk, task.Minute, deadline)
			mu.Lock()
			defer mu.Unlock()
			if fl != nil {
				batch.Failures = append(batch.Failures, *fl)
				f.metrics.FetchFailures.WithLabelValues(fl.Class).Inc()
				return
			}
			batch.Samples = append(batch.Samples, s)
		}()
	}
	wg.Wait()
	slices.SortFunc(batch.Samples, func(a, b influencer.Sample) int { return cmpInt(a.PK, b.PK) })
	slices.SortFunc(batch.Failures, func(a, b influencer.Failure) int { return cmpInt(a.PK, b.PK) })
	return batch
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func uniq(pks []int64) []int64 {
	out := slices.Clone(pks)
	slices.Sort(out)
	return slices.Compact(out)
}

// fetchPK fetches one pk with retries until the deadline.
func (f *Fetcher) fetchPK(ctx context.Context, pk int64, minute, deadline time.Time) (influencer.Sample, *influencer.Failure) {
	fail := func(class, reason string, attempts int) (influencer.Sample, *influencer.Failure) {
		return influencer.Sample{}, &influencer.Failure{PK: pk, Minute: minute, Class: class, Reason: reason, Attempts: attempts}
	}
	// A value read before the minute starts belongs to the previous minute.
	if wait := minute.Sub(f.clock.Now()); wait > 0 {
		select {
		case <-ctx.Done():
			return fail(ClassExpired, "deadline passed before the minute started", 0)
		case <-f.clock.After(wait):
		}
	}
	retry := newRetryBackoff(f.cfg.RetryInitial, f.cfg.RetryMax, f.clock)
	var (
		last     *mockstagramapi.Error // the previous attempt's error
		attempts int                   // requests sent (not those the breaker failed fast)
	)
	for {
		select {
		case f.sem <- struct{}{}:
		case <-ctx.Done():
			return fail(ClassExpired, "deadline passed while waiting for a fetch slot", attempts)
		}
		s, err := f.api.Influencer(ctx, pk, deadline)
		<-f.sem
		if errors.Is(err, mockstagramapi.ErrRateLimitDeadline) {
			return fail(ClassExpired, "deadline passed while waiting for the rate limit", attempts)
		}
		var ferr *mockstagramapi.Error
		if err != nil {
			ferr = mockstagramapi.AsError(err)
		}
		if ferr == nil || ferr.Class != mockstagramapi.ClassCircuitOpen {
			attempts++
			if ferr != nil && ctx.Err() != nil {
				// The minute's deadline (or shutdown) cut this request short: its
				// "context canceled" is no connection error of the API.
				if last == nil {
					last = &mockstagramapi.Error{Class: mockstagramapi.ClassTimeout, Reason: "request still running"}
				}
				return fail(last.Class, last.Reason+"; gave up at the minute's deadline", attempts)
			}
		}
		last = ferr

		if ferr == nil {
			now := f.clock.Now()
			if !now.Before(deadline) {
				return fail(ClassExpired, "response arrived after the minute's deadline", attempts)
			}
			s.Minute, s.FetchedAt = minute, now
			return s, nil
		}
		if !ferr.Retryable {
			return fail(ferr.Class, ferr.Reason, attempts)
		}
		wait, ok := retry.next(ferr.RetryAfter, deadline)
		if ctx.Err() != nil || !ok {
			return fail(ferr.Class, ferr.Reason+"; gave up at the minute's deadline", attempts)
		}
		if ferr.Class != mockstagramapi.ClassCircuitOpen {
			f.metrics.FetchRetries.Inc()
		}
		if !retry.sleep(ctx, wait) {
			return fail(ferr.Class, ferr.Reason+"; gave up at the minute's deadline", attempts)
		}
	}
}
