package terraform_test

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The delegation and build blast radius (issue 26): who may sign as the
// domain-wide delegation accounts, with which role, and what the build
// account may read and write. The README's "Blast radius" table rests on
// these.

// instanceRaw is an attribute's source in one for_each instance: each.key
// and each.value.NAME (a literal of the instance's object) spelled out.
func instanceRaw(e tfExpr, ea *each) string {
	raw := e.raw()
	if ea == nil {
		return raw
	}
	raw = strings.ReplaceAll(raw, "each.key", `"`+ea.key+`"`)
	return regexp.MustCompile(`each\.value\.([a-z_]+)`).ReplaceAllStringFunc(raw, func(ref string) string {
		if v, ok := ea.value.item(strings.TrimPrefix(ref, "each.value.")); ok {
			if lit, ok := v.literal(); ok {
				return `"` + lit + `"`
			}
		}
		return ref
	})
}

// accountRE reads the key of google_service_account.this["KEY"].
var accountRE = regexp.MustCompile(`^google_service_account\.this\["([a-z_]+)"\]\.(name|member|email|id)$`)

// binding is one IAM member instance: its resource, role and member source.
type binding struct {
	addr, role, member, target string
}

// bindings lists every instance of the IAM member resources of typ; target
// is the source of the attribute naming what the grant is on.
func (m *module) bindings(t *testing.T, typ, targetAttr string) []binding {
	t.Helper()
	var out []binding
	for _, b := range m.resources("resource", typ) {
		insts, err := m.instances(b)
		if fe, ok := b.attr("for_each"); err != nil && ok {
			// merge() of objects, conditional ones included (secret readers).
			items := m.objectItems(fe)
			for _, k := range sortedKeys(items) {
				insts = append(insts, &each{key: k, value: items[k]})
			}
		}
		if len(insts) == 0 {
			// A grant per element of a variable (control_publishers; the
			// tenants' publishers, the consumers' subscribers and dead
			// letters through a local made of one; Connect on every
			// tenant's control topic): one instance standing for all, its
			// member the element, the Pub/Sub agent, or one of calsync's
			// accounts named outright (never picked by each).
			fe, _ := b.attr("for_each")
			from := fe.raw()
			if l, ok := m.locals[strings.TrimPrefix(from, "local.")]; ok {
				from = l.raw()
			}
			mb, _ := b.attr("member")
			if (strings.Contains(mb.raw(), "google_service_account.") && strings.Contains(mb.raw(), "each.")) || !strings.Contains(from, "var.") {
				t.Fatalf("%s: %v", b.addr(), err)
			}
			insts = []*each{nil}
		}
		for _, ea := range insts {
			get := func(name string) string {
				e, ok := b.attr(name)
				if !ok {
					return ""
				}
				// Followed as far as it goes (to another resource's attribute).
				if d, _ := m.deref(e, ea, nil); d.Expression != nil && d.Expression != e.Expression {
					e = d
				}
				if lit, ok := e.literal(); ok {
					return lit
				}
				return instanceRaw(e, ea)
			}
			addr := typ + "." + b.Labels[1]
			if ea != nil {
				addr += `["` + ea.key + `"]`
			}
			out = append(out, binding{addr: addr, role: get("role"), member: get("member"), target: get(targetAttr)})
		}
	}
	return out
}

// iamMembers are the IAM member resource types of the module, with the
// attribute naming what each grants on.
var iamMembers = []struct{ typ, target string }{
	{"google_project_iam_member", "project"},
	{"google_storage_bucket_iam_member", "bucket"},
	{"google_artifact_registry_repository_iam_member", "repository"},
	{"google_service_account_iam_member", "service_account_id"},
	{"google_pubsub_topic_iam_member", "topic"},
	{"google_pubsub_subscription_iam_member", "subscription"},
	{"google_secret_manager_secret_iam_member", "secret_id"},
	{"google_cloud_run_service_iam_member", "service"},
}

