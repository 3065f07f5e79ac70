package app

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/mockstagramapi"
	"github.com/mockstagram/pipeline/store"
)

// StartTimeout bounds the start of a process by Run (migrations, topic
// creation and the registry's bootstrap included).
const StartTimeout = 2 * time.Minute

// Option changes how Start builds the application.
type Option func(*options)

type options struct{ fx []fx.Option }

// WrapStore has the application use wrap(s) in place of the store s it
// opens: a benchmark measures what is committed this way.
func WrapStore(wrap func(store.Store) store.Store) Option {
	return func(o *options) {
		o.fx = append(o.fx, fx.Decorate(func(s store.Store) store.Store { return wrap(s) }))
	}
}

// Quiet drops fx's own event log (the process logger is unchanged).
func Quiet() Option {
	return func(o *options) { o.fx = append(o.fx, fx.NopLogger) }
}

// build is the application of cfg and roles with opts applied.
func build(cfg config.Config, roles Roles, opts ...Option) fx.Option {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return fx.Options(Options(cfg, roles), fx.Options(o.fx...))
}

// Process is a started application.
type Process struct {
	app *fx.App
	// HTTPAddr is the address the HTTP server listens on (the API with the
	// API role; health and metrics always).
	HTTPAddr string
	// APIBaseURL is the Mockstagram API the fetcher calls (the built-in
	// simulator's when 'run' starts it), without the user and password the
	// fetcher sends as basic auth: it is printed.
	APIBaseURL string
}

// Start builds the application for cfg and roles and starts it; ctx bounds
// the start. Stop it with Stop.
func Start(ctx context.Context, cfg config.Config, roles Roles, opts ...Option) (*Process, error) {
	var (
		srv  *HTTPServer
		base APIBaseURL
	)
	a := fx.New(build(cfg, roles, opts...), fx.Populate(&srv, &base))
	if err := a.Err(); err != nil {
		return nil, err
	}
	if err := a.Start(ctx); err != nil {
		return nil, err
	}
	return &Process{app: a, HTTPAddr: srv.Addr, APIBaseURL: mockstagramapi.WithoutUserinfo(string(base))}, nil
}

// Stop stops the process; ctx bounds the stop.
func (p *Process) Stop(ctx context.Context) error { return p.app.Stop(ctx) }

// Run starts the application for cfg and roles (within StartTimeout), calls
// started, and runs until ctx ends or the process gets SIGINT/SIGTERM; then
// it stops within cfg.ShutdownTimeout.
func Run(ctx context.Context, cfg config.Config, roles Roles, started func(*Process)) error {
	startCtx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	p, err := Start(startCtx, cfg, roles)
	if err != nil {
		return err
	}
	started(p)
	select {
	case <-ctx.Done():
	case <-p.app.Done():
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelStop()
	if err := p.Stop(stopCtx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}
