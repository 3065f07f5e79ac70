package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
)

// PprofModule serves Go's pprof endpoints on pprof-addr, apart from the API
// (an operator's tool, never on the public listener); off when it is empty.
var PprofModule = fx.Module("pprof",
	fx.Invoke(servePprof),
)

func servePprof(lc fx.Lifecycle, cfg config.Config, logger *slog.Logger) {
	if cfg.PprofAddr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No write timeout: a CPU profile or trace streams for ?seconds=N.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", cfg.PprofAddr)
			if err != nil {
				return fmt.Errorf("pprof listen %s: %w", cfg.PprofAddr, err)
			}
			logger.Info("pprof listening", "addr", ln.Addr().String())
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logger.Error("pprof server", "err", err)
				}
			}()
			return nil
		},
		OnStop: srv.Shutdown,
	})
}
