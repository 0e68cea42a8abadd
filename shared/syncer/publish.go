package syncer

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/pubsub/v2"

	"github.com/calsync/calsync/shared/pubsubx"
)

// Message is one change message ready to publish.
type Message struct {
	Data       []byte
	Attributes map[string]string
}

// Publisher publishes a page of change messages, in order, under one
// ordering key, and returns nil only once Pub/Sub has stored every one.
type Publisher interface {
	PublishAll(ctx context.Context, orderingKey string, msgs []Message) error
}

// PubSub adapts a pubsubx.Publisher (made with ordering enabled) to Publisher.
type PubSub struct{ P *pubsubx.Publisher }

// PublishAll starts every publish (the client batches them) and waits for all.
func (p PubSub) PublishAll(ctx context.Context, orderingKey string, msgs []Message) error {
	results := make([]*pubsub.PublishResult, len(msgs))
	for i, m := range msgs {
		results[i] = p.P.PublishAsync(ctx, m.Data, m.Attributes, orderingKey)
	}
	var errs []error
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// An ordered key pauses after an error; let the retry go.
		p.P.Resume(orderingKey)
		return fmt.Errorf("%w: %d of %d change messages: %w", pubsubx.ErrNotPublished, len(errs), len(msgs), errors.Join(errs[0]))
	}
	return nil
}
