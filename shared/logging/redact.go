package logging

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
)

// Redacted replaces the value of any attribute whose key names a secret.
const Redacted = "[REDACTED]"

// secretKeys are attribute key fragments whose values never reach a log line,
// whatever the caller passed: a second line of defence behind careful callers.
var secretKeys = []string{"token", "secret", "password", "authorization", "refresh", "key_material", "signature", "cookie"}

// secretKeyCache remembers IsSecretKey per key: log keys are a small fixed
// set. Bounded, in case some caller logs keys made from data.
var (
	secretKeyCache     sync.Map
	secretKeyCacheSize atomic.Int32
)

// IsSecretKey reports whether an attribute key names a secret value.
func IsSecretKey(key string) bool {
	if v, ok := secretKeyCache.Load(key); ok {
		return v.(bool)
	}
	secret := isSecretKey(key)
	if secretKeyCacheSize.Add(1) <= 4096 {
		secretKeyCache.Store(key, secret)
	}
	return secret
}

func isSecretKey(key string) bool {
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
	clean := true
	r.Attrs(func(a slog.Attr) bool {
		clean = !needsRedaction(a)
		return clean
	})
	if clean { // the usual case: no copy
		return h.Handler.Handle(ctx, r)
	}
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

func needsRedaction(a slog.Attr) bool {
	if IsSecretKey(a.Key) {
		return true
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, ga := range a.Value.Group() {
			if needsRedaction(ga) {
				return true
			}
		}
	}
	return false
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
