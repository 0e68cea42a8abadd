package terraform_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/calsync/calsync/shared/store"
)

// Tenants, the lifecycle topic and consumers (issue 23): what the SyncWorker
// and RenewChannels are told (the env contract TENANTS, LIFECYCLE_TOPIC,
// CONTROL_MAX_AGE), that every control subscription reaches the SyncWorker
// the same way, who may publish and subscribe where, and the consumers'
// filters and dead letters. The locals that compute values from variables
// are evaluated with HCL itself, with inputs converted to the variables'
// declared types (optional attributes and their defaults) as Terraform does.

// tfFunctions are the Terraform functions the evaluated locals use (those
// of cty's standard library Terraform's are built on).
var tfFunctions = map[string]function.Function{
	"jsonencode": stdlib.JSONEncodeFunc,
	"keys":       stdlib.KeysFunc,
	"merge":      stdlib.MergeFunc,
	"concat":     stdlib.ConcatFunc,
	"join":       stdlib.JoinFunc,
	"contains":   stdlib.ContainsFunc,
	"coalesce":   stdlib.CoalesceFunc,
	"length":     lengthFunc,
}

// lengthFunc is Terraform's length: of a string (in characters) too, not
// only of a collection as cty's.
var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return stdlib.Length(args[0])
	},
})

// variableValue is what var.NAME holds for a tfvars value given as JSON:
// converted to the variable's type, with its optional attributes' defaults.
func (m *module) variableValue(t *testing.T, name, value string) cty.Value {
	t.Helper()
	for _, b := range m.blocks {
		if b.Type != "variable" || len(b.Labels) != 1 || b.Labels[0] != name {
			continue
		}
		te, ok := b.attr("type")
		if !ok {
			t.Fatalf("variable %s has no type", name)
		}
		ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(te.Expression)
		if diags.HasErrors() {
			t.Fatalf("variable %s: type: %s", name, diags.Error())
		}
		implied, err := ctyjson.ImpliedType([]byte(value))
		if err != nil {
			t.Fatalf("var.%s = %s: %v", name, value, err)
		}
		v, err := ctyjson.Unmarshal([]byte(value), implied)
		if err != nil {
			t.Fatalf("var.%s = %s: %v", name, value, err)
		}
		if defaults != nil {
			v = defaults.Apply(v)
		}
		if v, err = convert.Convert(v, ty); err != nil {
			t.Fatalf("var.%s = %s is not a %s: %v", name, value, typeexpr.TypeString(ty), err)
		}
		return v
	}
	t.Fatalf("variable %s is not declared", name)
	return cty.NilVal
}

// eval evaluates an expression with the given var.*, local.* and extra
// root names.
func eval(t *testing.T, e tfExpr, vars, locals map[string]cty.Value, extra map[string]cty.Value) cty.Value {
	t.Helper()
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars), "local": cty.ObjectVal(locals)},
		Functions: tfFunctions,
	}
	maps.Copy(ctx.Variables, extra)
	v, diags := e.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %s: %s", e.pos(), e.raw(), diags.Error())
	}
	return v
}

func (m *module) local(t *testing.T, name string) tfExpr {
	t.Helper()
	e, ok := m.locals[name]
	if !ok {
		t.Fatalf("local.%s is not defined", name)
	}
	return e
}

// exampleTenants is a tenants value as an operator writes it: optional
// attributes left out for one tenant.
const exampleTenants = `{
	"acme": {"publishers": ["serviceAccount:acme@p.iam.gserviceaccount.com", "group:acme-ops@example.com"], "domains": ["acme.example"], "subjects": ["room@acme.example"], "oauth": false},
	"globex": {"publishers": ["serviceAccount:globex@p.iam.gserviceaccount.com"]}
}`

// tenantEnv is one element of TENANTS, exactly as the Go side reads it.
type tenantEnv struct {
	Name                string   `json:"name"`
	ControlSubscription string   `json:"controlSubscription"`
	Domains             []string `json:"domains"`
	Subjects            []string `json:"subjects"`
	OAuth               bool     `json:"oauth"`
}

