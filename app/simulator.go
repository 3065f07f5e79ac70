package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/influencer"
	"github.com/mockstagram/pipeline/simulator"
)

// APIBaseURL is the Mockstagram API the fetcher calls.
type APIBaseURL string

// SimulatorModule provides the API base URL, starting the built-in simulator
// when 'run' has no API URL configured.
var SimulatorModule = fx.Module("simulator",
	fx.Provide(NewAPIBaseURL),
)

// NewAPIBaseURL returns the configured API URL or starts the simulator.
func NewAPIBaseURL(lc fx.Lifecycle, cfg config.Config, roles Roles, clock clockwork.Clock, logger *slog.Logger) (APIBaseURL, error) {
	if cfg.APIURL != "" || !roles.BuiltInSimulator {
		return APIBaseURL(cfg.FetcherBaseURL()), nil
	}
	rng := influencer.Range{From: 1_000_000, To: 1_999_999}
	if r, ok := cfg.BootstrapRange(); ok {
		rng.From, rng.To = min(rng.From, r.From), max(rng.To, r.To)
	}
	simCfg := simulator.Config{Mode: simulator.Mode(cfg.SimulatorMode), Range: rng,
		SuspiciousDelayMin: cfg.SimulatorSuspiciousDelayMin, SuspiciousDelayMax: cfg.SimulatorSuspiciousDelayMax}
	simCfg.SuspiciousNoDelay = simCfg.SuspiciousDelayMax == 0 // (both zero would mean the defaults)
	sim, err := simulator.New(simCfg, clock)
	if err != nil {
		return "", fmt.Errorf("built-in simulator: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("built-in simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logger.Error("built-in simulator", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error { return srv.Shutdown(ctx) },
	})
	url := "http://" + ln.Addr().String()
	logger.Info("started the built-in Mockstagram simulator", "url", url, "mode", cfg.SimulatorMode, "range", rng.String())
	return APIBaseURL(url), nil
}
