package app

import (
	"io"
	"log/slog"
	"os"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/mockstagram/pipeline/config"
	"github.com/mockstagram/pipeline/tracing"
)

// LoggingModule provides the structured logger (JSON, or text on a
// terminal); fx's own events go to it at debug level.
var LoggingModule = fx.Options(
	fx.Module("logging", fx.Provide(NewLogger)),
	fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
		fl := &fxevent.SlogLogger{Logger: l}
		fl.UseLogLevel(slog.LevelDebug)
		return fl
	}),
)

// NewLogger builds the process logger, on stderr, from the configuration.
// Records logged with a context that carries a span get its trace_id and
// span_id.
func NewLogger(cfg config.Config) *slog.Logger {
	return NewLoggerTo(os.Stderr, cfg)
}

// NewLoggerTo is NewLogger writing to w. Log format auto is text when w is
// a terminal (a person reads it) and JSON otherwise (a collector reads it).
func NewLoggerTo(w io.Writer, cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if LogFormat(w, cfg.LogFormat) == config.LogFormatText {
		return slog.New(tracing.LogHandler{Handler: slog.NewTextHandler(w, opts)})
	}
	return slog.New(tracing.LogHandler{Handler: slog.NewJSONHandler(w, opts)})
}

// LogFormat resolves format for output w: auto is text on a terminal,
// JSON otherwise; json and text are themselves.
func LogFormat(w io.Writer, format string) string {
	if format != config.LogFormatAuto {
		return format
	}
	if isTerminal(w) {
		return config.LogFormatText
	}
	return config.LogFormatJSON
}

// isTerminal reports whether w is a character device (a terminal; also
// /dev/null, where the format does not matter). Files, pipes, sockets and
// anything that is not an *os.File are not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
