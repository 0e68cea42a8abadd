package logging

import (
	"context"
	"log/slog"
	"strings"
)

// Redacted replaces the value of any attribute whose key names a secret.
const Redacted = "[REDACTED]"

// secretKeys are attribute key fragments whose values never reach a log line,
// whatever the caller passed: a second line of defence behind careful callers.
var secretKeys = []string{"token", "secret", "password", "authorization", "refresh", "key_material", "signature", "cookie"}

// IsSecretKey reports whether an attribute key names a secret value.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	if k == "calendarkey" || k == "calendar_key" || k == "keyid" || k == "key_id" {
		return false
	}
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

type redactingHandler struct{ slog.Handler }

func (h *redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(redact(a))
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

func (h *redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = redact(a)
	}
	return &redactingHandler{h.Handler.WithAttrs(out)}
}

func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{h.Handler.WithGroup(name)}
}

func redact(a slog.Attr) slog.Attr {
	if IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	if a.Value.Kind() == slog.KindGroup {
		g := a.Value.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = redact(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return a
}
