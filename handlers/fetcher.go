package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

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

	// LetterInterval is how often a pk's permanent failure of one class is
	// dead-lettered at most (0: DefaultLetterInterval); LetterMemory bounds
	// how many (pk, class) pairs are remembered for it (0:
	// DefaultLetterMemory).
	LetterInterval time.Duration
	LetterMemory   int
}

// Defaults of the dead-letter suppression.
const (
	DefaultLetterInterval = time.Hour
	DefaultLetterMemory   = 100_000
)

// Fetcher turns a shard-minute task into one result message: it fetches
// every pk with bounded concurrency and retries, and never keeps a value
// fetched outside the task's minute (plus grace). Every pk it could not
// fetch travels in the result's failures (recorded missed); a permanent
// failure (the API's answer will not change) is also dead-lettered, at most
// once per pk and class per LetterInterval, with the count of failures since
// the previous letter.
//
// The requests of all shards in flight are made by one pool of at most
// Concurrency workers, fed by a queue of pks; a retry waits on the clock
// without holding a worker. Workers start when there is work and end when
// no shard has been in flight for workerLinger (the next shard usually
// comes sooner: a worker's grown stack and warm state are kept), or at once
// after Close.
type Fetcher struct {
	cfg     FetcherConfig
	api     InfluencerAPI
	dlq     Publisher
	clock   clockwork.Clock
	logger  *slog.Logger
	metrics *metrics.Pipeline
	letters *letterGate

	failures sync.Map // class -> FetchFailures' prometheus.Counter

	mu      sync.Mutex
	work    sync.Cond // signalled when queue grows or runs drops to 0
	queue   []*pkJob  // FIFO from head
	head    int
	workers int       // live
	idle    int       // waiting for work
	woken   int       // of them, signalled and not yet running
	runs    int       // shard fetches in flight
	idleAt  time.Time // (real time) when runs last dropped to 0
	expired bool      // no run for workerLinger: idle workers end
	closed  bool      // Close was called: workers end whenever no run is in flight
}

// NewFetcher creates a fetcher.
func NewFetcher(cfg FetcherConfig, api InfluencerAPI, dlq Publisher, clock clockwork.Clock, logger *slog.Logger, m *metrics.Pipeline) (*Fetcher, error) {
	if cfg.Concurrency < 1 {
		return nil, fmt.Errorf("fetcher concurrency %d < 1", cfg.Concurrency)
	}
	if cfg.RetryInitial <= 0 || cfg.RetryMax < cfg.RetryInitial {
		return nil, fmt.Errorf("fetcher retry %s..%s: want 0 < initial <= max", cfg.RetryInitial, cfg.RetryMax)
	}
	if cfg.LetterInterval <= 0 {
		cfg.LetterInterval = DefaultLetterInterval
	}
	if cfg.LetterMemory <= 0 {
		cfg.LetterMemory = DefaultLetterMemory
	}
	f := &Fetcher{cfg: cfg, api: api, dlq: dlq, clock: clock, logger: logger, metrics: m,
		letters: newLetterGate(cfg.LetterInterval, cfg.LetterMemory)}
	f.work.L = &f.mu
	return f, nil
}

// Handle is the Watermill handler for influencer_fetch_tasks.
func (f *Fetcher) Handle(msg *message.Message) ([]*message.Message, error) {
	task, err := messages.DecodeTask(msg.Payload)
	if err != nil {
		return nil, err
	}
	batch := f.Fetch(msg.Context(), task)
	if err := f.deadLetter(msg, task.Shard, batch.Failures); err != nil {
		return nil, err
	}
	out, err := messages.NewResult(batch)
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}

// IsPermanent reports whether a failure of class is permanent: the API's
// answer will not change by asking again, so a human must look at it.
// Transient failures (timeouts, connection errors, 5xx, 429, an open
// breaker, expired work) are recorded missed only.
func IsPermanent(class string) bool {
	switch class {
	case mockstagramapi.ClassNotFound, mockstagramapi.ClassMalformed, mockstagramapi.ClassOversize,
		mockstagramapi.ClassInvalid, mockstagramapi.ClassClient:
		return true
	}
	return false
}