// TENANTS is one object per tenant naming the subscription that pushes that
// tenant's control topic to the SyncWorker, with what it may enroll; the
// empty list without tenants.
func TestTenantsEnvironment(t *testing.T) {
	m := loadModule(t)
	tenancy := m.local(t, "tenancy_env")
	tenantsExpr, ok := tenancy.item("TENANTS")
	if !ok {
		t.Fatal("local.tenancy_env has no TENANTS")
	}
	tenantsJSON := func(tenants string) string {
		vars := map[string]cty.Value{"name_prefix": cty.StringVal("cs"), "tenants": m.variableValue(t, "tenants", tenants)}
		locals := map[string]cty.Value{"tenant_control": eval(t, m.local(t, "tenant_control"), vars, nil, nil)}
		return eval(t, tenantsExpr, vars, locals, nil).AsString()
	}

	if got := tenantsJSON(`{}`); got != "[]" {
		t.Errorf("TENANTS without tenants = %s, want []", got)
	}

	got := tenantsJSON(exampleTenants)
	dec := json.NewDecoder(strings.NewReader(got))
	dec.DisallowUnknownFields()
	var tenants []tenantEnv
	if err := dec.Decode(&tenants); err != nil {
		t.Fatalf("TENANTS = %s: %v", got, err)
	}
	want := []tenantEnv{
		{Name: "acme", ControlSubscription: "cs-control-acme-push", Domains: []string{"acme.example"}, Subjects: []string{"room@acme.example"}, OAuth: false},
		{Name: "globex", ControlSubscription: "cs-control-globex-push", Domains: []string{}, Subjects: []string{}, OAuth: true},
	}
	if !slices.EqualFunc(tenants, want, func(a, b tenantEnv) bool {
		return a.Name == b.Name && a.ControlSubscription == b.ControlSubscription && slices.Equal(a.Domains, b.Domains) && slices.Equal(a.Subjects, b.Subjects) && a.OAuth == b.OAuth
	}) {
		t.Errorf("TENANTS = %s\nwant %+v", got, want)
	}
	// Every key present, lists as lists (never null), so the Go side can
	// tell "no domains" from a missing field.
	var raw []map[string]any
	_ = json.Unmarshal([]byte(got), &raw)
	for _, obj := range raw {
		for _, k := range []string{"name", "controlSubscription", "domains", "subjects", "oauth"} {
			if v, ok := obj[k]; !ok || v == nil {
				t.Errorf("TENANTS element %v: %s missing or null", obj, k)
			}
		}
	}

	// The subscription TENANTS names is the one created for the tenant.
	sub := m.resource(t, "google_pubsub_subscription", "tenant_control")
	if fe, _ := sub.attr("for_each"); fe.raw() != "local.tenant_control" {
		t.Errorf("google_pubsub_subscription.tenant_control: for_each = %s, want local.tenant_control", fe.raw())
	}
	if name, _ := sub.attr("name"); name.raw() != "each.value.subscription" || !strings.Contains(tenantsExpr.raw(), "local.tenant_control[name].subscription") {
		t.Errorf("the tenant control subscription's name (%s) and TENANTS' controlSubscription must both be local.tenant_control's subscription", name.raw())
	}
}

