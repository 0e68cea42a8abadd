package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
)

// PushOptions configure the push subscription that delivers the
// notifications topic to the SyncWorker front, as terraform/pubsub.tf
// configures google_pubsub_subscription.sync_worker.
type PushOptions struct {
	// AckDeadline (Terraform: 600s, longer than the SyncWorker's timeout).
	AckDeadline time.Duration
	// RetryPolicy sets Terraform's retry policy with MinBackoff and
	// MaxBackoff (Terraform: 10s and 600s). Off by default: with a retry
	// policy the emulator stops delivering some messages for good once
	// several fail close together (see README). Without one it delivers a
	// failed message again after about a second.
	RetryPolicy            bool
	MinBackoff, MaxBackoff time.Duration
	// MaxDeliveryAttempts before a message goes to the dead-letter topic
	// (Terraform's default: 10).
	MaxDeliveryAttempts int
	// Shards: the emulator pushes each subscription from two synchronous
	// loops, so at most two deliveries are in flight per subscription (see
	// README). Shards > 1 makes that many identical push subscriptions; the
	// SyncWorker front forwards each message under exactly one of them (by
	// message id) and acknowledges the other copies at once, so up to
	// 2×Shards deliveries run at a time while each message keeps one
	// subscription's retry and dead-letter behaviour. 1 is Terraform's shape
	// exactly. Default 4.
	Shards int
}

func (o PushOptions) withDefaults() PushOptions {
	if o.AckDeadline == 0 {
		o.AckDeadline = 600 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 10 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 600 * time.Second
	}
	if o.MaxDeliveryAttempts == 0 {
		o.MaxDeliveryAttempts = 10
	}
	if o.Shards == 0 {
		o.Shards = 4
	}
	return o
}

func (o PushOptions) validate() error {
	var errs []error
	if o.AckDeadline < 10*time.Second || o.AckDeadline > 600*time.Second {
		errs = append(errs, fmt.Errorf("push ack deadline %s: Pub/Sub allows 10s-600s", o.AckDeadline))
	}
	if o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff || o.MaxBackoff > 600*time.Second {
		errs = append(errs, fmt.Errorf("push backoff %s..%s: want 0 <= min <= max <= 600s", o.MinBackoff, o.MaxBackoff))
	}
	if o.MaxDeliveryAttempts < 5 || o.MaxDeliveryAttempts > 100 {
		errs = append(errs, fmt.Errorf("max delivery attempts %d: Pub/Sub allows 5-100", o.MaxDeliveryAttempts))
	}
	if o.Shards < 1 || o.Shards > 64 {
		errs = append(errs, fmt.Errorf("push shards %d: want 1-64", o.Shards))
	}
	return errors.Join(errs...)
}

// Subscription names, as Terraform makes them from the function names.
const (
	PushSubscription      = "calsync-sync-worker-push"
	DeadLetterTopicSuffix = "-dead-letter"
	DeadLetterHoldSuffix  = "-hold"
	deadLetterWatchSuffix = "-devstack-watch"
)

// subscriptions names the notifications topic's push subscriptions: the
// SyncWorker's NOTIFICATION_SUBSCRIPTIONS.
func (o PushOptions) subscriptions() []string {
	if o.Shards <= 1 {
		return []string{PushSubscription}
	}
	names := make([]string, o.Shards)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", PushSubscription, i)
	}
	return names
}

// setupPush creates the dead-letter topic, its hold subscription (kept for
// operators) and a watch subscription (the stack's own count), and the push
// subscription(s) of the notifications topic.
func (s *Stack) setupPush(ctx context.Context, o PushOptions) error {
	if err := pubsubx.EnsureTopic(ctx, s.PubSub, s.DeadLetterTopic); err != nil {
		return err
	}
	hold := s.DeadLetterTopic + DeadLetterHoldSuffix
	for _, sub := range []string{hold, s.DeadLetterTopic + deadLetterWatchSuffix} {
		if err := pubsubx.EnsureSubscription(ctx, s.PubSub, s.DeadLetterTopic, sub, false); err != nil {
			return err
		}
	}
	s.DeadLetterSubscription = hold
	s.SyncWorkerPushEndpoint = s.SyncWorkerURL + "/" + pubsubx.TopicName(s.ProjectID, s.NotificationsTopic)
	s.ledger.setNotificationSubscriptions(s.ProjectID, o.subscriptions())
	for i, name := range o.subscriptions() {
		endpoint := s.SyncWorkerPushEndpoint
		if o.Shards > 1 {
			endpoint += "?" + url.Values{"shard": {strconv.Itoa(i)}, "shards": {strconv.Itoa(o.Shards)}}.Encode()
		}
		if err := s.createPush(ctx, name, s.NotificationsTopic, endpoint, o); err != nil {
			return err
		}
		s.PushSubscriptions = append(s.PushSubscriptions, name)
	}
	return nil
}

