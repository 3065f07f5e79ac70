package app

import (
	"log/slog"
	"os"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/tracing"
)

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
