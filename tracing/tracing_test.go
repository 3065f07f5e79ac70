package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mockstagram/pipeline/tracing"
)

func newProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp, err := tracing.NewProvider(context.Background(), tracing.Config{SampleRatio: 1, Service: "test"}, sdktrace.WithSpanProcessor(rec))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

func TestMiddlewareContinuesTheTraceAndHandsItOn(t *testing.T) {
	tp, rec := newProvider(t)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "upstream")
	in := message.NewMessage("in-1", []byte("x"))
	tracing.Inject(ctx, in.Metadata)
	parent.End()
	require.NotEmpty(t, in.Metadata.Get(tracing.TraceParent))

	for _, tc := range []struct {
		name string
		err  error
	}{{"ok", nil}, {"failing", errors.New("boom")}} {
		t.Run(tc.name, func(t *testing.T) {
			rec.Reset()
			msg := in.Copy()
			var inside trace.SpanContext
			out := message.NewMessage("out-1", []byte("y"))
			out.Metadata.Set(tracing.TraceParent, in.Metadata.Get(tracing.TraceParent)) // inherited: replaced
			h := tracing.Middleware(tp)(func(m *message.Message) ([]*message.Message, error) {
				inside = trace.SpanContextFromContext(m.Context())
				return []*message.Message{out}, tc.err
			})
			_, err := h(msg)
			require.ErrorIs(t, err, tc.err)

			spans := rec.Ended()
			require.Len(t, spans, 1)
			s := spans[0]
			assert.Equal(t, "message process", s.Name(), "outside a router (the end-to-end test checks handler names)")
			assert.Equal(t, trace.SpanKindConsumer, s.SpanKind())
			assert.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
			assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID())
			assert.Equal(t, s.SpanContext().SpanID(), inside.SpanID(), "the handler runs in the span")
			if tc.err != nil {
				assert.Equal(t, codes.Error, s.Status().Code)
			} else {
				assert.Equal(t, codes.Unset, s.Status().Code)
			}
			got := trace.SpanContextFromContext(tracing.Extract(context.Background(), out.Metadata))
			assert.Equal(t, s.SpanContext().SpanID(), got.SpanID(), "the produced message carries the handler's span")
		})
	}
}

// A message without trace context starts a trace of its own.
func TestMiddlewareWithoutTraceContext(t *testing.T) {
	tp, rec := newProvider(t)
	msg := message.NewMessage("in", nil)
	_, err := tracing.Middleware(tp)(func(*message.Message) ([]*message.Message, error) { return nil, nil })(msg)
	require.NoError(t, err)
	require.Len(t, rec.Ended(), 1)
	assert.False(t, rec.Ended()[0].Parent().IsValid())
}

func TestInjectWithoutSpanLeavesMetadata(t *testing.T) {
	md := message.Metadata{tracing.TraceParent: "kept"}
	tracing.Inject(context.Background(), md)
	assert.Equal(t, "kept", md.Get(tracing.TraceParent))
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	tp, _ := newProvider(t)
	var buf bytes.Buffer
	logger := slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(&buf, nil)}).With("stage", "x")
	ctx, span := tp.Tracer("test").Start(context.Background(), "s")
	defer span.End()

	logger.InfoContext(ctx, "with span")
	logger.Info("without")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	var with, without map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &with))
	require.NoError(t, json.Unmarshal(lines[1], &without))
	assert.Equal(t, span.SpanContext().TraceID().String(), with["trace_id"])
	assert.Equal(t, span.SpanContext().SpanID().String(), with["span_id"])
	assert.Equal(t, "x", with["stage"])
	assert.NotContains(t, without, "trace_id")
}

// With an endpoint, spans are exported over OTLP/HTTP to {endpoint}/v1/traces.
func TestProviderExportsToTheEndpoint(t *testing.T) {
	var (
		mu    sync.Mutex
		paths []string
		types []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		types = append(types, r.Header.Get("Content-Type"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	ctx := context.Background()
	tp, err := tracing.NewProvider(ctx, tracing.Config{Endpoint: srv.URL, SampleRatio: 1, Service: "test"})
	require.NoError(t, err)
	_, span := tp.Tracer("test").Start(ctx, "exported")
	span.End()
	require.NoError(t, tp.Shutdown(ctx)) // flushes
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"/v1/traces"}, paths)
	assert.Equal(t, "application/x-protobuf", types[0])
}

// A ratio of 0 records no new trace, but a sampled parent is followed.
func TestSampleRatio(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp, err := tracing.NewProvider(context.Background(), tracing.Config{SampleRatio: 0, Service: "test"}, sdktrace.WithSpanProcessor(rec))
	require.NoError(t, err)
	defer func() { _ = tp.Shutdown(context.Background()) }()
	_, root := tp.Tracer("test").Start(context.Background(), "root")
	root.End()
	assert.False(t, root.SpanContext().IsSampled())

	sampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	_, child := tp.Tracer("test").Start(trace.ContextWithRemoteSpanContext(context.Background(), sampled), "child")
	child.End()
	assert.True(t, child.SpanContext().IsSampled())
	assert.Len(t, rec.Ended(), 1)
}
