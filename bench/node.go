package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/mockstagram/pipeline/app"
	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/simulator"
)

// StartTimeout bounds the start of a pipeline process (bootstrapping a
// large registry included).
const StartTimeout = 5 * time.Minute

// MeterPath is where a node serves its meter's minutes (JSON []MeterMinute).
const MeterPath = "/bench/minutes"

// NodeConfig configures 'mockstagram bench-node', the pipeline process of
// a benchmark: 'run' (every role) or one stage, with a Meter around its
// store that checks every committed value against the deterministic
// simulator, served on MeterAddr.
type NodeConfig struct {
	Stage       string // "run" or a stage name (app.Stage)
	Influencers int    // the registry's size: a minute is complete at this many stored or missed
	MeterAddr   string // 127.0.0.1:port
}

// RunNode runs the node until ctx ends; out gets one line when it is ready.
func RunNode(ctx context.Context, cfg config.Config, nc NodeConfig, out io.Writer) error {
	roles := app.AllRoles()
	if nc.Stage != "run" {
		var err error
		if roles, err = app.Stage(nc.Stage, cfg); err != nil {
			return err
		}
	}
	meter := NewMeter(nc.Influencers, clockwork.NewRealClock())
	meter.CheckValues(simulator.Counts)
	startCtx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	p, err := app.Start(startCtx, cfg, roles, app.WrapStore(meter.Wrap), app.Quiet())
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		_ = p.Stop(stopCtx)
	}()
	l, err := net.Listen("tcp", nc.MeterAddr)
	if err != nil {
		return fmt.Errorf("meter listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+MeterPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(meter.Minutes())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	defer srv.Close()
	fmt.Fprintf(out, "bench node %s ready: pipeline http://%s, meter http://%s%s\n", nc.Stage, p.HTTPAddr, l.Addr(), MeterPath)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