// deadLetter publishes the dead letters of a batch's failures: permanent
// ones only, at most one per pk and class per LetterInterval.
func (f *Fetcher) deadLetter(msg *message.Message, shard int, failures []influencer.Failure) error {
	for _, fl := range failures {
		if !IsPermanent(fl.Class) {
			continue
		}
		count, undo, send := f.letters.admit(fl.PK, fl.Class, f.clock.Now())
		if !send {
			f.metrics.DeadLettersSuppressed.Inc()
			continue
		}
		dl, err := messages.NewFetchDeadLetter(messages.FetchDeadLetter{Failure: fl, Shard: shard})
		if err != nil {
			undo()
			return err
		}
		dl.Metadata.Set(messages.MetaCount, strconv.Itoa(count))
		// The task's metadata (correlation id) travels on; the dead letter
		// belongs to the fetcher's span of the task's trace.
		messages.InheritMetadata(dl.Metadata, msg.Metadata)
		tracing.Inject(msg.Context(), dl.Metadata)
		if err := f.dlq.Publish(messages.TopicFetcherDLQ, dl); err != nil {
			undo() // the task is redelivered: its letters go again
			return fmt.Errorf("publish dead letter: %w", err)
		}
		f.metrics.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ).Inc()
	}
	return nil
}

// Fetch fetches every pk of the task and returns the batch: samples for the
// pks fetched inside the minute, failures (with class and reason) for the
// rest, both sorted by pk.
func (f *Fetcher) Fetch(ctx context.Context, task messages.Task) influencer.Batch {
	batch := influencer.Batch{Minute: task.Minute, Shard: task.Shard}
	deadline := influencer.Deadline(task.Minute, f.cfg.DeadlineGrace)
	if task.Deadline.Before(deadline) {
		deadline = task.Deadline
	}
	now := f.clock.Now()
	if !now.Before(deadline) {
		f.metrics.TasksExpired.Inc()
		reason := fmt.Sprintf("task received at %s, after its deadline %s", now.UTC().Format(time.RFC3339), deadline.UTC().Format(time.RFC3339))
		batch.Failures = make([]influencer.Failure, 0, len(task.PKs))
		for _, pk := range task.PKs {
			batch.Failures = append(batch.Failures, influencer.Failure{PK: pk, Minute: task.Minute, Class: ClassExpired, Reason: reason})
		}
		f.failureCounter(ClassExpired).Add(float64(len(task.PKs)))
		return batch
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := f.clock.AfterFunc(deadline.Sub(now), cancel)
	defer stop.Stop()

	pks := uniq(task.PKs)
	r := &shardRun{ctx: ctx, minute: task.Minute, deadline: deadline, shard: task.Shard, jobs: make([]pkJob, len(pks)),
		pending: len(pks), done: make(chan struct{})}
	for i, pk := range pks {
		r.jobs[i] = pkJob{run: r, pk: pk}
	}
	// A value read before the minute starts belongs to the previous minute.
	if wait := task.Minute.Sub(now); wait > 0 {
		select {
		case <-ctx.Done():
			return f.collect(r, "deadline passed before the minute started")
		case <-f.clock.After(wait):
		}
	}
	if len(pks) > 0 {
		f.start(r)
		select {
		case <-r.done:
		case <-ctx.Done():
		}
		f.finish()
	}
	return f.collect(r, "")
}

// collect closes the run and builds its batch; a pk still in the works is
// a failure by where it is (cut short at the deadline). unstarted, if set,
// is the reason of pks never queued.
func (f *Fetcher) collect(r *shardRun, unstarted string) influencer.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	batch := influencer.Batch{Minute: r.minute, Shard: r.shard}
	nFail := 0
	for i := range r.jobs {
		if j := &r.jobs[i]; !j.ok {
			nFail++
		}
	}
	if n := len(r.jobs) - nFail; n > 0 {
		batch.Samples = make([]influencer.Sample, 0, n)
	}
	if nFail > 0 {
		batch.Failures = make([]influencer.Failure, 0, nFail)
	}
	for i := range r.jobs {
		j := &r.jobs[i]
		switch {
		case j.ok:
			batch.Samples = append(batch.Samples, j.sample)
			continue
		case j.finished:
		case unstarted != "":
			j.fail(ClassExpired, unstarted)
		case j.state == stateRequest:
			// The deadline (or shutdown) cut the request short: its outcome
			// is no failure of the API.
			j.attempts++
			class, reason := mockstagramapi.ClassTimeout, "request still running"
			if j.last != nil {
				class, reason = j.last.Class, j.last.Reason
			}
			j.fail(class, reason+"; gave up at the minute's deadline")
		case j.state == stateBackoff:
			j.fail(j.last.Class, j.last.Reason+"; gave up at the minute's deadline")
		case j.state == stateWaiting && j.last != nil:
			j.fail(j.last.Class, j.last.Reason+"; gave up at the minute's deadline")
		default: // queued, or waiting for a slot: never sent
			j.fail(ClassExpired, "deadline passed while waiting for a fetch slot")
		}
		batch.Failures = append(batch.Failures, j.failure)
		f.failureCounter(j.failure.Class).Inc()
	}
	return batch
}