// The SyncWorker and RenewChannels get TENANTS and LIFECYCLE_TOPIC, the
// Webhook neither; the topic by name, as CHANGES_TOPIC. CONTROL_MAX_AGE is
// the SyncWorker's alone (it acts on control messages).
func TestTenancyEnvOfTheCalendarFunctions(t *testing.T) {
	m := loadModule(t)
	want := map[string]string{
		"TENANTS":         "",
		"LIFECYCLE_TOPIC": "google_pubsub_topic.lifecycle.name",
	}
	items := m.objectItems(m.local(t, "tenancy_env"))
	for k, raw := range want {
		e, ok := items[k]
		if !ok {
			t.Errorf("local.tenancy_env has no %s", k)
		} else if raw != "" && e.raw() != raw {
			t.Errorf("%s = %s, want %s", k, e.raw(), raw)
		}
	}
	if changes := m.objectItems(m.local(t, "functions"))["sync"]; changes.Expression != nil {
		env, _ := changes.item("env")
		if ct := m.objectItems(env)["CHANGES_TOPIC"]; ct.raw() != "google_pubsub_topic.changes.name" {
			t.Errorf("CHANGES_TOPIC = %s: LIFECYCLE_TOPIC is given the same way (the topic's name)", ct.raw())
		}
		if ma := m.objectItems(env)["CONTROL_MAX_AGE"]; ma.raw() != "var.control_max_age" {
			t.Errorf("the SyncWorker's CONTROL_MAX_AGE = %s, want var.control_max_age", ma.raw())
		}
	}
	for _, f := range m.functions(t) {
		for k := range want {
			got := f.env[k] == "plain"
			if wantSet := f.entryPoint != "Webhook"; got != wantSet {
				t.Errorf("%s (%s): %s set = %v, want %v", f.addr, f.entryPoint, k, got, wantSet)
			}
		}
	}
}

func (m *module) resource(t *testing.T, typ, name string) tfBlock {
	t.Helper()
	for _, b := range m.resources("resource", typ) {
		if b.Labels[1] == name {
			return b
		}
	}
	t.Fatalf("no resource %s.%s", typ, name)
	return tfBlock{}
}

// raw is an attribute's source, or of a nested block's attribute
// (path "block.attr").
func (b tfBlock) raw(path string) string {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		c, ok := b.child(p)
		if !ok {
			return ""
		}
		b = c
	}
	e, ok := b.attr(parts[len(parts)-1])
	if !ok {
		return ""
	}
	return e.raw()
}

// subscriptionRef is how a grant names a subscription (or topic) resource's
// NAME attribute: TYPE.NAME.ATTR, or TYPE.NAME[each.key].ATTR under for_each.
func subscriptionRef(b tfBlock, attr string) string {
	ref := b.Labels[0] + "." + b.Labels[1]
	if _, ok := b.attr("for_each"); ok {
		ref += "[each.key]"
	}
	return ref + "." + attr
}

// Every subscription pushing to the SyncWorker (notifications, the
// operator's control topic, each tenant's) pushes with the pusher's OIDC
// token, retries with backoff, dead-letters to the dead-letter topic and
// lets the Pub/Sub agent acknowledge what it forwards.
func TestSyncWorkerPushSubscriptions(t *testing.T) {
	m := loadModule(t)
	const uri = `google_cloudfunctions2_function.calendar["sync"].service_config[0].uri`
	agentAcks := map[string]bool{}
	for _, b := range m.bindings(t, "google_pubsub_subscription_iam_member", "subscription") {
		if b.role == "roles/pubsub.subscriber" && b.member == m.local(t, "pubsub_agent").raw() {
			agentAcks[b.target] = true
		}
	}
	var pushed []string
	for _, s := range m.resources("resource", "google_pubsub_subscription") {
		if s.raw("push_config.push_endpoint") != uri {
			continue
		}
		pushed = append(pushed, s.Labels[1])
		pc, _ := s.child("push_config")
		for attr, want := range map[string]string{
			"oidc_token.service_account_email": `google_service_account.this["sync_pusher"].email`,
			"oidc_token.audience":              uri,
		} {
			if got := pc.raw(attr); got != want {
				t.Errorf("%s: push_config.%s = %q, want %s", s.addr(), attr, got, want)
			}
		}
		for attr, want := range map[string]string{
			"ack_deadline_seconds":                     "600",
			"retry_policy.minimum_backoff":             `"10s"`,
			"retry_policy.maximum_backoff":             `"600s"`,
			"dead_letter_policy.dead_letter_topic":     "google_pubsub_topic.dead_letter.id",
			"dead_letter_policy.max_delivery_attempts": "var.dead_letter_max_delivery_attempts",
			"expiration_policy.ttl":                    `""`,
		} {
			if got := s.raw(attr); got != want {
				t.Errorf("%s: %s = %q, want %s", s.addr(), attr, got, want)
			}
		}
		if ref := subscriptionRef(s, "name"); !agentAcks[ref] {
			t.Errorf("%s: no roles/pubsub.subscriber for the Pub/Sub agent on %s: its dead letters would never leave it", s.addr(), ref)
		}
	}
	slices.Sort(pushed)
	if want := []string{"control", "sync_worker", "tenant_control"}; !slices.Equal(pushed, want) {
		t.Errorf("subscriptions pushing to the SyncWorker: %v, want %v", pushed, want)
	}
}

