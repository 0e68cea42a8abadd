package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/tenant"
)

// controlConfig is what `control` reads: the project, the operator's
// control topic (each tenant's is CONTROL_TOPIC-NAME, as Terraform names
// them) and the lifecycle topic the answer comes on.
type controlConfig struct {
	Basic          basic
	ControlTopic   string `env:"CONTROL_TOPIC, default=calsync-control"`
	LifecycleTopic string `env:"LIFECYCLE_TOPIC, default=calsync-lifecycle"`
}

// Validate reports every problem of the config.
func (s controlConfig) Validate() error {
	errs := []error{s.Basic.Validate()}
	for name, v := range map[string]string{"CONTROL_TOPIC": s.ControlTopic, "LIFECYCLE_TOPIC": s.LifecycleTopic} {
		if v == "" || strings.ContainsAny(v, "/ ") {
			errs = append(errs, fmt.Errorf("%s %q is not a topic id", name, v))
		}
	}
	return errors.Join(errs...)
}

// tenantNameRE is shared/tenant's rule for names (it would refuse others).
var tenantNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,29}$`)

// cmdControl publishes one control message as a product backend would: to
// the tenant's control topic, with a new requestId and issuedAt now. It
// prints the requestId; with --wait, the lifecycle topic's answer to it.
func cmdControl(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("control")
	tn := fs.String("tenant", tenant.Default, "the tenant whose control topic gets the message (default: the operator's)")
	action := fs.String("action", "", "enroll, unenroll or resync (required)")
	subject := fs.String("subject", "", "Workspace user read by domain-wide delegation")
	credential := fs.String("credential", "", "credential id of a stored OAuth grant")
	externalID := fs.String("external-id", "", "the product's own id for the user (enroll)")
	deleteMirror := fs.Bool("delete-mirror", false, "unenroll: delete the mirrors too")
	full := fs.Bool("full", false, "resync: full resync")
	topic := fs.String("topic", "", "publish here instead of the tenant's control topic (CONTROL_TOPIC, or CONTROL_TOPIC-TENANT)")
	wait := fs.Bool("wait", false, "wait for the answer on the lifecycle topic and print it (exit 1 if rejected)")
	timeout := fs.Duration("timeout", time.Minute, "how long --wait waits")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *tn != tenant.Default && !tenantNameRE.MatchString(*tn) {
		return usagef("--tenant %q is not a tenant name (1-30 of a-z, 0-9, '-', starting with a letter)", *tn)
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	msg := messages.Control{Version: messages.ControlVersion, Action: *action, RequestID: uuid.NewString(),
		IssuedAt: time.Now().UTC(), Subject: *subject, CredentialID: *credential, ExternalID: *externalID,
		DeleteMirror: *deleteMirror, Full: *full}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	// The SyncWorker's own check: what it would refuse is not sent.
	if _, err := messages.ParseControl(data); err != nil {
		return usagef("not a valid control message: %v", err)
	}
	cfg, err := config.Load[controlConfig](ctx, c.lookup)
	if err != nil {
		return fmt.Errorf("%w (set it in the environment, --project or --state-file)", err)
	}
	if *topic == "" {
		*topic = cfg.ControlTopic
		if *tn != tenant.Default {
			*topic += "-" + *tn
		}
	}
	project := cfg.Basic.ProjectID
	ps, err := pubsubx.NewClient(ctx, project, c.get("PUBSUB_EMULATOR_HOST"))
	if err != nil {
		return err
	}
	c.closers = append(c.closers, func() { ps.Close() })

	// The answer may come before a subscription made after the publish
	// would see it: subscribe first.
	var answers <-chan messages.Lifecycle
	if *wait {
		filter := fmt.Sprintf("attributes.%s = %q", messages.AttrTenant, *tn)
		subID, drop, err := tempSubscription(ctx, ps, project, cfg.LifecycleTopic, "calsync-control-", filter)
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", cfg.LifecycleTopic, err)
		}
		defer func() { _ = drop() }()
		answers = controlAnswers(ctx, ps, subID, *tn, msg.RequestID)
	}

	pub := pubsubx.NewPublisher(ps, *topic, false)
	defer pub.Stop()
	if err := pub.Publish(ctx, data, msg.Attributes(), ""); err != nil {
		return fmt.Errorf("publishing to %s: %w", *topic, err)
	}
	fmt.Fprintln(c.stdout, msg.RequestID)
	fmt.Fprintf(c.stderr, "calsync control: %s of tenant %s published to %s (requestId %s)\n", msg.Action, *tn, *topic, msg.RequestID)
	if !*wait {
		return nil
	}
	select {
	case a := <-answers:
		b, _ := json.Marshal(a)
		fmt.Fprintln(c.stdout, string(b))
		if a.Type == messages.LifecycleControlRejected {
			return fmt.Errorf("rejected: %s (%s)", a.Reason, a.Detail)
		}
		return nil
	case <-time.After(*timeout):
		return fmt.Errorf("no answer on %s for requestId %s within %s (is the SyncWorker up, and is %s a tenant of the deployment?)",
			cfg.LifecycleTopic, msg.RequestID, *timeout, *tn)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// controlAnswers receives the lifecycle messages of subID until ctx ends
// and passes on the one answering requestID for tn (control.accepted or
// control.rejected). The tenant is checked here too: a filter is Pub/Sub's
// promise, and the emulator ignores filters.
func controlAnswers(ctx context.Context, ps *pubsub.Client, subID, tn, requestID string) <-chan messages.Lifecycle {
	out := make(chan messages.Lifecycle, 1)
	go func() {
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		_ = ps.Subscriber(subID).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			var l messages.Lifecycle
			if m.Attributes[messages.AttrTenant] != tn || json.Unmarshal(m.Data, &l) != nil || l.Control == nil ||
				l.Control.RequestID != requestID || l.Tenant != tn {
				return
			}
			if l.Type == messages.LifecycleControlAccepted || l.Type == messages.LifecycleControlRejected {
				select {
				case out <- l:
					stop()
				default:
				}
			}
		})
	}()
	return out
}

// tempSubscription makes a pull subscription of topic for this run (with
// filter, if any); drop deletes it. Pub/Sub deletes one left behind by a
// run that died after a day idle.
func tempSubscription(ctx context.Context, ps *pubsub.Client, project, topic, prefix, filter string) (id string, drop func() error, err error) {
	id = prefix + randomID()
	name := pubsubx.SubscriptionName(project, id)
	_, err = ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: name, Topic: pubsubx.TopicName(project, topic), AckDeadlineSeconds: 60, Filter: filter,
		ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(24 * time.Hour)},
	})
	if err != nil {
		return "", nil, err
	}
	return id, func() error {
		return ps.SubscriptionAdminClient.DeleteSubscription(context.WithoutCancel(ctx), &pubsubpb.DeleteSubscriptionRequest{Subscription: name})
	}, nil
}