// grantsOf lists a member's grants as "TYPE ROLE on TARGET"; every IAM
// resource type of the module must be one of iamMembers.
func (m *module) grantsOf(t *testing.T, member string) map[string]bool {
	t.Helper()
	for _, b := range m.blocks {
		if b.Type == "resource" && len(b.Labels) == 2 && strings.HasSuffix(b.Labels[0], "_iam_member") &&
			!slices.ContainsFunc(iamMembers, func(k struct{ typ, target string }) bool { return k.typ == b.Labels[0] }) {
			t.Fatalf("%s: an IAM member type iam_test.go does not read (iamMembers)", b.addr())
		}
	}
	got := map[string]bool{}
	for _, kind := range iamMembers {
		for _, b := range m.bindings(t, kind.typ, kind.target) {
			if b.member == member {
				got[kind.typ+" "+b.role+" on "+b.target] = true
			}
		}
	}
	return got
}

// Token Creator (or anything that can act as every service account) is
// never granted on the project, and authoritative project bindings, which
// would drop others' grants, are not used at all. On a service account,
// Token Creator is held only by the Pub/Sub service agent, on the push
// identity (it mints the push subscriptions' OIDC tokens).
func TestNoProjectLevelTokenCreator(t *testing.T) {
	m := loadModule(t)
	broad := []string{"roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountUser", "roles/iam.serviceAccountKeyAdmin",
		"roles/iam.serviceAccountAdmin", "roles/iam.workloadIdentityUser", "roles/owner", "roles/editor"}
	project := m.bindings(t, "google_project_iam_member", "project")
	if len(project) == 0 {
		t.Fatal("no google_project_iam_member found: the scan is broken")
	}
	for _, b := range project {
		if slices.Contains(broad, b.role) || strings.HasPrefix(b.role, "projects/") || strings.Contains(b.role, "custom_role") {
			t.Errorf("%s: %s on the whole project (%s)", b.addr, b.role, b.member)
		}
	}
	for _, typ := range []string{"google_project_iam_binding", "google_project_iam_policy"} {
		for _, b := range m.resources("resource", typ) {
			t.Errorf("%s.%s: authoritative project IAM", typ, b.Labels[1])
		}
	}
	for _, b := range m.bindings(t, "google_service_account_iam_member", "service_account_id") {
		if b.role != "roles/iam.serviceAccountTokenCreator" {
			continue
		}
		if b.target != `google_service_account.this["sync_pusher"].name` || b.member != m.locals["pubsub_agent"].raw() {
			t.Errorf("%s: Token Creator on %s for %s; only the Pub/Sub agent on sync_pusher holds it", b.addr, b.target, b.member)
		}
	}
}

// literalStrings reads a literal list of strings.
func literalStrings(e tfExpr) ([]string, bool) {
	v, diags := e.Value(nil)
	if diags.HasErrors() || !v.CanIterateElements() {
		return nil, false
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, el := it.Element()
		if el.Type().FriendlyName() != "string" {
			return nil, false
		}
		out = append(out, el.AsString())
	}
	return out, true
}

// signerRole is the one custom role: the delegation signer.
func (m *module) signerRole(t *testing.T) tfBlock {
	t.Helper()
	roles := m.resources("resource", "google_project_iam_custom_role")
	if len(roles) != 1 {
		t.Fatalf("%d google_project_iam_custom_role, want 1 (the delegation signer)", len(roles))
	}
	return roles[0]
}

// The delegation accounts are signed for with a custom role holding
// exactly iam.serviceAccounts.signJwt.
func TestDelegationSignerRoleIsSignJwtOnly(t *testing.T) {
	perms, _ := loadModule(t).signerRole(t).attr("permissions")
	got, ok := literalStrings(perms)
	if !ok || !slices.Equal(got, []string{"iam.serviceAccounts.signJwt"}) {
		t.Errorf("the custom role's permissions %q (a literal list: %v), want exactly iam.serviceAccounts.signJwt", got, ok)
	}
}

