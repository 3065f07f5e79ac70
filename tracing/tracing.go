// Package tracing carries OpenTelemetry trace context through the pipeline:
// in message metadata (W3C traceparent) from the scheduler's task through the
// fetcher's result to the recorder's database writes, so one trace shows a
// shard-minute end to end; in log records (trace_id, span_id); and out to an
// OTLP/HTTP collector when one is configured.
package tracing

import (
	"context"
	"fmt"
	"net/url"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/mockstagram/pipeline/messages"
)

// Name is the instrumentation scope of the pipeline's spans.
const Name = "github.com/mockstagram/pipeline"

// propagator writes and reads the W3C traceparent/tracestate entries.
var propagator = propagation.TraceContext{}

// Config says where spans go.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's base URL (http://jaeger:4318);
	// /v1/traces is appended when it has no path. Empty: spans are not
	// exported, but trace context still travels and is logged.
	Endpoint string
	// SampleRatio of new traces (a shard-minute is one trace) that are
	// recorded; a message's trace keeps its parent's decision.
	SampleRatio float64
	// Service is the service.name resource attribute (the process's role).
	Service string
}

// NewProvider builds the tracer provider for cfg. The caller shuts it down
// (which flushes the exporter). opts are added last: tests pass a span
// recorder.
func NewProvider(ctx context.Context, cfg Config, opts ...sdktrace.TracerProviderOption) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName(cfg.Service)))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	all := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	}
	if cfg.Endpoint != "" {
		endpoint, err := tracesURL(cfg.Endpoint)
		if err != nil {
			return nil, err
		}
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		all = append(all, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(append(all, opts...)...), nil
}

// tracesURL appends the OTLP traces path to a base URL without a path.
func tracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("otlp endpoint %q: %w", endpoint, err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// Inject writes the span context of ctx into md (replacing what md
// carried), when ctx has one.
func Inject(ctx context.Context, md message.Metadata) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, propagation.MapCarrier(md))
}

// Extract returns ctx with the remote span context carried by md, if any.
func Extract(ctx context.Context, md message.Metadata) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier(md))
}

// TraceParent is the metadata key of the W3C trace context.
const TraceParent = "traceparent"

// Middleware runs each handler call in a consumer span that continues the
// trace in the message's metadata, and writes that span into the metadata of
// every message the handler produces. The handler's msg.Context() carries the
// span, so the database calls it makes are its children. It is router-level
// and outermost: the span covers retries, and a message the poison queue
// dead-letters keeps the trace context it arrived with.
func Middleware(tp trace.TracerProvider) message.HandlerMiddleware {
	tracer := tp.Tracer(Name)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			handler := message.HandlerNameFromCtx(msg.Context())
			if handler == "" {
				handler = "message" // outside a router
			}
			ctx := Extract(msg.Context(), msg.Metadata)
			ctx, span := tracer.Start(ctx, handler+" process",
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					semconv.MessagingOperationTypeProcess,
					semconv.MessagingDestinationName(message.SubscribeTopicFromCtx(msg.Context())),
					semconv.MessagingMessageID(msg.UUID),
					attribute.String("mockstagram.shard", msg.Metadata.Get(messages.MetaShard)),
					attribute.String("mockstagram.minute", msg.Metadata.Get(messages.MetaMinute)),
				))
			defer span.End()
			msg.SetContext(ctx)
			out, err := h(msg)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			for _, m := range out {
				Inject(ctx, m.Metadata)
			}
			return out, err
		}
	}
}
