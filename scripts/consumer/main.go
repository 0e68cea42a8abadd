// Command consumer is an example of a product's consumer of calsync's
// change and lifecycle topics: it pulls one subscription, validates every
// message against its published JSON Schema, deduplicates on the keys
// calsync documents, tells a new user's imported history from new events,
// prints one line per message and, on Ctrl-C, a summary. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"cloud.google.com/go/pubsub/v2"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// realMain pulls until ctx ends, then prints the summary.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("subscription", "", "subscription to pull: its id, or projects/P/subscriptions/S (required)")
	project := fs.String("project", os.Getenv("PROJECT_ID"), "Google Cloud project id (default $PROJECT_ID)")
	dedupSize := fs.Int("dedup-size", 10000, "how many recent dedup keys to remember")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *sub == "":
		return fmt.Errorf("%w: --subscription is required", errUsage)
	case *project == "":
		return fmt.Errorf("%w: --project (or PROJECT_ID) is required", errUsage)
	case *dedupSize < 1:
		return fmt.Errorf("%w: --dedup-size must be at least 1", errUsage)
	}
	c, err := NewConsumer(*dedupSize)
	if err != nil {
		return err
	}
	client, err := pubsubx.NewClient(ctx, *project, "") // PUBSUB_EMULATOR_HOST: the emulator
	if err != nil {
		return err
	}
	defer client.Close()
	log := logging.New(stderr, slog.LevelInfo)
	var mu sync.Mutex // one line at a time: callbacks run concurrently
	err = client.Subscriber(*sub).Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		o := c.Handle(m.Attributes, m.Data)
		if o.Verdict == VerdictPoison {
			log.WarnContext(ctx, "message fails its schema; acknowledged, not acted on", logging.KeyEvent, "poison_message",
				"messageId", m.ID, "subscription", *sub, logging.KeyError, oneLine(o.Err))
		}
		mu.Lock()
		fmt.Fprintln(stdout, o.Line)
		mu.Unlock()
		m.Ack() // every verdict: see Handle
	})
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintln(stdout, c.Summary())
	if err != nil {
		return fmt.Errorf("pull %s: %w", *sub, err)
	}
	return nil
}