// failureCounter is FetchFailures' child of class, looked up once.
func (f *Fetcher) failureCounter(class string) prometheus.Counter {
	c, ok := f.failures.Load(class)
	if !ok {
		c, _ = f.failures.LoadOrStore(class, f.metrics.FetchFailures.WithLabelValues(class))
	}
	return c.(prometheus.Counter)
}

func uniq(pks []int64) []int64 {
	out := slices.Clone(pks)
	slices.Sort(out)
	return slices.Compact(out)
}

// shardRun is one shard's fetch in flight.
type shardRun struct {
	ctx              context.Context
	minute, deadline time.Time
	shard            int
	jobs             []pkJob // sorted by pk

	mu      sync.Mutex // guards the jobs' outcomes and closed
	pending int        // jobs not finished
	closed  bool       // collected: late outcomes are dropped
	done    chan struct{}
}

// Where a pk is.
const (
	stateQueued  = iota // waiting for a worker
	stateRequest        // a worker is asking the API
	stateBackoff        // waiting to be retried
	stateWaiting        // a worker holds it, but it queues for a slot (the adaptive limit, the rate limit): not sent
)

// pkJob is one pk of a run.
type pkJob struct {
	run      *shardRun
	pk       int64
	state    int
	attempts int                   // requests sent (not those the breaker failed fast)
	last     *mockstagramapi.Error // the previous attempt's error
	retry    retryBackoff
	retrying bool // retry is set up

	finished bool // the outcome is set
	ok       bool
	sample   influencer.Sample
	failure  influencer.Failure
}

// Waiting is told (mockstagramapi.Progress) that j's request queues for a
// slot: it has not been sent.
func (j *pkJob) Waiting() { j.setState(stateWaiting) }

// Sending is told that j's request leaves for the API.
func (j *pkJob) Sending() { j.setState(stateRequest) }

func (j *pkJob) setState(state int) {
	r := j.run
	r.mu.Lock()
	if !r.closed && !j.finished {
		j.state = state
	}
	r.mu.Unlock()
}

// fail sets the job's failure (run.mu held).
func (j *pkJob) fail(class, reason string) {
	j.finished = true
	j.failure = influencer.Failure{PK: j.pk, Minute: j.run.minute, Class: class, Reason: reason, Attempts: j.attempts}
}