// delegationAccounts are the service account keys of the delegation
// identities, with the functions that may sign as each: the Calendar's by
// the two functions that read calendars, the Directory's by RenewChannels
// alone (its directory diffs). The Webhook signs as neither.
var delegationAccounts = map[string][]string{
	"calendar":  {"renew", "sync"},
	"directory": {"renew"},
}

// Each delegation account's signers, on the account itself, with the
// custom role; nothing else is granted on them.
func TestDelegationSigners(t *testing.T) {
	m := loadModule(t)
	role := "google_project_iam_custom_role." + m.signerRole(t).Labels[1] + ".name"
	got := map[string][]string{}
	for _, b := range m.bindings(t, "google_service_account_iam_member", "service_account_id") {
		acct := accountRE.FindStringSubmatch(b.target)
		if acct == nil || delegationAccounts[acct[1]] == nil {
			continue
		}
		signer := accountRE.FindStringSubmatch(b.member)
		if b.role != role || signer == nil || signer[2] != "member" {
			t.Errorf("%s: %s for %s on the %s account; want %s for a function's account", b.addr, b.role, b.member, acct[1], role)
			continue
		}
		got[acct[1]] = append(got[acct[1]], signer[1])
	}
	for acct := range got {
		slices.Sort(got[acct])
	}
	if !maps.EqualFunc(got, delegationAccounts, slices.Equal) {
		t.Errorf("delegation signers %v, want %v", got, delegationAccounts)
	}
	for acct := range delegationAccounts {
		if _, ok := m.locals["service_accounts"].item(acct); !ok {
			t.Errorf("local.service_accounts has no %s account", acct)
		}
	}
}

// objectItems is an object-valued expression's items: an object
// constructor, merge() of such, or references to them (the for-expressions
// of optional settings are skipped).
func (m *module) objectItems(e tfExpr) map[string]tfExpr {
	out := map[string]tfExpr{}
	if d, ok := m.deref(e, nil, nil); ok {
		e = d
	}
	switch x := e.Expression.(type) {
	case *hclsyntax.ObjectConsExpr:
		for _, it := range x.Items {
			k, _ := tfExpr{it.KeyExpr, e.file}.literal()
			if kw := hclKeyword(it.KeyExpr); kw != "" {
				k = kw
			}
			out[k] = tfExpr{it.ValueExpr, e.file}
		}
	case *hclsyntax.FunctionCallExpr:
		if x.Name == "merge" {
			for _, a := range x.Args {
				maps.Copy(out, m.objectItems(tfExpr{a, e.file}))
			}
		}
	case *hclsyntax.ConditionalExpr: // either branch may be chosen: both count
		maps.Copy(out, m.objectItems(tfExpr{x.TrueResult, e.file}))
		maps.Copy(out, m.objectItems(tfExpr{x.FalseResult, e.file}))
	}
	return out
}

func hclKeyword(e hclsyntax.Expression) string {
	if x, ok := e.(*hclsyntax.ObjectConsKeyExpr); ok {
		if tr, ok := x.Wrapped.(*hclsyntax.ScopeTraversalExpr); ok && len(tr.Traversal) == 1 {
			return tr.Traversal.RootName()
		}
	}
	return ""
}

