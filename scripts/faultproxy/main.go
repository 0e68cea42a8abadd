// Command faultproxy runs shared/testing/faultproxy: a gRPC pass-through to
// the Firestore or Pub/Sub emulator that injects faults, for multi-process
// tests (point a process's FIRESTORE_EMULATOR_HOST or PUBSUB_EMULATOR_HOST at
// it).
//
//	go run ./scripts/faultproxy --upstream 127.0.0.1:8081 --listen 127.0.0.1:0 \
//	    --before 0.05 --lost 0.05 --latency 0.05 --seed 7 --counts-file counts.json
//
// It prints "listening on HOST:PORT" on stdout, logs JSON lines on stderr,
// and on SIGTERM or SIGINT writes the calls and faults it counted as JSON to
// --counts-file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/testing/faultproxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stdout, logging.New(os.Stderr, slog.LevelInfo)); err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("faultproxy", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "the emulator's host:port (required)")
	listen := fs.String("listen", "127.0.0.1:0", "listen address; port 0 picks a free port")
	before := fs.Float64("before", 0, "share of calls answered UNAVAILABLE before the service")
	lost := fs.Float64("lost", 0, "share of writes (Commit, BatchWrite, Publish) applied whose answer is lost")
	contention := fs.Float64("contention", 0, "share of Firestore commits refused ABORTED (contention) before the service")
	latency := fs.Float64("latency", 0, "share of calls delayed 0.2-2 s (half of the writes' delays are late answers)")
	seed := fs.Uint64("seed", 1, "seed of the fault draws")
	countsFile := fs.String("counts-file", "", "where to write the counts as JSON on exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *upstream == "" {
		return errors.New("--upstream is required")
	}
	for name, r := range map[string]float64{"before": *before, "lost": *lost, "contention": *contention, "latency": *latency} {
		if r < 0 || r > 1 {
			return fmt.Errorf("--%s must be between 0 and 1, not %v", name, r)
		}
	}
	rates := faultproxy.Rates{Before: *before, Lost: *lost, Contention: *contention, Latency: *latency}
	p, err := faultproxy.Start(*listen, *upstream, faultproxy.Options{Rates: rates, Seed: *seed})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s\n", p.Addr())
	log.Info("fault proxy listening", "addr", p.Addr(), "upstream", *upstream,
		"before", *before, "lost", *lost, "latency", *latency, "seed", *seed)
	<-ctx.Done()
	p.Close()
	c := p.Counts()
	log.Info("fault proxy stopping", "unavailable", c.Total(faultproxy.Unavailable),
		"lost_unavailable", c.Total(faultproxy.LostUnavailable), "lost_deadline", c.Total(faultproxy.LostDeadline),
		"latency", c.Total(faultproxy.Latency), "late_answer", c.Total(faultproxy.LateAnswer),
		"late_applied", c.Total(faultproxy.LateApplied))
	if *countsFile == "" {
		return nil
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(*countsFile, append(b, '\n'), 0o644)
}