// pairs reads an object of {OWNER, member} objects (a grant per member) as
// key -> "OWNER member".
func pairs(v cty.Value, owner string) map[string]string {
	out := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, el := it.Element()
		out[k.AsString()] = el.GetAttr(owner).AsString() + " " + el.GetAttr("member").AsString()
	}
	return out
}

// Each tenant's publishers publish to that tenant's control topic, and only
// there: local.tenant_publishers pairs every publisher with its own tenant.
func TestTenantPublishers(t *testing.T) {
	m := loadModule(t)
	vars := map[string]cty.Value{"tenants": m.variableValue(t, "tenants", exampleTenants)}
	got := pairs(eval(t, m.local(t, "tenant_publishers"), vars, nil, nil), "tenant")
	want := map[string]string{
		"acme/serviceAccount:acme@p.iam.gserviceaccount.com":     "acme serviceAccount:acme@p.iam.gserviceaccount.com",
		"acme/group:acme-ops@example.com":                        "acme group:acme-ops@example.com",
		"globex/serviceAccount:globex@p.iam.gserviceaccount.com": "globex serviceAccount:globex@p.iam.gserviceaccount.com",
	}
	if !maps.Equal(got, want) {
		t.Errorf("local.tenant_publishers = %v, want %v", got, want)
	}
	r := m.resource(t, "google_pubsub_topic_iam_member", "tenant_control_publishers")
	for attr, want := range map[string]string{
		"for_each": "local.tenant_publishers",
		"topic":    "google_pubsub_topic.tenant_control[each.value.tenant].name",
		"role":     `"roles/pubsub.publisher"`,
		"member":   "each.value.member",
	} {
		if got := r.raw(attr); got != want {
			t.Errorf("%s: %s = %s, want %s", r.addr(), attr, got, want)
		}
	}
	// Nobody else publishes to a tenant's topic.
	for _, b := range m.bindings(t, "google_pubsub_topic_iam_member", "topic") {
		if strings.Contains(b.target, "tenant_control") && b.addr != "google_pubsub_topic_iam_member.tenant_control_publishers" {
			t.Errorf("%s: %s for %s on a tenant's control topic", b.addr, b.role, b.member)
		}
	}
}

// Exactly the SyncWorker and RenewChannels publish to the lifecycle topic.
func TestLifecycleTopicPublishers(t *testing.T) {
	m := loadModule(t)
	var got []string
	for _, b := range m.bindings(t, "google_pubsub_topic_iam_member", "topic") {
		if b.target != "google_pubsub_topic.lifecycle.name" {
			continue
		}
		if b.role != "roles/pubsub.publisher" {
			t.Errorf("%s: %s on the lifecycle topic", b.addr, b.role)
		}
		got = append(got, b.member)
	}
	slices.Sort(got)
	want := []string{`google_service_account.this["renew"].member`, `google_service_account.this["sync"].member`}
	if !slices.Equal(got, want) {
		t.Errorf("lifecycle topic publishers %v, want %v", got, want)
	}
	if r := m.resource(t, "google_pubsub_topic", "lifecycle"); r.raw("message_retention_duration") != `"604800s"` {
		t.Errorf("the lifecycle topic keeps messages %s, want 7 days like changes", r.raw("message_retention_duration"))
	}
}

