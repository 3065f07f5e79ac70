// Package app wires the pipeline with uber/fx. It is the only package that
// imports fx; each concern is one fx.Module, and every constructor it calls
// is usable without fx.
package app

import (
	"context"
	"strings"

	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
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
		PprofModule,
	)
}

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
