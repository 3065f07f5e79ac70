package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/alecthomas/kong"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
)

// RunCmd is 'mockstagram run'.
type RunCmd struct{}

// Run starts every stage and the API in one process.
func (RunCmd) Run(e env, cfg config.Config) error {
	return serve(e, cfg, app.AllRoles(), func(srv *app.HTTPServer, base app.APIBaseURL) {
		fmt.Fprintf(e.stdout, "Mockstagram pipeline running: API and dashboard at http://%s (try /api/v1/influencers/1000000), fetching from %s. Ctrl-C stops.\n",
			displayHost(srv.Addr), base)
	})
}

// StageCmd runs one stage; which one is the command's name.
type StageCmd struct{}

// Run starts the stage named by the command.
func (StageCmd) Run(e env, cfg config.Config, kctx *kong.Context) error {
	var roles app.Roles
	switch kctx.Command() {
	case "scheduler":
		roles.Scheduler = true
	case "fetcher":
		roles.Fetcher = true
	case "recorder":
		roles.Recorder = true
	case "suspicion":
		roles.Suspicion = true
	case "api":
		roles.API = true
	default:
		return fmt.Errorf("unknown stage %q", kctx.Command())
	}
	if err := checkStage(kctx.Command(), cfg); err != nil {
		return usageError{err}
	}
	return serve(e, cfg, roles, func(srv *app.HTTPServer, _ app.APIBaseURL) {
		fmt.Fprintf(e.stdout, "mockstagram %s running; health and metrics at http://%s\n", kctx.Command(), displayHost(srv.Addr))
	})
}

// serve starts the application, reports where it listens, and stops it on
// SIGINT/SIGTERM within the shutdown timeout.
func serve(e env, cfg config.Config, roles app.Roles, started func(*app.HTTPServer, app.APIBaseURL)) error {
	var (
		srv  *app.HTTPServer
		base app.APIBaseURL
	)
	a := fx.New(app.Options(cfg, roles), fx.Populate(&srv, &base), fx.StartTimeout(2*time.Minute), fx.StopTimeout(cfg.ShutdownTimeout))
	if err := a.Err(); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	if err := a.Start(startCtx); err != nil {
		return err
	}
	started(srv, base)
	select {
	case <-e.ctx.Done():
	case sig := <-a.Done():
		_ = sig
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelStop()
	return a.Stop(stopCtx)
}

func displayHost(addr string) string {
	if len(addr) > 0 && addr[0] == ':' {
		return "localhost" + addr
	}
	if len(addr) > 5 && addr[:5] == "[::]:" {
		return "localhost:" + addr[5:]
	}
	if len(addr) > 8 && addr[:8] == "0.0.0.0:" {
		return "localhost:" + addr[8:]
	}
	return addr
}

// checkStage rejects stand-alone stages that could not work: stages talk to
// each other only through a shared broker, and share data only through a
// shared database.
func checkStage(stage string, cfg config.Config) error {
	if stage != "api" && cfg.Broker == config.BrokerGoChannel {
		return fmt.Errorf("%s alone needs a shared broker (--broker kafka or postgres); gochannel only connects stages inside 'run'", stage)
	}
	if stage == "suspicion" && cfg.Broker == config.BrokerPostgres {
		return fmt.Errorf("suspicion needs --broker kafka: on the postgres broker a handler that waits seconds for is_suspicious would hold back every delivery on the database server")
	}
	if stage != "fetcher" && cfg.DatabaseURL == "" {
		return fmt.Errorf("%s alone needs --database-url (MOCKSTAGRAM_DATABASE_URL): the in-memory store lives only inside 'run'", stage)
	}
	return nil
}
