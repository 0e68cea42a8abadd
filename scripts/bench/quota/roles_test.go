package quota

// The processes of the quota benchmark. The test binary runs itself again
// with CALSYNC_BENCH_ROLE set: "syncworker" serves the SyncWorker function
// (functions/syncworker, its real config and clients) on a loopback port it
// prints; "renew" runs one RenewChannels run (shared/renewer) and prints its
// summary. Each is an OS process of its own: all they share is Firestore,
// Pub/Sub and the Calendar emulator, as the deployed functions do.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/calsync/calsync/functions/syncworker"
	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
)

const roleEnv = "CALSYNC_BENCH_ROLE"

// runRole runs this process's role and returns its exit code.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	logger := logging.New(os.Stderr, level)
	var err error
	switch role {
	case "syncworker":
		err = serveSyncWorker(ctx, logger)
	case "renew":
		err = renewOnce(ctx, logger)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	return 0
}

func serveSyncWorker(ctx context.Context, logger *slog.Logger) error {
	cfg, err := config.Load[config.SyncWorker](ctx, nil)
	if err != nil {
		return err
	}
	w, closeW, err := syncworker.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeW()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

func renewOnce(ctx context.Context, logger *slog.Logger) error {
	cfg, err := config.Load[config.RenewChannels](ctx, nil)
	if err != nil {
		return err
	}
	a, err := app.Build(ctx, cfg, app.WithLogger(logger))
	if err != nil {
		return err
	}
	defer a.Close()
	sum, err := a.Renewer.Run(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(io.Writer(os.Stdout)).Encode(sum)
}