// The consumers' filters: the tenant's messages, ANDed with the consumer's
// own filter; no filter when neither is given.
func TestConsumerFilters(t *testing.T) {
	m := loadModule(t)
	consumers := `{
		"all":    {"topic": "changes"},
		"acme":   {"topic": "changes", "tenant": "acme"},
		"live":   {"topic": "changes", "filter": "attributes.origin != \"initial\""},
		"both":   {"topic": "lifecycle", "tenant": "default", "filter": "attributes.origin = \"incremental\" OR attributes.origin = \"resync\""}
	}`
	vars := map[string]cty.Value{"consumers": m.variableValue(t, "consumers", consumers)}
	filters := eval(t, m.local(t, "consumer_filters"), vars, nil, nil)
	want := map[string]string{
		"all":  ``,
		"acme": `attributes.tenant = "acme"`,
		"live": `(attributes.origin != "initial")`,
		"both": `attributes.tenant = "default" AND (attributes.origin = "incremental" OR attributes.origin = "resync")`,
	}
	for k, w := range want {
		if got := filters.GetAttr(k).AsString(); got != w {
			t.Errorf("filter of consumer %s = %q, want %q", k, got, w)
		}
	}
	sub := m.resource(t, "google_pubsub_subscription", "consumer")
	if got := sub.raw("filter"); got != "local.consumer_filters[each.key]" {
		t.Errorf("%s: filter = %s, want local.consumer_filters[each.key]", sub.addr(), got)
	}
}

// A consumer's tenant is "default" or a tenant of var.tenants (a
// precondition: Terraform 1.5 validates a variable alone), and its filter
// fits Pub/Sub's 256 bytes.
func TestConsumerPreconditions(t *testing.T) {
	m := loadModule(t)
	sub := m.resource(t, "google_pubsub_subscription", "consumer")
	lc, _ := sub.child("lifecycle")
	pre := lc.children("precondition")
	if len(pre) != 2 {
		t.Fatalf("%s: %d preconditions, want 2 (tenant, filter length)", sub.addr(), len(pre))
	}
	tenantCond, _ := pre[0].attr("condition")
	lengthCond, _ := pre[1].attr("condition")
	vars := map[string]cty.Value{"tenants": m.variableValue(t, "tenants", exampleTenants)}
	for _, c := range []struct {
		consumer string
		ok       bool
	}{
		{`{"topic": "changes"}`, true},
		{`{"topic": "changes", "tenant": "default"}`, true},
		{`{"topic": "changes", "tenant": "acme"}`, true},
		{`{"topic": "lifecycle", "tenant": "globex"}`, true},
		{`{"topic": "changes", "tenant": "initech"}`, false},
	} {
		v := m.variableValue(t, "consumers", `{"c": `+c.consumer+`}`).Index(cty.StringVal("c"))
		each := cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal("c"), "value": v})
		if got := eval(t, tenantCond, vars, nil, map[string]cty.Value{"each": each}); got.True() != c.ok {
			t.Errorf("consumer %s with tenants acme, globex: tenant precondition %v, want %v", c.consumer, got.True(), c.ok)
		}
	}
	for n, ok := range map[int]bool{256: true, 257: false} {
		locals := map[string]cty.Value{"consumer_filters": cty.MapVal(map[string]cty.Value{"c": cty.StringVal(strings.Repeat("x", n))})}
		each := cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal("c")})
		if got := eval(t, lengthCond, nil, locals, map[string]cty.Value{"each": each}); got.True() != ok {
			t.Errorf("a %d-byte filter: length precondition %v, want %v", n, got.True(), ok)
		}
	}
}

