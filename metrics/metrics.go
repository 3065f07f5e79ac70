// Package metrics holds the pipeline's Prometheus metrics. One Pipeline value
// is created per process and injected into the stages that record them.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mockstagram/pipeline/messages"
)

// Pipeline is the set of pipeline metrics.
type Pipeline struct {
	TasksPublished   prometheus.Counter
	SchedulerLag     prometheus.Histogram
	ScheduleFailures prometheus.Counter
	RegistrySize     prometheus.Gauge

	FetchDuration *prometheus.HistogramVec // by outcome class
	FetchRetries  prometheus.Counter
	FetchFailures *prometheus.CounterVec // by class, after retries
	TasksExpired  prometheus.Counter
	DeadLetters   *prometheus.CounterVec // by topic
	// DeadLettersSuppressed counts permanent pk failures not dead-lettered
	// because the pk had a letter of the same class within the hour.
	DeadLettersSuppressed prometheus.Counter

	BreakerState       prometheus.Gauge       // 0 closed, 1 half-open, 2 open
	BreakerTransitions *prometheus.CounterVec // by from, to
	BreakerRejected    prometheus.Counter     // requests failed fast while open
	RateLimitWait      prometheus.Histogram   // wait for a rate-limit token, per request

	// The fetcher's adaptive concurrency limit (mockstagramapi/adaptive).
	AdaptiveLimit     prometheus.Gauge     // the limit now
	AdaptiveInFlight  prometheus.Gauge     // slots held
	AdaptiveWaiting   prometheus.Gauge     // callers waiting for a slot
	AdaptiveWait      prometheus.Histogram // wait for a slot, per request
	AdaptiveOverloads prometheus.Counter   // answers that signalled overload
	AdaptiveTimedOut  prometheus.Counter   // waits given up at the caller's deadline

	DeadLettersArchived *prometheus.CounterVec // by topic
	// MessagesGivenUp counts messages moved to their dead-letter topic
	// because they kept failing transiently, by handler and class
	// (redelivery-limit, expired).
	MessagesGivenUp *prometheus.CounterVec
	// MissedNotScheduled counts the (pk, minute)s the reconciler recorded
	// as missed (class not-scheduled); SamplesMissed counts them too.
	MissedNotScheduled prometheus.Counter

	SamplesStored    prometheus.Counter
	SamplesDuplicate prometheus.Counter
	SamplesRejected  prometheus.Counter
	SamplesMissed    prometheus.Counter
	BatchSize        prometheus.Histogram
	WriteDuration    prometheus.Histogram
	NewestMinute     prometheus.Gauge // unix seconds of the newest stored minute

	SuspicionTasksPublished prometheus.Counter
	SuspicionChecks         *prometheus.CounterVec // by outcome: suspicious, not_suspicious or a failure class
	SuspicionDuration       prometheus.Histogram   // one is_suspicious request
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Pipeline {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	p := &Pipeline{
		TasksPublished:   prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_scheduler_tasks_published_total", Help: "Shard-minute tasks published."}),
		SchedulerLag:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mockstagram_scheduler_lag_seconds", Help: "Delay between a shard's planned publish time and its publication.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		ScheduleFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_scheduler_publish_failures_total", Help: "Task publications that failed."}),
		RegistrySize:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "mockstagram_scheduler_registry_size", Help: "Active pks the scheduler schedules."}),
		FetchDuration:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mockstagram_fetch_duration_seconds", Help: "Duration of one API request by outcome class.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 11)}, []string{"class"}),
		FetchRetries:     prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_fetch_retries_total", Help: "API requests retried."}),
		FetchFailures:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mockstagram_fetch_failures_total", Help: "pks not fetched for their minute, by class, after retries."}, []string{"class"}),
		TasksExpired:     prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_fetch_tasks_expired_total", Help: "Tasks received after their deadline."}),
		DeadLetters:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mockstagram_dead_letters_total", Help: "Messages published to a dead-letter topic."}, []string{"topic"}),
		DeadLettersSuppressed: prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_fetch_dead_letters_suppressed_total",
			Help: "Permanent pk failures not dead-lettered: the pk had a letter of the same class within the hour (counted in the next letter)."}),
		BreakerState:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "mockstagram_fetch_breaker_state", Help: "State of the fetcher's circuit breaker toward the API: 0 closed, 1 half-open, 2 open."}),
		BreakerTransitions:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mockstagram_fetch_breaker_transitions_total", Help: "State changes of the fetcher's circuit breaker."}, []string{"from", "to"}),
		BreakerRejected:     prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_fetch_breaker_rejected_total", Help: "API requests failed fast (class circuit_open) because the circuit breaker was open."}),
		RateLimitWait:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mockstagram_fetch_rate_limit_wait_seconds", Help: "Wait for a rate-limit token before an API request (only with fetch-rate-limit).", Buckets: append([]float64{0}, prometheus.ExponentialBuckets(0.001, 4, 8)...)}),
		AdaptiveLimit:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "mockstagram_fetch_adaptive_limit", Help: "The fetcher's adaptive limit of in-flight API requests (fetch-adaptive)."}),
		AdaptiveInFlight:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "mockstagram_fetch_adaptive_in_flight", Help: "API requests holding a slot of the adaptive limit."}),
		AdaptiveWaiting:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "mockstagram_fetch_adaptive_waiting", Help: "API requests waiting for a slot of the adaptive limit."}),
		AdaptiveWait:        prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mockstagram_fetch_adaptive_wait_seconds", Help: "Wait for a slot of the adaptive limit, per API request.", Buckets: append([]float64{0}, prometheus.ExponentialBuckets(0.001, 4, 8)...)}),
		AdaptiveOverloads:   prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_fetch_adaptive_overloads_total", Help: "API answers the adaptive limit counted as overload (timeout, 429, 5xx, connection error)."}),
		AdaptiveTimedOut:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_fetch_adaptive_timed_out_total", Help: "API requests not sent because no slot of the adaptive limit freed up before their deadline."}),
		DeadLettersArchived: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mockstagram_dead_letters_archived_total", Help: "Dead letters stored by the archiver, by dead-letter topic."}, []string{"topic"}),
		MessagesGivenUp: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mockstagram_messages_given_up_total",
			Help: "Messages moved to their dead-letter topic after failing transiently too often (redelivery-limit) or past their deadline (expired), by handler and class."}, []string{"handler", "class"}),
		MissedNotScheduled: prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_reconcile_missed_total",
			Help: "(pk, minute)s the scheduler's reconciler recorded as missed (class not-scheduled): nothing was stored or missed for them by the minute's deadline."}),
		SamplesStored:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_samples_stored_total", Help: "New (pk, minute) samples stored."}),
		SamplesDuplicate: prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_samples_duplicate_total", Help: "Samples already stored (redelivery), ignored."}),
		SamplesRejected:  prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_samples_rejected_total", Help: "Invalid samples rejected by the recorder."}),
		SamplesMissed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_samples_missed_total", Help: "New (pk, minute) entries recorded as missed."}),
		BatchSize:        prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mockstagram_recorder_batch_size", Help: "Samples per stored batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		WriteDuration:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mockstagram_recorder_write_duration_seconds", Help: "Duration of one batch transaction.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 11)}),
		NewestMinute:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "mockstagram_recorder_newest_minute_seconds", Help: "Unix time of the newest minute stored by this recorder."}),

		SuspicionTasksPublished: prometheus.NewCounter(prometheus.CounterOpts{Name: "mockstagram_suspicion_tasks_published_total", Help: "Shard suspicion-check tasks published."}),
		SuspicionChecks:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mockstagram_suspicion_checks_total", Help: "pks whose is_suspicious check ended, by outcome (suspicious, not_suspicious, or the failure class after retries)."}, []string{"outcome"}),
		SuspicionDuration:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mockstagram_suspicion_request_duration_seconds", Help: "Duration of one is_suspicious request.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10)}),
	}
	for _, c := range []prometheus.Collector{p.TasksPublished, p.SchedulerLag, p.ScheduleFailures, p.RegistrySize,
		p.FetchDuration, p.FetchRetries, p.FetchFailures, p.TasksExpired, p.DeadLetters, p.DeadLettersSuppressed,
		p.BreakerState, p.BreakerTransitions, p.BreakerRejected, p.RateLimitWait, p.DeadLettersArchived,
		p.MessagesGivenUp, p.MissedNotScheduled,
		p.AdaptiveLimit, p.AdaptiveInFlight, p.AdaptiveWaiting, p.AdaptiveWait, p.AdaptiveOverloads, p.AdaptiveTimedOut,
		p.SamplesStored, p.SamplesDuplicate, p.SamplesRejected, p.SamplesMissed, p.BatchSize, p.WriteDuration, p.NewestMinute,
		p.SuspicionTasksPublished, p.SuspicionChecks, p.SuspicionDuration} {
		f(c)
	}
	p.preinitialize()
	return p
}

