package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/tenant"
)

// The control path as terraform/pubsub.tf lays it out (issue 23): the
// operator's control topic (the default tenant's, CONTROL_SUBSCRIPTION), one
// control topic per tenant (TENANTS), each pushed to the SyncWorker by a
// push subscription of its own, and the lifecycle topic the SyncWorker and
// RenewChannels answer and announce on. Names follow Terraform's with the
// default prefix: calsync-control, calsync-control-push,
// calsync-control-NAME, calsync-control-NAME-push, calsync-lifecycle.

// Default control path names.
const (
	DefaultControl   = "calsync-control"
	DefaultLifecycle = "calsync-lifecycle"
)

// DemoTenants are the tenants devstack and the e2e tests run with: two
// products, each allowed one Workspace domain; globex ("Globex CRM" on the
// Connect pages) may also enroll OAuth grants, so its users may connect
// themselves (the stack adds its product page to globex's return URLs). A new slice each call: tenant.Parse lower-cases in place.
func DemoTenants() []tenant.Tenant {
	return []tenant.Tenant{
		{Name: "acme", Domains: []string{"acme.test"}},
		{Name: "globex", Domains: []string{"globex.test"}, OAuth: true, DisplayName: "Globex CRM"},
	}
}

// controlSubscription names a control topic's push subscription, as
// Terraform does (topic + "-push").
func controlSubscription(topic string) string { return topic + "-push" }

// tenantControls lays out the control topics: the default tenant's first,
// then each tenant's (controlTopic-NAME, in its ControlTopic and
// ControlSubscription), and checks the list as the functions will
// (shared/tenant).
func tenantControls(controlTopic string, tenants []tenant.Tenant) ([]tenant.Tenant, error) {
	out := []tenant.Tenant{{Name: tenant.Default, ControlTopic: controlTopic, ControlSubscription: controlSubscription(controlTopic), OAuth: true}}
	for _, t := range tenants {
		t.Domains, t.Subjects, t.ReturnURLs = slices.Clone(t.Domains), slices.Clone(t.Subjects), slices.Clone(t.ReturnURLs)
		t.ControlTopic = controlTopic + "-" + t.Name
		t.ControlSubscription = controlSubscription(t.ControlTopic)
		out = append(out, t)
	}
	if _, err := tenant.Parse(tenantsJSON(out), out[0].ControlSubscription); err != nil {
		return nil, fmt.Errorf("stack: tenants: %w", err)
	}
	return out, nil
}

// tenantsJSON is TENANTS: every tenant but the default one (which is
// CONTROL_SUBSCRIPTION's).
func tenantsJSON(tenants []tenant.Tenant) string {
	list := []tenant.Tenant{}
	for _, t := range tenants {
		if t.Name != tenant.Default {
			list = append(list, t)
		}
	}
	b, _ := json.Marshal(list) // strings, slices and a bool: cannot fail
	return string(b)
}

// ControlTopicOf is the control topic of a tenant ("" or "default": the
// operator's).
func (s *Stack) ControlTopicOf(name string) (string, error) {
	name = tenant.Of(name)
	for _, tc := range s.Tenants {
		if tc.Name == name {
			return tc.ControlTopic, nil
		}
	}
	return "", fmt.Errorf("stack: no tenant %q", name)
}

// setupControl creates each control topic's push subscription to the
// SyncWorker front, with the notifications' settings (Terraform gives them
// the same body). The endpoint is the front's root: the SyncWorker tells a
// control push by the subscription in its body, not by its path.
func (s *Stack) setupControl(ctx context.Context, o PushOptions) error {
	for _, tc := range s.Tenants {
		if err := s.createPush(ctx, tc.ControlSubscription, tc.ControlTopic, s.SyncWorkerURL+"/", o); err != nil {
			return err
		}
	}
	return nil
}

// ensureControlTopics creates the control topics and the lifecycle topic.
func (s *Stack) ensureControlTopics(ctx context.Context) error {
	topics := []string{s.LifecycleTopic}
	for _, tc := range s.Tenants {
		topics = append(topics, tc.ControlTopic)
	}
	for _, t := range topics {
		if err := pubsubx.EnsureTopic(ctx, s.PubSub, t); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	return nil
}
