// Package logging builds slog loggers whose JSON lines Cloud Logging understands:
// "severity" instead of "level", "message" instead of "msg", the source location
// and the trace in the fields Cloud Logging reads. The logger travels in the context.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Cloud Logging's special JSON fields.
const (
	FieldTrace          = "logging.googleapis.com/trace"
	FieldSpanID         = "logging.googleapis.com/spanId"
	FieldSourceLocation = "logging.googleapis.com/sourceLocation"
)

// LevelCritical maps to Cloud Logging's CRITICAL severity.
const LevelCritical = slog.Level(12)

// New returns a JSON logger writing Cloud Logging structured lines to w.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		AddSource:   true,
		Level:       level,
		ReplaceAttr: replaceAttr,
	})
	return slog.New(&redactingHandler{Handler: h})
}

// ParseLevel turns "debug", "info", "warning"/"warn", "error" into a level.
// Anything else is reported as an error by the caller's config validation.
func ParseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "", "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// Default is the logger for a process: JSON on stderr at the level named by
// LOG_LEVEL (info when unset or unknown).
func Default() *slog.Logger {
	lvl, _ := ParseLevel(os.Getenv("LOG_LEVEL"))
	return New(os.Stderr, lvl)
}

func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		a.Key = "severity"
		a.Value = slog.StringValue(severity(a.Value.Any().(slog.Level)))
	case slog.MessageKey:
		a.Key = "message"
	case slog.SourceKey:
		a.Key = FieldSourceLocation
		if src, ok := a.Value.Any().(*slog.Source); ok && src != nil {
			a.Value = slog.GroupValue(
				slog.String("file", src.File),
				slog.Int("line", src.Line),
				slog.String("function", src.Function),
			)
		}
	case slog.TimeKey:
		a.Key = "time"
	}
	return a
}

func severity(l slog.Level) string {
	switch {
	case l >= LevelCritical:
		return "CRITICAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	default:
		return "DEBUG"
	}
}

type ctxKey struct{}

// WithLogger returns a context carrying l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext returns the context's logger, or the process default.
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return defaultLogger
}

var defaultLogger = Default()