// Each consumer dead-letters to a topic of its own, kept by a subscription;
// the Pub/Sub agent publishes there and acknowledges on the consumer's
// subscription; the consumer's subscribers subscribe to that subscription
// only; a push consumer pushes with an OIDC token.
func TestConsumerSubscriptions(t *testing.T) {
	m := loadModule(t)
	sub := m.resource(t, "google_pubsub_subscription", "consumer")
	dl := m.resource(t, "google_pubsub_topic", "consumer_dead_letter")
	hold := m.resource(t, "google_pubsub_subscription", "consumer_dead_letter_hold")
	for _, r := range []tfBlock{sub, dl, hold} {
		if got := r.raw("for_each"); got != "var.consumers" {
			t.Errorf("%s: for_each = %s, want var.consumers", r.addr(), got)
		}
	}
	for attr, want := range map[string]string{
		"topic":                                    "local.consumer_topics[each.value.topic]",
		"enable_message_ordering":                  "each.value.ordering",
		"ack_deadline_seconds":                     "each.value.ack_deadline_seconds",
		"dead_letter_policy.dead_letter_topic":     "google_pubsub_topic.consumer_dead_letter[each.key].id",
		"dead_letter_policy.max_delivery_attempts": "each.value.max_delivery_attempts",
	} {
		if got := sub.raw(attr); got != want {
			t.Errorf("%s: %s = %s, want %s", sub.addr(), attr, got, want)
		}
	}
	if got := hold.raw("topic"); got != "google_pubsub_topic.consumer_dead_letter[each.key].id" {
		t.Errorf("%s: topic = %s, want the consumer's dead-letter topic", hold.addr(), got)
	}
	topics := m.objectItems(m.local(t, "consumer_topics"))
	if len(topics) != 2 || topics["changes"].raw() != "google_pubsub_topic.changes.id" || topics["lifecycle"].raw() != "google_pubsub_topic.lifecycle.id" {
		t.Errorf("local.consumer_topics must be exactly changes and lifecycle (%s)", m.local(t, "consumer_topics").raw())
	}

	// Push: the dynamic push_config of a consumer with push_endpoint.
	var push []tfBlock
	for _, d := range sub.children("dynamic") {
		if len(d.Labels) == 1 && d.Labels[0] == "push_config" {
			push = append(push, d.children("content")...)
		}
	}
	if len(push) != 1 || push[0].raw("oidc_token.service_account_email") != "push_config.value.push_service_account" ||
		push[0].raw("push_endpoint") != "push_config.value.push_endpoint" || push[0].raw("oidc_token.audience") != "push_config.value.push_audience" {
		t.Errorf("%s: want one dynamic push_config pushing to push_endpoint with an OIDC token of push_service_account (audience push_audience)", sub.addr())
	}

	agent := m.local(t, "pubsub_agent").raw()
	want := map[string]bool{
		"google_pubsub_topic_iam_member roles/pubsub.publisher on google_pubsub_topic.consumer_dead_letter[each.key].name":               true,
		"google_pubsub_subscription_iam_member roles/pubsub.subscriber on google_pubsub_subscription.consumer[each.key].name":            true,
		"google_pubsub_subscription_iam_member roles/pubsub.subscriber on google_pubsub_subscription.consumer[each.value.consumer].name": true,
	}
	got := map[string]bool{}
	for _, kind := range []struct{ typ, target string }{{"google_pubsub_topic_iam_member", "topic"}, {"google_pubsub_subscription_iam_member", "subscription"}} {
		for _, b := range m.bindings(t, kind.typ, kind.target) {
			if !strings.Contains(b.target, "consumer") {
				continue
			}
			got[kind.typ+" "+b.role+" on "+b.target] = true
			switch {
			case strings.Contains(b.target, "[each.key]") && b.member != agent:
				t.Errorf("%s: %s on a consumer's %s for %s; only the Pub/Sub agent", b.addr, b.role, kind.target, b.member)
			case strings.Contains(b.target, "[each.value.consumer]") && b.member != "each.value.member":
				t.Errorf("%s: subscribers must be each.value.member of local.consumer_subscribers (%s)", b.addr, b.member)
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("consumer grants:\n  %s\nwant:\n  %s", strings.Join(sortedKeys(got), "\n  "), strings.Join(sortedKeys(want), "\n  "))
	}

	// Subscribers: each consumer's members, on that consumer only.
	vars := map[string]cty.Value{"consumers": m.variableValue(t, "consumers", `{
		"a": {"topic": "changes", "subscribers": ["serviceAccount:a@p.iam.gserviceaccount.com", "group:g@example.com"]},
		"b": {"topic": "lifecycle", "subscribers": ["group:g@example.com"]},
		"c": {"topic": "lifecycle"}
	}`)}
	gotSubs := pairs(eval(t, m.local(t, "consumer_subscribers"), vars, nil, nil), "consumer")
	wantSubs := map[string]string{
		"a/serviceAccount:a@p.iam.gserviceaccount.com": "a serviceAccount:a@p.iam.gserviceaccount.com",
		"a/group:g@example.com":                        "a group:g@example.com",
		"b/group:g@example.com":                        "b group:g@example.com",
	}
	if !maps.Equal(gotSubs, wantSubs) {
		t.Errorf("local.consumer_subscribers = %v, want %v", gotSubs, wantSubs)
	}
}

// The control path's records expire (TTL on expireAt of controlRequests
// and controlOrder), like stopped channels, without single-field indexes.
func TestControlRequestsTTL(t *testing.T) {
	m := loadModule(t)
	found := map[string]bool{}
	for _, f := range m.resources("resource", "google_firestore_field") {
		coll := strings.Trim(f.raw("collection"), `"`)
		if coll != store.CollControlRequests && coll != store.CollControlOrder {
			continue
		}
		found[coll] = true
		_, ttl := f.child("ttl_config")
		ic, idx := f.child("index_config")
		if f.raw("field") != `"expireAt"` || !ttl || !idx || len(ic.Body.Attributes)+len(ic.Body.Blocks) != 0 {
			t.Errorf("%s: want field expireAt with ttl_config {} and an empty index_config", f.addr())
		}
	}
	for _, coll := range []string{store.CollControlRequests, store.CollControlOrder} {
		if !found[coll] {
			t.Errorf("no google_firestore_field for collection %s: its records would pile up", coll)
		}
	}
}

// validationFunctions are the functions the variables' validations call:
// HCL's own can(), cty's standard library, and Terraform's alltrue and
// strcontains (not in cty's library; a few lines each).
func validationFunctions() map[string]function.Function {
	fns := map[string]function.Function{
		"can":       tryfunc.CanFunc,
		"regex":     stdlib.RegexFunc,
		"keys":      stdlib.KeysFunc,
		"values":    stdlib.ValuesFunc,
		"flatten":   stdlib.FlattenFunc,
		"contains":  stdlib.ContainsFunc,
		"coalesce":  stdlib.CoalesceFunc,
		"trimspace": stdlib.TrimSpaceFunc,
		"floor":     stdlib.FloorFunc,
		"alltrue": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
			Type:   function.StaticReturnType(cty.Bool),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				for it := args[0].ElementIterator(); it.Next(); {
					if _, v := it.Element(); v.IsNull() || v.False() {
						return cty.False, nil
					}
				}
				return cty.True, nil
			},
		}),
		"strcontains": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "substr", Type: cty.String}},
			Type:   function.StaticReturnType(cty.Bool),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				return cty.BoolVal(strings.Contains(args[0].AsString(), args[1].AsString())), nil
			},
		}),
	}
	return fns
}

