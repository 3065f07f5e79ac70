// Package app wires the pipeline with uber/fx. It is the only package that
// imports fx; each concern is one fx.Module, and every constructor it calls
// is usable without fx.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/metrics"
	"github.com/mockstagram/pipeline/tracing"
)

// Roles says which stages a process runs.
type Roles struct {
	Scheduler bool
	Fetcher   bool
	Recorder  bool
	Suspicion bool // the suspicion checker
	API       bool
	// BuiltInSimulator starts the simulator in-process when no API URL is
	// configured ('run' only).
	BuiltInSimulator bool
}

// Service names the process in traces: "mockstagram" for all stages in one,
// else its stages ("mockstagram-fetcher", "mockstagram-recorder+api").
func (r Roles) Service() string {
	if r.Scheduler && r.Fetcher && r.Recorder && r.Suspicion && r.API {
		return "mockstagram"
	}
	var names []string
	for _, role := range []struct {
		on   bool
		name string
	}{{r.Scheduler, "scheduler"}, {r.Fetcher, "fetcher"}, {r.Recorder, "recorder"}, {r.Suspicion, "suspicion"}, {r.API, "api"}} {
		if role.on {
			names = append(names, role.name)
		}
	}
	return "mockstagram-" + strings.Join(names, "+")
}

// AllRoles is 'mockstagram run'.
func AllRoles() Roles {
	return Roles{Scheduler: true, Fetcher: true, Recorder: true, Suspicion: true, API: true, BuiltInSimulator: true}
}

// Options is the whole application for cfg and roles: the same graph serves
// 'run', each stage command and the end-to-end tests (which swap the clock,
// store or broker with fx.Decorate / fx.Replace).
func Options(cfg config.Config, roles Roles) fx.Option {
	return fx.Options(
		fx.Supply(cfg, roles),
		LoggingModule,
		ClockModule,
		MetricsModule,
		TracingModule,
		StoreModule,
		PubSubModule,
		SimulatorModule,
		RouterModule,
		HandlersModule,
		HTTPModule,
	)
}

// LoggingModule provides the structured JSON (or text) logger; fx's own
// events go to it at debug level.
var LoggingModule = fx.Options(
	fx.Module("logging", fx.Provide(NewLogger)),
	fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
		fl := &fxevent.SlogLogger{Logger: l}
		fl.UseLogLevel(slog.LevelDebug)
		return fl
	}),
)

// NewLogger builds the process logger from the configuration. Records
// logged with a context that carries a span get its trace_id and span_id.
func NewLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(tracing.LogHandler{Handler: slog.NewTextHandler(os.Stderr, opts)})
	}
	return slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(os.Stderr, opts)})
}

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

// ClockModule provides the wall clock; tests decorate it with a fake.
var ClockModule = fx.Module("clock",
	fx.Provide(func() clockwork.Clock { return clockwork.NewRealClock() }),
)

// MetricsModule provides the Prometheus registry and the pipeline metrics.
var MetricsModule = fx.Module("metrics",
	fx.Provide(
		func() *prometheus.Registry {
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			return reg
		},
		func(reg *prometheus.Registry) *metrics.Pipeline { return metrics.New(reg) },
	),
)

// background runs fn in a goroutine from OnStart until OnStop, with a context
// of its own (not the hook's), and waits for it to return on stop.
func background(lc fx.Lifecycle, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				fn(ctx)
			}()
			return nil
		},
		OnStop: func(stopCtx context.Context) error {
			cancel()
			select {
			case <-done:
				return nil
			case <-stopCtx.Done():
				return stopCtx.Err()
			}
		},
	})
}
