package test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/messages"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/tracing"
)

// One trace per shard-minute runs scheduler → fetcher → recorder → database,
// through the broker's message metadata; a fetch dead letter carries the
// trace context of the fetcher span that gave up.
func TestTraceRunsThroughThePipeline(t *testing.T) {
	cfg := testConfig(t, setup{config.BrokerGoChannel, "postgres"})
	rec := tracetest.NewSpanRecorder()
	p := startPipeline(t, cfg, fx.Decorate(func(trace.TracerProvider) trace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp
	}))
	ctx := context.Background()

	// pk 5 is not served by the simulator (unknown pk: a permanent failure,
	// dead-lettered). It is tracked from the second minute on at the latest.
	const unknown = 5
	_, err := p.store.Track(ctx, []int64{unknown})
	require.NoError(t, err)
	p.runMinute(t, cfg, start, numPKs)
	second := start.Add(time.Minute)
	p.runMinute(t, cfg, second, numPKs)

	// The scheduler may have loaded the registry before or after the Track:
	// the first minute may fail pk 5 too. A permanent failure is
	// dead-lettered once per pk and class per hour: exactly one letter, of
	// the first minute that failed it (the second at the latest).
	var letters []store.DeadLetter
	waitFor(t, 30*time.Second, func() bool {
		all, err := p.store.DeadLetters(ctx, store.DeadLetterFilter{Topic: messages.TopicFetcherDLQ, Limit: 10})
		require.NoError(t, err)
		letters = all
		return len(letters) > 0
	}, "the dead letter of pk %d", unknown)
	require.Len(t, letters, 1)
	failedMinute := letters[0].Minute
	require.True(t, failedMinute.Equal(start) || failedMinute.Equal(second), "letter of minute %s", failedMinute)

	shardOf := func(pk int64) int {
		for s, pks := range handlers.Assign([]int64{pk}, cfg.Shards) {
			if len(pks) > 0 {
				return s
			}
		}
		t.Fatalf("pk %d in no shard", pk)
		return -1
	}
	// The spans of the shard-minute that held pk 5, once the recorder's span
	// has ended (it ends after the commit the test saw).
	shard := strconv.Itoa(shardOf(unknown))
	minute := failedMinute.UTC().Format(time.RFC3339)
	var sched, fetch, record sdktrace.ReadOnlySpan
	var dbSpans int
	waitFor(t, 30*time.Second, func() bool {
		sched, fetch, record, dbSpans = nil, nil, nil, 0
		spans := rec.Ended()
		for _, s := range spans {
			attrs := map[string]string{}
			for _, kv := range s.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			if s.Name() == "scheduler publish" && attrs["mockstagram.shard"] == shard && attrs["mockstagram.minute"] == minute {
				sched = s
			}
		}
		if sched == nil {
			return false
		}
		tid := sched.SpanContext().TraceID()
		for _, s := range spans {
			if s.SpanContext().TraceID() != tid {
				continue
			}
			switch {
			case s.Name() == messages.HandlerFetcher+" process":
				fetch = s
			case s.Name() == messages.HandlerRecorder+" process":
				record = s
			}
		}
		if record == nil {
			return false
		}
		for _, s := range spans {
			if s.Parent().SpanID() == record.SpanContext().SpanID() && s.InstrumentationScope().Name == "github.com/exaring/otelpgx" {
				dbSpans++
			}
		}
		return fetch != nil && dbSpans > 0
	}, "the spans of shard %s minute %s", shard, minute)

	assert.Equal(t, trace.SpanKindProducer, sched.SpanKind())
	assert.False(t, sched.Parent().IsValid(), "a shard-minute starts its own trace")
	assert.Equal(t, sched.SpanContext().SpanID(), fetch.Parent().SpanID(), "the fetcher continues the scheduler's span")
	assert.True(t, fetch.Parent().IsRemote(), "the fetcher's parent came through the broker")
	assert.Equal(t, trace.SpanKindConsumer, fetch.SpanKind())
	assert.Equal(t, fetch.SpanContext().SpanID(), record.Parent().SpanID(), "the recorder continues the fetcher's span")
	assert.Positive(t, dbSpans, "the recorder's database calls are its children")

	// The dead letter's metadata carries the fetcher span's context.
	dl := letters[0]
	require.NotEmpty(t, dl.Metadata[tracing.TraceParent], "dead letter metadata %v", dl.Metadata)
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(dl.Metadata)))
	assert.Equal(t, fetch.SpanContext().TraceID(), sc.TraceID())
	assert.Equal(t, fetch.SpanContext().SpanID(), sc.SpanID())
	var failure messages.FetchDeadLetter
	require.NoError(t, json.Unmarshal(dl.Payload, &failure))
	assert.Equal(t, int64(unknown), failure.PK)
	assert.Equal(t, "not_found", dl.Class)
}