// failedValidations lists the error messages of the validations of
// variable name that value (JSON) fails.
func (m *module) failedValidations(t *testing.T, name, value string) []string {
	t.Helper()
	v := m.variableValue(t, name, value)
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{name: v})},
		Functions: validationFunctions(),
	}
	var failed []string
	for _, b := range m.blocks {
		if b.Type != "variable" || b.Labels[0] != name {
			continue
		}
		for _, val := range b.children("validation") {
			cond, _ := val.attr("condition")
			ok, diags := cond.Value(ctx)
			if diags.HasErrors() {
				t.Fatalf("%s: %s", cond.pos(), diags.Error())
			}
			if ok.False() {
				msg, _ := val.literal("error_message")
				failed = append(failed, msg)
			}
		}
	}
	return failed
}

// Bad tenants and consumers are refused at plan with a message saying what
// is wrong; good ones, optional attributes left out, pass.
func TestTenantAndConsumerValidations(t *testing.T) {
	m := loadModule(t)
	cases := []struct {
		variable, value string
		want            string // a part of the one failing message; "" when valid
	}{
		{"tenants", `{}`, ""},
		{"tenants", exampleTenants, ""},
		{"tenants", `{"default": {"publishers": []}}`, `not "default"`},
		{"tenants", `{"Acme": {"publishers": []}}`, "tenants keys"},
		{"tenants", `{"a-very-long-tenant-name-over-thirty": {"publishers": []}}`, "tenants keys"},
		{"tenants", `{"acme": {"publishers": ["acme@p.iam.gserviceaccount.com"]}}`, "publishers must be IAM members"},
		{"tenants", `{"acme": {"publishers": [], "domains": ["Acme.example"]}}`, "domains must be lower-case DNS names"},
		{"tenants", `{"acme": {"publishers": [], "domains": ["acme"]}}`, "domains must be lower-case DNS names"},
		{"tenants", `{"acme": {"publishers": [], "subjects": ["ann"]}}`, "subjects must be lower-case email addresses"},
		{"tenants", `{"acme": {"publishers": [], "subjects": ["Ann@acme.example"]}}`, "subjects must be lower-case email addresses"},
		{"control_max_age", `"10m"`, ""},
		{"control_max_age", `"1h30m"`, ""},
		{"control_max_age", `"10 minutes"`, "Go duration"},
		{"consumers", `{}`, ""},
		{"consumers", `{"c": {"topic": "changes", "tenant": "acme", "filter": "attributes.origin != \"initial\"", "ordering": true, "subscribers": ["group:g@example.com"]}}`, ""},
		{"consumers", `{"c": {"topic": "lifecycle", "push_endpoint": "https://x.example/hook", "push_service_account": "pusher@p.iam.gserviceaccount.com", "push_audience": "x"}}`, ""},
		{"consumers", `{"C": {"topic": "changes"}}`, "consumers keys"},
		{"consumers", `{"c-dead-letter": {"topic": "changes"}}`, `without "dead-letter"`},
		{"consumers", `{"c": {"topic": "control"}}`, `topic must be "changes" or "lifecycle"`},
		{"consumers", `{"c": {"topic": "changes", "tenant": "Acme"}}`, "consumers tenant"},
		{"consumers", `{"c": {"topic": "changes", "filter": " "}}`, "consumers filter"},
		{"consumers", `{"c": {"topic": "changes", "push_endpoint": "http://x.example/", "push_service_account": "pusher@p.iam.gserviceaccount.com"}}`, "https:// URL"},
		{"consumers", `{"c": {"topic": "changes", "push_endpoint": "https://x.example/"}}`, "go together"},
		{"consumers", `{"c": {"topic": "changes", "push_service_account": "pusher@p.iam.gserviceaccount.com"}}`, "go together"},
		{"consumers", `{"c": {"topic": "changes", "push_endpoint": "https://x.example/", "push_service_account": "serviceAccount:pusher@p.iam.gserviceaccount.com"}}`, "service account email"},
		{"consumers", `{"c": {"topic": "changes", "push_audience": "x"}}`, "push_audience needs push_service_account"},
		{"consumers", `{"c": {"topic": "changes", "subscribers": ["g@example.com"]}}`, "subscribers must be IAM members"},
		{"consumers", `{"c": {"topic": "changes", "ack_deadline_seconds": 5}}`, "ack_deadline_seconds"},
		{"consumers", `{"c": {"topic": "changes", "max_delivery_attempts": 101}}`, "max_delivery_attempts"},
	}
	for _, c := range cases {
		failed := m.failedValidations(t, c.variable, c.value)
		switch {
		case c.want == "" && len(failed) > 0:
			t.Errorf("%s = %s refused: %q", c.variable, c.value, failed)
		case c.want != "" && (len(failed) != 1 || !strings.Contains(failed[0], c.want)):
			t.Errorf("%s = %s: failed %q, want exactly the one saying %q", c.variable, c.value, failed, c.want)
		}
	}
}
