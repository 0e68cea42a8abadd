package calendaremu

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	calendarv3 "google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"
)

// Listen serves s on addr (port 0 picks a free port) until ctx ends or stop is
// called. It returns the base URL, e.g. "http://127.0.0.1:PORT".
func (s *Server) Listen(ctx context.Context, addr string) (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve failed", "error", err)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = hs.Shutdown(sctx)
	}()
	return "http://" + ln.Addr().String(), func() { cancel(); <-done }, nil
}

// NewService returns an official calendar/v3 client for the emulator at baseURL.
// Without opts it sends no credentials, so it acts as the default user; pass
// e.g. option.WithTokenSource to act as the user a token was issued for.
func NewService(ctx context.Context, baseURL string, opts ...option.ClientOption) (*calendarv3.Service, error) {
	all := []option.ClientOption{option.WithEndpoint(baseURL + APIPath)}
	if len(opts) == 0 {
		all = append(all, option.WithoutAuthentication())
	}
	return calendarv3.NewService(ctx, append(all, opts...)...)
}
