// Package pubsubx is the little calsync needs on top of cloud.google.com/go/pubsub/v2:
// a client that can point at a given emulator, topic creation for local stacks
// and tests, and a publish that waits for the server's answer.
package pubsubx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// NewClient returns a Pub/Sub client. With emulatorHost (or else
// PUBSUB_EMULATOR_HOST) set it talks to that emulator without credentials and
// reconnects within a second after the emulator restarts; otherwise it uses
// Application Default Credentials.
func NewClient(ctx context.Context, projectID, emulatorHost string) (*pubsub.Client, error) {
	if emulatorHost == "" {
		emulatorHost = os.Getenv("PUBSUB_EMULATOR_HOST")
	}
	var opts []option.ClientOption
	if emulatorHost != "" {
		opts = append(opts,
			option.WithEndpoint(emulatorHost),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
			option.WithGRPCDialOption(grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			})),
		)
	}
	c, err := pubsub.NewClient(ctx, projectID, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	return c, nil
}

// TopicName is the full resource name of a topic.
func TopicName(projectID, topicID string) string {
	return "projects/" + projectID + "/topics/" + topicID
}

// SubscriptionName is the full resource name of a subscription.
func SubscriptionName(projectID, subID string) string {
	return "projects/" + projectID + "/subscriptions/" + subID
}

// EnsureTopic creates a topic unless it exists (local stacks and tests; in
// production Terraform owns topics).
func EnsureTopic(ctx context.Context, c *pubsub.Client, topicID string) error {
	_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: TopicName(c.Project(), topicID)})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create topic %s: %w", topicID, err)
	}
	return nil
}

// EnsureSubscription creates a pull subscription unless it exists.
func EnsureSubscription(ctx context.Context, c *pubsub.Client, topicID, subID string, ordered bool) error {
	_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:                  SubscriptionName(c.Project(), subID),
		Topic:                 TopicName(c.Project(), topicID),
		AckDeadlineSeconds:    60,
		EnableMessageOrdering: ordered,
	})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create subscription %s: %w", subID, err)
	}
	return nil
}

// Publisher publishes and waits for the server to take each message.
type Publisher struct {
	c       *pubsub.Client
	topic   string // full resource name
	p       *pubsub.Publisher
	ordered bool
}

// NewPublisher returns a publisher for topicID; ordered enables ordering keys.
func NewPublisher(c *pubsub.Client, topicID string, ordered bool) *Publisher {
	p := c.Publisher(topicID)
	p.EnableMessageOrdering = ordered
	return &Publisher{c: c, topic: TopicName(c.Project(), topicID), p: p, ordered: ordered}
}

// HoldAtMost bounds how long a message waits for others to share its batch.
// The library's 10ms default suits throughput; a caller that answers someone
// only after the publish (the Webhook) wants far less.
func (p *Publisher) HoldAtMost(d time.Duration) *Publisher {
	p.p.PublishSettings.DelayThreshold = d
	return p
}

// Publish sends one message and returns only once Pub/Sub has stored it (or
// failed, or ctx ended). A nil error means the message is durable.
func (p *Publisher) Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error {
	_, err := p.PublishAsync(ctx, data, attrs, orderingKey).Get(ctx)
	if err != nil && orderingKey != "" {
		// An ordered publisher pauses a key after an error; let the next try go.
		p.p.ResumePublish(orderingKey)
	}
	return err
}

// PublishAsync starts a publish; Get on the result waits for it. Batches many
// messages into few requests when callers publish many before waiting.
func (p *Publisher) PublishAsync(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) *pubsub.PublishResult {
	if !p.ordered {
		orderingKey = ""
	}
	return p.p.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs, OrderingKey: orderingKey})
}

// Message is one message ready to publish.
type Message struct {
	Data       []byte
	Attributes map[string]string
}

// Limits of one Publish request (Pub/Sub: 1,000 messages, 10 MB).
const (
	maxRequestMessages = 1000
	maxRequestBytes    = 9 << 20
)

// PublishAll publishes msgs in order under one ordering key and returns nil
// only once Pub/Sub has stored every one. Unlike Publish it sends the
// requests itself, with ctx: the client library sends its batches on a
// context of its own, so a request could still go out after the caller gave
// up; here none is sent after ctx's deadline, and the server drops one that
// arrives later than that deadline. Requests go one after another (at most
// 1,000 messages or 9 MB each), which keeps the order.
func (p *Publisher) PublishAll(ctx context.Context, orderingKey string, msgs []Message) error {
	if !p.ordered {
		orderingKey = ""
	}
	for len(msgs) > 0 {
		req := &pubsubpb.PublishRequest{Topic: p.topic}
		size := 0
		for len(msgs) > 0 && len(req.Messages) < maxRequestMessages {
			m := msgs[0]
			n := len(m.Data) + len(orderingKey) + 64
			for k, v := range m.Attributes {
				n += len(k) + len(v)
			}
			if len(req.Messages) > 0 && size+n > maxRequestBytes {
				break
			}
			size += n
			req.Messages = append(req.Messages, &pubsubpb.PubsubMessage{Data: m.Data, Attributes: m.Attributes, OrderingKey: orderingKey})
			msgs = msgs[1:]
		}
		if _, err := p.c.TopicAdminClient.Publish(ctx, req); err != nil {
			return fmt.Errorf("%w: %d messages to %s: %w", ErrNotPublished, len(req.Messages), p.topic, err)
		}
	}
	return nil
}

// Resume lets an ordering key publish again after a failure.
func (p *Publisher) Resume(orderingKey string) {
	if p.ordered && orderingKey != "" {
		p.p.ResumePublish(orderingKey)
	}
}

// Stop flushes and stops the publisher.
func (p *Publisher) Stop() { p.p.Stop() }

// ErrNotPublished wraps every publish failure.
var ErrNotPublished = errors.New("not published")