// start queues a run's pks and counts the run in flight.
func (f *Fetcher) start(r *shardRun) {
	f.mu.Lock()
	f.runs++
	f.expired = false
	for i := range r.jobs {
		f.queue = append(f.queue, &r.jobs[i])
	}
	f.wakeLocked(len(r.jobs))
	f.mu.Unlock()
}

// workerLinger is how long workers wait for the next shard before they
// end. It is real time: it is about resources, not about the minute.
const workerLinger = 2 * time.Second

// finish counts a run out; with none left for workerLinger (or closed),
// idle workers end.
func (f *Fetcher) finish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs--
	if f.runs > 0 {
		return
	}
	if f.closed {
		f.work.Broadcast()
		return
	}
	f.idleAt = time.Now()
	time.AfterFunc(workerLinger, f.expire)
}

// expire ends the idle workers if no run came for workerLinger.
func (f *Fetcher) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runs == 0 && time.Since(f.idleAt) >= workerLinger {
		f.expired = true
		f.work.Broadcast()
	}
}

// Close lets the workers end as soon as no shard is in flight (instead of
// after workerLinger). The fetcher still works after it: a later shard
// starts workers again, which end with it.
func (f *Fetcher) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.work.Broadcast()
}

// requeue queues a job again after its backoff: it waits for a worker
// (for a fetch slot, as a reason at the deadline says).
func (f *Fetcher) requeue(j *pkJob) {
	r := j.run
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	j.state = stateQueued
	r.mu.Unlock()
	f.enqueue(j)
}

// enqueue queues a job.
func (f *Fetcher) enqueue(j *pkJob) {
	f.mu.Lock()
	f.queue = append(f.queue, j)
	f.wakeLocked(1)
	f.mu.Unlock()
}

// wakeLocked gets n more jobs going: idle workers first, then new ones up
// to Concurrency.
func (f *Fetcher) wakeLocked(n int) {
	for ; n > 0 && f.idle > f.woken; n-- {
		f.work.Signal()
		f.woken++
	}
	for ; n > 0 && f.workers < f.cfg.Concurrency; n-- {
		f.workers++
		go f.worker()
	}
}

// worker runs jobs until the queue is empty and no run has been in flight
// for workerLinger (or since Close). A
// worker that is awake takes jobs until the queue is empty, so a job is
// never left behind, whatever the idle counts say.
func (f *Fetcher) worker() {
	f.mu.Lock()
	for {
		for f.head == len(f.queue) {
			if f.runs == 0 && (f.expired || f.closed) {
				f.workers--
				f.mu.Unlock()
				return
			}
			f.idle++
			f.work.Wait()
			f.idle--
			if f.woken > 0 { // (after a broadcast, maybe another's: it only delays a wake)
				f.woken--
			}
		}
		j := f.queue[f.head]
		f.queue[f.head] = nil
		f.head++
		if f.head == len(f.queue) {
			f.queue, f.head = f.queue[:0], 0
		} else if f.head >= 4096 && f.head*2 >= len(f.queue) {
			n := copy(f.queue, f.queue[f.head:])
			clear(f.queue[n:])
			f.queue, f.head = f.queue[:n], 0
		}
		f.mu.Unlock()
		f.attempt(j)
		f.mu.Lock()
	}
}

