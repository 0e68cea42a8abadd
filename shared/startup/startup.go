// Package startup builds a Cloud Function's handler on its first request (no
// work in init) and, when that fails (config, secret, client), logs CRITICAL,
// lets the caller answer "unavailable", and tries again on a later request
// with backoff instead of failing every request until the instance dies.
package startup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
)

// ErrUnavailable wraps every failed or postponed start.
var ErrUnavailable = errors.New("function unavailable")

// Lazy is a value built on first use.
type Lazy[T any] struct {
	name  string
	build func(ctx context.Context, logger *slog.Logger) (T, error)

	// Logger gets the CRITICAL line of a failed start (default logging.Default()).
	Logger *slog.Logger
	// FirstRetry and MaxRetry shape the backoff between start attempts
	// (defaults 1 s and 1 min, doubling, ±50% jitter).
	FirstRetry, MaxRetry time.Duration
	Now                  func() time.Time

	mu      sync.Mutex
	v       T
	ok      bool
	err     error
	retryAt time.Time
	wait    *backoff.ExponentialBackOff
}

// New returns a Lazy that builds with build on first use.
func New[T any](name string, build func(ctx context.Context, logger *slog.Logger) (T, error)) *Lazy[T] {
	return &Lazy[T]{name: name, build: build}
}

// Function returns a Lazy that loads the function's config C from the
// environment and builds its handler with newFn (every function's New has
// this shape; the returned close is for tools and tests, an instance never
// closes).
func Function[C interface{ Validate() error }, T any](name string, newFn func(context.Context, C, *slog.Logger) (T, func(), error)) *Lazy[T] {
	return New(name, func(ctx context.Context, logger *slog.Logger) (T, error) {
		var zero T
		cfg, err := config.Load[C](ctx, nil)
		if err != nil {
			return zero, err
		}
		v, _, err := newFn(ctx, cfg, logger)
		return v, err
	})
}

// Get returns the value, building it if needed. A failed build is retried
// only after a backoff; meanwhile Get fails at once with ErrUnavailable.
func (l *Lazy[T]) Get() (T, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ok {
		return l.v, nil
	}
	var zero T
	now := l.now()
	if l.err != nil && now.Before(l.retryAt) {
		return zero, fmt.Errorf("%w: %s could not start: %w", ErrUnavailable, l.name, l.err)
	}
	logger := l.Logger
	if logger == nil {
		logger = logging.Default()
	}
	v, err := l.build(context.Background(), logger)
	if err != nil {
		if l.wait == nil {
			l.wait = &backoff.ExponentialBackOff{InitialInterval: cmp.Or(l.FirstRetry, time.Second), RandomizationFactor: 0.5,
				Multiplier: 2, MaxInterval: cmp.Or(l.MaxRetry, time.Minute)}
		}
		pause := l.wait.NextBackOff()
		l.err, l.retryAt = err, now.Add(pause)
		logger.Log(context.Background(), logging.LevelCritical, fmt.Sprintf("%s cannot start: %v", l.name, err),
			logging.KeyEvent, logging.EventStartFailed, logging.KeyRetryInMs, pause.Milliseconds())
		return zero, fmt.Errorf("%w: %s could not start: %w", ErrUnavailable, l.name, err)
	}
	l.v, l.ok, l.err = v, true, nil
	return v, nil
}

func (l *Lazy[T]) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// HTTP serves requests with the lazily built handler, answering 503 while it
// cannot be built (Google and Cloud Scheduler retry 503).
func HTTP[T http.Handler](l *Lazy[T]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h, err := l.Get()
		if err != nil {
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}
}
