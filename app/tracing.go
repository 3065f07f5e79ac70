package app

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/tracing"
)

// TracingModule provides the OpenTelemetry tracer provider: spans are
// exported over OTLP/HTTP when otlp-endpoint is set; trace context travels
// in message metadata either way. The provider is flushed and shut down on
// stop, after everything that depends on it.
var TracingModule = fx.Module("tracing",
	fx.Provide(NewTracerProvider),
)

// NewTracerProvider builds the process's tracer provider.
func NewTracerProvider(lc fx.Lifecycle, cfg config.Config, roles Roles) (trace.TracerProvider, error) {
	tp, err := tracing.NewProvider(context.Background(), tracing.Config{
		Endpoint: cfg.OTLPEndpoint, SampleRatio: cfg.TraceSampleRatio, Service: roles.Service(),
	})
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	lc.Append(fx.StopHook(tp.Shutdown))
	return tp, nil
}