// createPush creates a push subscription of topic to endpoint with
// Terraform's settings (o: ack deadline, dead letters, retention).
func (s *Stack) createPush(ctx context.Context, name, topic, endpoint string, o PushOptions) error {
	sub := &pubsubpb.Subscription{
		Name:                     pubsubx.SubscriptionName(s.ProjectID, name),
		Topic:                    pubsubx.TopicName(s.ProjectID, topic),
		PushConfig:               &pubsubpb.PushConfig{PushEndpoint: endpoint},
		AckDeadlineSeconds:       int32(o.AckDeadline / time.Second),
		MessageRetentionDuration: durationpb.New(7 * 24 * time.Hour),
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{
			DeadLetterTopic:     pubsubx.TopicName(s.ProjectID, s.DeadLetterTopic),
			MaxDeliveryAttempts: int32(o.MaxDeliveryAttempts),
		},
	}
	if o.RetryPolicy {
		sub.RetryPolicy = &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(o.MinBackoff), MaximumBackoff: durationpb.New(o.MaxBackoff)}
	}
	_, err := s.PubSub.SubscriptionAdminClient.CreateSubscription(ctx, sub)
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("stack: create push subscription %s: %w", name, err)
	}
	return nil
}

// watchDeadLetters records every dead letter until ctx ends.
func (s *Stack) watchDeadLetters(ctx context.Context) {
	sub := s.PubSub.Subscriber(s.DeadLetterTopic + deadLetterWatchSuffix)
	for ctx.Err() == nil {
		err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			s.ledger.deadLetter(m)
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("dead-letter watch ended; restarting", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// pushMessageID reads message.messageId (or message_id) of a push body.
func pushMessageID(body []byte) string {
	m, ok := parsePush(body)
	if !ok {
		return ""
	}
	return m.id()
}

type pushBody struct {
	Message struct {
		Data        []byte            `json:"data"`
		Attributes  map[string]string `json:"attributes"`
		MessageID   string            `json:"messageId"`
		MessageID2  string            `json:"message_id"`
		PublishTime time.Time         `json:"publishTime"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

func (p pushBody) id() string {
	if p.Message.MessageID != "" {
		return p.Message.MessageID
	}
	return p.Message.MessageID2
}

func parsePush(body []byte) (pushBody, bool) {
	var p pushBody
	if err := json.Unmarshal(body, &p); err != nil || p.id() == "" {
		return p, false
	}
	return p, true
}

// NotificationRecord is what the stack saw of one notifications message on
// its way to the SyncWorker.
type NotificationRecord struct {
	MessageID    string
	Notification messages.Notification // decoded from the message data
	FirstSeen    time.Time
	// Attempts counts Pub/Sub's deliveries of the message that reached the
	// SyncWorker front (its own shard's), the injected 503s included.
	Attempts int
	// Forwarded counts the copies sent to instances (duplicates included).
	Forwarded int
	// Acked: the front answered a delivery 2xx (Pub/Sub acknowledges it).
	Acked   bool
	AckedAt time.Time
	// Statuses of the answers Pub/Sub got, in order.
	Statuses []int
	// DeadLettered: the message reached the dead-letter topic.
	DeadLettered bool

	data string // the message data, to recognise it on the dead-letter topic
}

// WebhookAck is a push notification a Webhook instance answered 2xx.
type WebhookAck struct {
	ChannelID     string
	MessageNumber int64
	ResourceState string
	At            time.Time
	Instance      int
}

// DeadLetter is a message found on the dead-letter topic.
type DeadLetter struct {
	MessageID    string // the dead-letter topic's id
	Notification messages.Notification
	Attributes   map[string]string
	At           time.Time
}

// ledger keeps what the fronts and the dead-letter watch saw, so tests can
// check that nothing a Webhook acknowledged was lost.
type ledger struct {
	mu           sync.Mutex
	notes        map[string]*NotificationRecord
	webhookAcks  []WebhookAck
	deadLetters  []DeadLetter
	instanceHits map[string]int // "SyncWorker-1" → copies forwarded to it
	// notificationSubs are the notifications push subscriptions' full
	// names: the pushes recorded (control pushes are not notifications).
	notificationSubs map[string]bool
}

func (l *ledger) setNotificationSubscriptions(project string, ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notificationSubs = map[string]bool{}
	for _, id := range ids {
		l.notificationSubs[pubsubx.SubscriptionName(project, id)] = true
	}
}

func newLedger() *ledger {
	return &ledger{notes: map[string]*NotificationRecord{}, instanceHits: map[string]int{}}
}

func (l *ledger) syncWorkerDelivery(d Delivery) {
	p, ok := parsePush(d.Body)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.notificationSubs != nil && !l.notificationSubs[p.Subscription] {
		return
	}
	r := l.notes[p.id()]
	if r == nil {
		r = &NotificationRecord{MessageID: p.id(), FirstSeen: d.At, data: string(p.Message.Data)}
		if n, err := messages.ParseNotification(p.Message.Data); err == nil {
			r.Notification = n
		}
		l.notes[p.id()] = r
	}
	if d.Instance >= 0 {
		r.Forwarded++
		l.instanceHits[SyncWorker+"-"+strconv.Itoa(d.Instance)]++
	}
	if !d.Answered {
		return
	}
	r.Attempts++
	r.Statuses = append(r.Statuses, d.Status)
	if d.Status/100 == 2 && !r.Acked {
		r.Acked, r.AckedAt = true, time.Now()
	}
}

func (l *ledger) webhookDelivery(d Delivery) {
	if !d.Answered || d.Status/100 != 2 {
		return
	}
	num, _ := strconv.ParseInt(strings.TrimSpace(d.Header.Get("X-Goog-Message-Number")), 10, 64)
	a := WebhookAck{ChannelID: strings.TrimSpace(d.Header.Get("X-Goog-Channel-ID")), MessageNumber: num,
		ResourceState: strings.TrimSpace(d.Header.Get("X-Goog-Resource-State")), At: d.At, Instance: d.Instance}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.webhookAcks = append(l.webhookAcks, a)
}

func (l *ledger) deadLetter(m *pubsub.Message) {
	dl := DeadLetter{MessageID: m.ID, Attributes: m.Attributes, At: time.Now()}
	dl.Notification, _ = messages.ParseNotification(m.Data)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadLetters = append(l.deadLetters, dl)
	// The dead-letter topic gives the message a new id; match on content.
	for _, r := range l.notes {
		if r.data == string(m.Data) {
			r.DeadLettered = true
		}
	}
}

// Notifications returns what the stack saw of every notifications message,
// oldest first.
func (s *Stack) Notifications() []NotificationRecord {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	out := make([]NotificationRecord, 0, len(s.ledger.notes))
	for _, r := range s.ledger.notes {
		c := *r
		c.Statuses = append([]int(nil), r.Statuses...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstSeen.Before(out[j].FirstSeen) })
	return out
}

// WebhookAcks returns every push notification a Webhook answered 2xx.
func (s *Stack) WebhookAcks() []WebhookAck {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	return append([]WebhookAck(nil), s.ledger.webhookAcks...)
}

// DeadLetters returns the dead letters seen so far.
func (s *Stack) DeadLetters() []DeadLetter {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	return append([]DeadLetter(nil), s.ledger.deadLetters...)
}

// PendingNotifications counts messages the SyncWorker front has seen that
// are neither acknowledged nor dead-lettered: Pub/Sub will deliver them again.
func (s *Stack) PendingNotifications() int {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	n := 0
	for _, r := range s.ledger.notes {
		if !r.Acked && !r.DeadLettered {
			n++
		}
	}
	return n
}