// attempt makes one request for j and settles what follows: its outcome,
// or a backoff before the next attempt.
func (f *Fetcher) attempt(j *pkJob) {
	r := j.run
	r.mu.Lock()
	if r.closed || j.finished {
		r.mu.Unlock()
		return
	}
	j.state = stateRequest
	r.mu.Unlock()

	s, err := f.api.Influencer(mockstagramapi.WithProgress(r.ctx, j), j.pk, r.deadline)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return // collected meanwhile; collect settled it
	}
	if errors.Is(err, mockstagramapi.ErrRateLimitDeadline) {
		f.settle(j, ClassExpired, "deadline passed while waiting for the rate limit")
		return
	}
	var ferr *mockstagramapi.Error
	if err != nil {
		ferr = mockstagramapi.AsError(err)
	}
	if ferr == nil || ferr.Class != mockstagramapi.ClassCircuitOpen {
		j.attempts++
		if ferr != nil && r.ctx.Err() != nil {
			// The minute's deadline (or shutdown) cut this request short: its
			// "context canceled" is no connection error of the API.
			class, reason := mockstagramapi.ClassTimeout, "request still running"
			if j.last != nil {
				class, reason = j.last.Class, j.last.Reason
			}
			f.settle(j, class, reason+"; gave up at the minute's deadline")
			return
		}
	}
	j.last = ferr

	if ferr == nil {
		now := f.clock.Now()
		if !now.Before(r.deadline) {
			f.settle(j, ClassExpired, "response arrived after the minute's deadline")
			return
		}
		s.Minute, s.FetchedAt = r.minute, now
		j.ok, j.sample = true, s
		f.settled(j)
		return
	}
	if !ferr.Retryable {
		f.settle(j, ferr.Class, ferr.Reason)
		return
	}
	if !j.retrying {
		j.retry = newRetryBackoff(f.cfg.RetryInitial, f.cfg.RetryMax, f.clock)
		j.retrying = true
	}
	wait, ok := j.retry.next(ferr.RetryAfter, r.deadline)
	if r.ctx.Err() != nil || !ok {
		f.settle(j, ferr.Class, ferr.Reason+"; gave up at the minute's deadline")
		return
	}
	if ferr.Class != mockstagramapi.ClassCircuitOpen {
		f.metrics.FetchRetries.Inc()
	}
	j.state = stateBackoff
	f.clock.AfterFunc(wait, func() { f.requeue(j) })
}

// settle fails j and counts it out (run.mu held).
func (f *Fetcher) settle(j *pkJob, class, reason string) {
	j.fail(class, reason)
	f.settled(j)
}

// settled counts a finished job out of its run (run.mu held).
func (f *Fetcher) settled(j *pkJob) {
	j.finished = true
	r := j.run
	r.pending--
	if r.pending == 0 {
		close(r.done)
	}
}

// letterGate lets a (pk, class) dead letter through at most once per
// interval and counts the failures in between. It remembers at most max
// pairs: when full, it forgets those whose interval is over, and if none
// is, an arbitrary one.
type letterGate struct {
	interval time.Duration
	max      int

	mu   sync.Mutex
	sent map[letterKey]letterState
}

type letterKey struct {
	pk    int64
	class string
}

type letterState struct {
	at    time.Time // of the last letter
	count int       // failures since it, suppressed ones
}

func newLetterGate(interval time.Duration, maxPairs int) *letterGate {
	return &letterGate{interval: interval, max: maxPairs, sent: map[letterKey]letterState{}}
}

// admit decides on a failure at now: send says whether to dead-letter it,
// count is the failures the letter stands for (this one and those
// suppressed since the previous letter), undo forgets the decision (the
// letter was not published).
func (g *letterGate) admit(pk int64, class string, now time.Time) (count int, undo func(), send bool) {
	k := letterKey{pk, class}
	g.mu.Lock()
	defer g.mu.Unlock()
	prev, known := g.sent[k]
	if known && now.Sub(prev.at) < g.interval {
		prev.count++
		g.sent[k] = prev
		return 0, nil, false
	}
	if !known && len(g.sent) >= g.max {
		g.evictLocked(now)
	}
	count = 1
	if known {
		count += prev.count
	}
	g.sent[k] = letterState{at: now}
	return count, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if known {
			g.sent[k] = prev
		} else {
			delete(g.sent, k)
		}
	}, true
}

func (g *letterGate) evictLocked(now time.Time) {
	for k, s := range g.sent {
		if now.Sub(s.at) >= g.interval {
			delete(g.sent, k)
		}
	}
	for k := range g.sent {
		if len(g.sent) < g.max {
			return
		}
		delete(g.sent, k)
	}
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