// preinitialize creates the series of every known label value of the
// labelled counters, so that each reads 0 from the start instead of "No
// data" and rate()/increase() see its first failure. The values are the ones
// the stages count: the failure classes are stored with missed pks and dead
// letters, so they never change. They are written here because their
// packages (mockstagramapi, handlers, middleware) import this one;
// test/metrics_labels_test.go checks them against those constants.
func (p *Pipeline) preinitialize() {
	const (
		classExpired         = "expired"          // handlers.ClassExpired, middleware.ClassExpired
		classRedeliveryLimit = "redelivery-limit" // middleware.ClassRedeliveryLimit
	)
	// mockstagramapi's Class constants, and a task or pk past its deadline.
	classes := []string{"not_found", "timeout", "connection", "http_5xx", "rate_limited", "http_4xx",
		"malformed", "oversize", "invalid", "circuit_open", classExpired}
	for _, class := range classes {
		p.FetchFailures.WithLabelValues(class)
		p.SuspicionChecks.WithLabelValues(class)
	}
	p.SuspicionChecks.WithLabelValues("suspicious")
	p.SuspicionChecks.WithLabelValues("not_suspicious")
	// Pk failures are dead-lettered by the fetcher and the suspicion
	// checker; every dead-letter topic is archived.
	p.DeadLetters.WithLabelValues(messages.TopicFetcherDLQ)
	p.DeadLetters.WithLabelValues(messages.TopicSuspicionDLQ)
	for _, topic := range []string{messages.TopicFetcherDLQ, messages.TopicResultDLQ, messages.TopicSuspicionDLQ} {
		p.DeadLettersArchived.WithLabelValues(topic)
	}
	// The minutely stages give up on the redelivery limit or the deadline;
	// the suspicion checker (no minute deadline) on the limit only.
	for _, handler := range []string{messages.HandlerFetcher, messages.HandlerRecorder} {
		p.MessagesGivenUp.WithLabelValues(handler, classRedeliveryLimit)
		p.MessagesGivenUp.WithLabelValues(handler, classExpired)
	}
	p.MessagesGivenUp.WithLabelValues(messages.HandlerSuspicion, classRedeliveryLimit)
	// The state changes gobreaker makes (from, to).
	for _, t := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "closed"}, {"half-open", "open"}} {
		p.BreakerTransitions.WithLabelValues(t[0], t[1])
	}
}
