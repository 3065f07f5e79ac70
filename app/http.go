package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/handlers"
	"github.com/mockstagram/pipeline/httpapi"
	"github.com/mockstagram/pipeline/registry"
	"github.com/mockstagram/pipeline/store"
	"github.com/mockstagram/pipeline/web"
)

// HTTPServer is the running API server; Addr is the bound address.
type HTTPServer struct {
	Addr string
}

// HTTPModule serves the API, health and metrics endpoints. Processes
// without the API role still serve /metrics, /healthz and /readyz.
var HTTPModule = fx.Module("http",
	fx.Provide(NewHTTPServer),
	fx.Invoke(func(*HTTPServer) {}),
)

// NewHTTPServer listens on cfg.HTTPAddr at start and shuts down on stop.
// A process with the scheduler role is ready only while its scheduler
// leads or stands by behind another one (handlers.LeaderStatus.Ready).
// Requests are measured on reg (mockstagram_http_request_duration_seconds)
// and traced with tp; see httpapi.API.Handler for the middleware.
func NewHTTPServer(lc fx.Lifecycle, cfg config.Config, roles Roles, s store.Store, router *message.Router, reg *prometheus.Registry,
	tp trace.TracerProvider, clock clockwork.Clock, logger *slog.Logger, leader *handlers.LeaderStatus) (*HTTPServer, error) {
	ready := func(context.Context) error {
		if len(router.Handlers()) > 0 && !router.IsRunning() {
			return errors.New("router not running")
		}
		if roles.Scheduler {
			return leader.Ready()
		}
		return nil
	}
	api := httpapi.New(s, clock, logger.With("stage", "api"), ready, httpapi.Options{
		Registry:   registry.New(s),
		AdminToken: cfg.AdminToken,
		Dashboard:  web.Handler(),
		// The stats change once a minute; the dashboard and clients poll them.
		StatsCacheTTL:  httpapi.DefaultStatsCacheTTL,
		Metrics:        httpapi.NewMetrics(reg),
		TracerProvider: tp,
		CORSOrigins:    cfg.CORSOrigins,
		// Reads stay fresh until the minute that just ended is in: its
		// deadline (deadline-grace past the boundary) plus recording.
		CacheMargin:  cfg.DeadlineGrace + httpapi.DefaultCacheMargin,
		Tracked:      s,
		Shards:       cfg.Shards,
		SpreadWindow: cfg.SpreadWindow,
	})
	h := api.Handler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), roles.API)
	srv := httpapi.NewServer(cfg.HTTPAddr, h)
	out := &HTTPServer{}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", cfg.HTTPAddr)
			if err != nil {
				return fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
			}
			out.Addr = ln.Addr().String()
			logger.Info("HTTP API listening", "addr", out.Addr, "url", "http://"+displayAddr(ln.Addr()))
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logger.Error("http server", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error { return srv.Shutdown(ctx) },
	})
	return out, nil
}

func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if ok && tcp.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", tcp.Port)
	}
	return a.String()
}
