// Package app wires the pipeline with uber/fx. It is the only package that
// imports fx; each concern is one fx.Module, and every constructor it calls
// is usable without fx.
package app

import (
	"context"
	"log/slog"
	"os"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/metrics"
)

// Roles says which stages a process runs.
type Roles struct {
	Scheduler bool
	Fetcher   bool
	Recorder  bool
	API       bool
	// BuiltInSimulator starts the simulator in-process when no API URL is
	// configured ('run' only).
	BuiltInSimulator bool
}

// AllRoles is 'mockstagram run'.
func AllRoles() Roles {
	return Roles{Scheduler: true, Fetcher: true, Recorder: true, API: true, BuiltInSimulator: true}
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

// NewLogger builds the process logger from the configuration.
func NewLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
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
