package terraform_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The least-privilege shape the deployment must keep (issue "Harden the
// edges"): only the Webhook and Connect are reachable from the internet; the Firestore
// grants reach calsync's own database only; client SDKs are denied by
// security rules; the private key of the sealed credentials is readable by
// the SyncWorker and RenewChannels alone; nothing needs Google at plan time.

// publicFunctions are the entry points the internet reaches: Google's push
// servers (Webhook) and end users' browsers (Connect) carry no Google
// identity, so both admit everyone and authenticate requests themselves
// (the channel token; the signed, single-use connect link).
var publicFunctions = map[string]bool{"Webhook": true, "Connect": true}

// Pub/Sub push and Cloud Scheduler reach internal-ingress services of their
// project through the run.app URL (functions.tf cites Google's page).
func TestOnlyWebhookAndConnectArePublic(t *testing.T) {
	m := loadModule(t)
	public := map[string]bool{}
	for _, f := range m.functions(t) {
		got := f.ingress
		want := "ALLOW_INTERNAL_ONLY"
		if publicFunctions[f.entryPoint] {
			want = "ALLOW_ALL"
			public[f.entryPoint] = true
		}
		if got != want {
			t.Errorf("%s (%s): ingress_settings %q, want %q", f.addr, f.entryPoint, got, want)
		}
	}
	if len(public) != len(publicFunctions) {
		t.Errorf("public functions deployed: %v, want %v", sortedKeys(public), sortedKeys(publicFunctions))
	}
	// allUsers may invoke exactly the public functions (local.invokers, by
	// the key of local.functions); every other invoker is one of calsync's
	// accounts.
	functions := m.objectItems(m.locals["functions"])
	for key, member := range m.objectItems(m.locals["invokers"]) {
		body, ok := functions[key]
		if !ok {
			t.Errorf("local.invokers.%s: no such function in local.functions", key)
			continue
		}
		ep, _ := body.item("entry_point")
		name, _ := ep.literal()
		isPublic := member.raw() == `"allUsers"`
		if isPublic != publicFunctions[name] {
			t.Errorf("local.invokers.%s (%s) = %s: allUsers must invoke exactly %v", key, name, member.raw(), sortedKeys(publicFunctions))
		}
		if !isPublic && !strings.HasPrefix(member.raw(), "google_service_account.this[") {
			t.Errorf("local.invokers.%s = %s: want allUsers or one of calsync's accounts", key, member.raw())
		}
	}
	if n := len(m.objectItems(m.locals["invokers"])); n != len(functions) {
		t.Errorf("local.invokers has %d entries for %d functions", n, len(functions))
	}
	// Their callers use the run.app URI (service_config[0].uri): internal
	// ingress admits Google's products there, not at a custom domain.
	for _, kind := range []struct{ typ, block, attr string }{
		{"google_pubsub_subscription", "push_config", "push_endpoint"},
		{"google_cloud_scheduler_job", "http_target", "uri"},
	} {
		for _, r := range m.resources("resource", kind.typ) {
			for _, b := range r.children(kind.block) {
				if e, ok := b.attr(kind.attr); ok && !strings.Contains(e.raw(), ".service_config[0].uri") {
					t.Errorf("%s: %s.%s = %s, want a function's service_config[0].uri (run.app)", r.addr(), kind.block, kind.attr, e.raw())
				}
			}
		}
	}
}

// roles/datastore.* can only be granted on the project; a condition on the
// database's resource name keeps it to calsync's database.
func TestFirestoreGrantsLimitedToTheDatabase(t *testing.T) {
	m := loadModule(t)
	found := 0
	for _, r := range m.resources("resource", "google_project_iam_member") {
		role, _ := r.literal("role")
		if !strings.HasPrefix(role, "roles/datastore.") {
			continue
		}
		found++
		cond, ok := r.child("condition")
		if !ok {
			t.Errorf("%s: %s on the whole project, without a condition limiting it to calsync's database", r.addr(), role)
			continue
		}
		e, _ := cond.attr("expression")
		expr := e.raw()
		if l, ok := m.locals[strings.TrimPrefix(expr, "local.")]; ok {
			expr = l.raw()
		}
		if !strings.Contains(expr, "resource.name") || !strings.Contains(expr, "firestore_resource") {
			t.Errorf("%s: condition %s does not test resource.name against the database", r.addr(), expr)
		}
	}
	if found == 0 {
		t.Fatal("no Firestore grant found")
	}
	if res, ok := m.locals["firestore_resource"]; !ok || !strings.Contains(res.raw(), "/databases/${google_firestore_database.this.name}") {
		t.Error("local.firestore_resource must be projects/P/databases/<calsync's database>")
	}
	for _, b := range m.blocks {
		if b.Type == "variable" && len(b.Labels) == 1 && b.Labels[0] == "firestore_database" {
			if d, _ := b.literal("default"); d == "(default)" || d == "" {
				t.Errorf("variable firestore_database defaults to %q: calsync gets a named database of its own", d)
			}
		}
	}
}

// Client SDKs (mobile, web) are governed by security rules, not IAM: the
// database's rules deny everything.
func TestDenyAllSecurityRules(t *testing.T) {
	m := loadModule(t)
	rel := m.resources("resource", "google_firebaserules_release")
	if len(rel) != 1 {
		t.Fatalf("%d google_firebaserules_release, want 1", len(rel))
	}
	name, _ := rel[0].attr("name")
	if !strings.Contains(name.raw(), "cloud.firestore/${google_firestore_database.this.name}") {
		t.Errorf("release name %s must be cloud.firestore/<calsync's database>", name.raw())
	}
	rs, _ := rel[0].attr("ruleset_name")
	sets := m.resources("resource", "google_firebaserules_ruleset")
	if len(sets) != 1 || !strings.Contains(rs.raw(), "google_firebaserules_ruleset."+sets[0].Labels[1]+".name") {
		t.Fatalf("the release must point at the one ruleset (%s)", rs.raw())
	}
	src, _ := sets[0].child("source")
	files := src.children("files")
	if len(files) != 1 {
		t.Fatalf("%d rules files", len(files))
	}
	content, _ := files[0].attr("content")
	rules := content.raw()
	allows := regexp.MustCompile(`allow\s+([a-z, ]+):\s*if\s+([^;]+);`).FindAllStringSubmatch(rules, -1)
	if len(allows) == 0 {
		t.Fatalf("no allow statement in the rules:\n%s", rules)
	}
	for _, a := range allows {
		if strings.TrimSpace(a[2]) != "false" {
			t.Errorf("rules allow %s if %s: only `if false` is allowed", a[1], a[2])
		}
	}
	if !strings.Contains(rules, "match /{document=**}") {
		t.Error("the rules must match every document")
	}
}

// The sealed credentials' private key: the SyncWorker and RenewChannels
// service accounts read it, nobody else (no project-wide accessor either).
func TestPrivateKeyReaders(t *testing.T) {
	m := loadModule(t)
	readers, ok := m.locals["secret_readers"]
	if !ok {
		t.Fatal("no local.secret_readers")
	}
	var items []hclsyntax.ObjectConsItem
	var walk func(e hclsyntax.Expression)
	walk = func(e hclsyntax.Expression) {
		switch x := e.(type) {
		case *hclsyntax.ObjectConsExpr:
			items = append(items, x.Items...)
		case *hclsyntax.FunctionCallExpr:
			for _, a := range x.Args {
				walk(a)
			}
		case *hclsyntax.ConditionalExpr:
			walk(x.TrueResult)
			walk(x.FalseResult)
		}
	}
	walk(readers.Expression)
	members := map[string][]string{}
	for _, it := range items {
		obj, ok := it.ValueExpr.(*hclsyntax.ObjectConsExpr)
		if !ok {
			continue
		}
		var secret, member string
		for _, f := range obj.Items {
			key := tfExpr{f.KeyExpr, readers.file}.raw()
			val := tfExpr{f.ValueExpr, readers.file}.raw()
			switch key {
			case "secret":
				secret = strings.Trim(val, `"`)
			case "member":
				member = val
			}
		}
		members[secret] = append(members[secret], member)
	}
	got := strings.Join(members["credential_private_keys"], ",")
	if got != `google_service_account.this["sync"].member,google_service_account.this["renew"].member` {
		t.Errorf("credential_private_keys readers: %s; want the sync and renew service accounts only", got)
	}
	for _, r := range m.resources("resource", "google_project_iam_member") {
		if role, _ := r.literal("role"); strings.HasPrefix(role, "roles/secretmanager.") {
			t.Errorf("%s: %s on the whole project", r.addr(), role)
		}
	}
}

// `terraform plan` runs offline in CI (.ci/terraform-plan.sh): no data
// source may need Google; archive_file (the source zip) is local.
func TestNoDataSourceNeedsGoogle(t *testing.T) {
	m := loadModule(t)
	for _, b := range m.blocks {
		if b.Type == "data" && len(b.Labels) == 2 && b.Labels[0] != "archive_file" {
			t.Errorf("data %s.%s (%s) is read at plan time and needs Google; derive it from a resource or a variable", b.Labels[0], b.Labels[1], b.file.name)
		}
	}
}