// The functions are told the accounts they may sign as, and no other: the
// environment and the IAM grants say the same.
func TestDelegationAccountsInTheFunctions(t *testing.T) {
	m := loadModule(t)
	env := map[string]string{"calendar": "DELEGATION_SERVICE_ACCOUNT", "directory": "DIRECTORY_DELEGATION_SERVICE_ACCOUNT"}
	functions := m.objectItems(m.locals["functions"])
	if len(functions) != 4 {
		t.Fatalf("local.functions has %d functions, want 4", len(functions))
	}
	for acct, signers := range delegationAccounts {
		var got []string
		for fn, body := range functions {
			e, ok := body.item("env")
			if !ok {
				t.Fatalf("local.functions.%s has no env", fn)
			}
			v, ok := m.objectItems(e)[env[acct]]
			if !ok {
				continue
			}
			got = append(got, fn)
			if want := `google_service_account.this["` + acct + `"].email`; v.raw() != want {
				t.Errorf("%s of %s = %s, want %s", env[acct], fn, v.raw(), want)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, signers) {
			t.Errorf("%s is set for %v; want exactly the functions that may sign as the %s account, %v", env[acct], got, acct, signers)
		}
	}
}

// The build account: build logs on the project (they cannot be granted
// lower), the source buckets' objects (a condition), calsync's image repository; nothing
// project-wide in Cloud Storage or Artifact Registry. The functions build
// from the source object's generation, into that repository.
func TestBuildAccountBindings(t *testing.T) {
	m := loadModule(t)
	const build = `google_service_account.this["build"].member`
	want := map[string]bool{
		`google_project_iam_member roles/logging.logWriter on var.project_id`:                                                                true,
		`google_project_iam_member roles/storage.objectViewer on var.project_id`:                                                             true,
		`google_artifact_registry_repository_iam_member roles/artifactregistry.writer on google_artifact_registry_repository.functions.name`: true,
	}
	got := m.grantsOf(t, build)
	if !maps.Equal(got, want) {
		t.Errorf("the build account's grants:\n  %s\nwant:\n  %s", strings.Join(sortedKeys(got), "\n  "), strings.Join(sortedKeys(want), "\n  "))
	}
	// The source read is conditioned on the two source buckets: calsync's
	// and the one Cloud Functions stages the zip in for the build.
	for _, r := range m.resources("resource", "google_project_iam_member") {
		if mb, _ := r.attr("member"); mb.raw() != build {
			continue
		}
		if role, _ := r.literal("role"); !strings.HasPrefix(role, "roles/storage.") {
			continue
		}
		cond, ok := r.child("condition")
		e, _ := cond.attr("expression")
		if !ok || e.raw() != "local.build_source_condition" {
			t.Errorf("%s: the build account's storage read must carry condition local.build_source_condition", r.addr())
		}
		buckets := m.locals["build_source_buckets"].raw()
		cexpr := m.locals["build_source_condition"].raw()
		if !strings.Contains(buckets, "google_storage_bucket.source.name") || !strings.Contains(buckets, `"gcf-v2-sources-${google_storage_bucket.source.project_number}-${var.region}"`) ||
			strings.Count(buckets, ",") != 2 || !strings.Contains(cexpr, `projects/_/buckets/${b}/`) {
			t.Errorf("local.build_source_buckets must be exactly calsync's source bucket and gcf-v2-sources-NUMBER-REGION, each matched by name (%s; %s)", buckets, cexpr)
		}
	}
	if n := len(m.resources("resource", "google_artifact_registry_repository")); n != 1 {
		t.Errorf("%d google_artifact_registry_repository, want calsync's one", n)
	}
	for _, f := range m.functions(t) {
		bc, _ := f.block.child("build_config")
		if e, ok := bc.attr("docker_repository"); !ok || e.raw() != "google_artifact_registry_repository.functions.id" {
			t.Errorf("%s: build_config.docker_repository must be google_artifact_registry_repository.functions.id", f.addr)
		}
		src, _ := bc.child("source")
		ss, _ := src.child("storage_source")
		for attr, want := range map[string]string{
			"bucket":     "google_storage_bucket.source.name",
			"object":     "google_storage_bucket_object.source.name",
			"generation": "google_storage_bucket_object.source.generation",
		} {
			if e, ok := ss.attr(attr); !ok || e.raw() != want {
				t.Errorf("%s: storage_source.%s must be %s", f.addr, attr, want)
			}
		}
	}
}

// The Webhook's account: publisher on the notifications topic, reader of
// the channel-token keys, nothing else. Whatever it publishes is a
// notification, never a control message (another topic) or a change.
func TestWebhookAccountGrants(t *testing.T) {
	m := loadModule(t)
	got := m.grantsOf(t, `google_service_account.this["webhook"].member`)
	want := map[string]bool{
		`google_pubsub_topic_iam_member roles/pubsub.publisher on google_pubsub_topic.notifications.name`:                                                 true,
		`google_secret_manager_secret_iam_member roles/secretmanager.secretAccessor on google_secret_manager_secret.this["channel_token_keys"].secret_id`: true,
	}
	if !maps.Equal(got, want) {
		t.Errorf("the Webhook account's grants:\n  %s\nwant:\n  %s", strings.Join(sortedKeys(got), "\n  "), strings.Join(sortedKeys(want), "\n  "))
	}
}

// The Connect account (issue 24): Firestore (its links' nonces and consent
// sessions), publisher on every tenant's control topic (where it hands the
// sealed grants to the SyncWorker), reader of the connect-link keys and the
// OAuth client's secret; nothing else. Above all no private key: Connect is
// public, and seals to the public key only. Not the operator's control
// topic (the default tenant, unrestricted), notifications or lifecycle.
func TestConnectAccountGrants(t *testing.T) {
	m := loadModule(t)
	got := m.grantsOf(t, `google_service_account.this["connect"].member`)
	want := map[string]bool{
		`google_project_iam_member roles/datastore.user on var.project_id`:                                                                                 true,
		`google_pubsub_topic_iam_member roles/pubsub.publisher on google_pubsub_topic.tenant_control[each.key].name`:                                       true,
		`google_secret_manager_secret_iam_member roles/secretmanager.secretAccessor on google_secret_manager_secret.this["connect_link_keys"].secret_id`:   true,
		`google_secret_manager_secret_iam_member roles/secretmanager.secretAccessor on google_secret_manager_secret.this["oauth_client_secret"].secret_id`: true,
	}
	if !maps.Equal(got, want) {
		t.Errorf("the Connect account's grants:\n  %s\nwant:\n  %s", strings.Join(sortedKeys(got), "\n  "), strings.Join(sortedKeys(want), "\n  "))
	}
	// The publisher grant is one per tenant control topic: its for_each is
	// the tenants' control topics themselves.
	for _, r := range m.resources("resource", "google_pubsub_topic_iam_member") {
		if mb, _ := r.attr("member"); mb.raw() != `google_service_account.this["connect"].member` {
			continue
		}
		if fe, _ := r.attr("for_each"); fe.raw() != "local.tenant_control" {
			t.Errorf("%s: for_each = %s, want local.tenant_control (each tenant's control topic)", r.addr(), fe.raw())
		}
	}

	// What the function is given agrees: no private key, the public one
	// (when set) as plain text, and its own account.
	var connect *tfFunction
	for _, f := range m.functions(t) {
		if f.entryPoint == "Connect" {
			connect = &f
		}
	}
	if connect == nil {
		t.Fatal("no function with entry point Connect")
	}
	for _, k := range []string{"CREDENTIAL_PRIVATE_KEYS", "CREDENTIAL_KEYS", "CHANNEL_TOKEN_KEYS"} {
		if connect.env[k] != "" {
			t.Errorf("%s is given %s: a public function never holds the keys that open users' tokens or sign channels", connect.addr, k)
		}
	}
	for k, kind := range map[string]string{"CREDENTIAL_PUBLIC_KEY": "plain", "CONNECT_LINK_KEYS": "secret", "OAUTH_CLIENT_SECRET": "secret", "OAUTH_CLIENT_ID": "plain"} {
		if connect.env[k] != kind {
			t.Errorf("%s: %s is %q, want %s", connect.addr, k, connect.env[k], kind)
		}
	}
	sa, _ := connect.block.child("service_config")
	if e, _ := sa.attr("service_account_email"); instanceRaw(e, &each{key: "connect"}) != `google_service_account.this["connect"].email` {
		t.Errorf("%s runs as %s, want its own account", connect.addr, e.raw())
	}
}
