package terraform_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// A rule says which Google API a package (or resource type, or endpoint)
// needs enabled; service "" means none, for the reason given.
type apiRule struct{ prefix, service, why string }

// clientRules: every Google client package the deployed code and the
// operator CLI are built from. A new one without a rule fails the test, so
// nobody adds a client without deciding what it needs in apis.tf.
var clientRules = []apiRule{
	{"google.golang.org/api/calendar", "calendar-json.googleapis.com", "events, calendarList, channels"},
	{"google.golang.org/api/admin/directory", "admin.googleapis.com", "users and rooms of an enrolled domain"},
	{"google.golang.org/api/iamcredentials", "iamcredentials.googleapis.com", "signJwt for domain-wide delegation"},
	{"cloud.google.com/go/firestore", "firestore.googleapis.com", "the mirror"},
	{"cloud.google.com/go/pubsub", "pubsub.googleapis.com", "notifications, changes, control"},
	{"cloud.google.com/go/secretmanager", "secretmanager.googleapis.com", ""},
	{"cloud.google.com/go/logging", "logging.googleapis.com", ""},
	{"cloud.google.com/go/monitoring", "monitoring.googleapis.com", ""},
	{"cloud.google.com/go/storage", "storage.googleapis.com", ""},
	// Plumbing shared by the clients above: no API of its own.
	{"google.golang.org/api/option", "", "client options"},
	{"google.golang.org/api/internal", "", "client internals"},
	{"google.golang.org/api/googleapi", "", "error and media types"},
	{"google.golang.org/api/iterator", "", "paging helper"},
	{"google.golang.org/api/transport", "", "HTTP and gRPC transports"},
	{"google.golang.org/api/support", "", "publish bundler"},
	{"cloud.google.com/go/internal", "", "client internals"},
	{"cloud.google.com/go/auth", "", "credentials: on Cloud Run the metadata server, locally the ADC file; no project API"},
	{"cloud.google.com/go/compute/metadata", "", "the metadata server, not an API"},
	{"cloud.google.com/go/longrunning/autogen/longrunningpb", "", "message types only"},
	{"cloud.google.com/go/iam/apiv1/iampb", "", "message types only"},
}

// endpointRules: Google addresses written in the deployed code itself
// (https://HOST/PATH), by host and first path segment.
var endpointRules = []apiRule{
	{"oauth2.googleapis.com", "", "the OAuth token and revoke endpoints are not a project API"},
	{"www.googleapis.com/auth", "", "scope names, not addresses"},
	{"www.googleapis.com/calendar", "calendar-json.googleapis.com", ""},
}

// resourceRules: the API each Terraform resource type is managed through
// (the Cloud Functions gen2 row: Google's "enable these APIs" list for it).
var resourceRules = []struct {
	prefix   string
	services []string
}{
	{"google_cloudfunctions2_", []string{"cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com", "eventarc.googleapis.com", "logging.googleapis.com"}},
	{"google_cloud_run_", []string{"run.googleapis.com"}},
	{"google_cloud_scheduler_", []string{"cloudscheduler.googleapis.com"}},
	{"google_firebaserules_", []string{"firebaserules.googleapis.com"}},
	{"google_firestore_", []string{"firestore.googleapis.com"}},
	{"google_logging_", []string{"logging.googleapis.com"}},
	{"google_monitoring_", []string{"monitoring.googleapis.com"}},
	{"google_project_iam_custom_role", []string{"iam.googleapis.com"}},
	{"google_project_iam_", []string{"cloudresourcemanager.googleapis.com"}},
	{"google_artifact_registry_", []string{"artifactregistry.googleapis.com"}},
	{"google_project_service", []string{"serviceusage.googleapis.com"}},
	{"google_pubsub_", []string{"pubsub.googleapis.com"}},
	{"google_secret_manager_", []string{"secretmanager.googleapis.com"}},
	{"google_service_account", []string{"iam.googleapis.com"}},
	{"google_storage_", []string{"storage.googleapis.com"}},
	{"archive_file", nil}, // local zip, hashicorp/archive
}

func matchRule(rules []apiRule, s string) (apiRule, bool) {
	for _, r := range rules {
		if s == r.prefix || strings.HasPrefix(s, r.prefix+"/") {
			return r, true
		}
	}
	return apiRule{}, false
}

// enabledServices reads local.services of apis.tf.
func enabledServices(t *testing.T, m *module) map[string]bool {
	t.Helper()
	e, ok := m.locals["services"]
	if !ok {
		t.Fatal("apis.tf: no local.services")
	}
	expr := e.Expression
	if call, ok := expr.(*hclsyntax.FunctionCallExpr); ok && call.Name == "toset" && len(call.Args) == 1 {
		expr = call.Args[0]
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() || !v.CanIterateElements() {
		t.Fatalf("%s: local.services must be a literal list of strings (in toset())", e.pos())
	}
	out := map[string]bool{}
	for it := v.ElementIterator(); it.Next(); {
		_, s := it.Element()
		out[s.AsString()] = true
	}
	return out
}

// builtFrom lists every package (any module) the given packages are built from.
func builtFrom(t *testing.T, pkgs ...string) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json"}, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var all []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p)
	}
	return all
}

var googleURL = regexp.MustCompile(`https://([a-z0-9.-]+\.googleapis\.com)(/[A-Za-z0-9_-]+)?`)

// endpoints finds the Google addresses in string literals of a package's
// non-test files.
func endpoints(t *testing.T, p listedPackage) map[string]string {
	t.Helper()
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range append(append([]string{}, p.GoFiles...), p.CgoFiles...) {
		path := filepath.Join(p.Dir, name)
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, m := range googleURL.FindAllStringSubmatch(s, -1) {
				out[m[1]+m[2]] = fset.Position(lit.Pos()).String()
			}
			return true
		})
	}
	return out
}

// Every Google API the deployed functions and the operator CLI call, and
// every API Terraform manages resources through, is enabled by apis.tf.
// In a new project a missing one fails every call with 403 SERVICE_DISABLED
// (iamcredentials.googleapis.com was missing: every delegated call failed).
func TestAPIsEnabled(t *testing.T) {
	m := loadModule(t)
	enabled := enabledServices(t, m)
	need := func(service, why string) {
		t.Helper()
		if service != "" && !enabled[service] {
			t.Errorf("apis.tf does not enable %s, needed by %s", service, why)
		}
	}

	seen := map[string]bool{}
	for _, p := range builtFrom(t, ".", "./scripts/calsync") {
		path := p.ImportPath
		if strings.HasPrefix(path, "google.golang.org/api/") || strings.HasPrefix(path, "cloud.google.com/go/") {
			r, ok := matchRule(clientRules, path)
			if !ok {
				t.Errorf("client package %s has no rule in clientRules (apis_test.go): say which API it calls and enable that in apis.tf", path)
				continue
			}
			need(r.service, path)
		}
		if p.Module == nil || p.Module.Path != modulePath {
			continue
		}
		for ep, pos := range endpoints(t, p) {
			seen[ep] = true
			r, ok := matchRule(endpointRules, ep)
			if !ok {
				host, _, _ := strings.Cut(ep, "/")
				r = apiRule{service: host}
			}
			need(r.service, "the address https://"+ep+" at "+pos)
		}
	}

	if !seen["oauth2.googleapis.com/token"] {
		t.Error("the address scan did not find https://oauth2.googleapis.com/token (shared/calclient): it looks in the wrong place")
	}

	for _, b := range m.blocks {
		if (b.Type != "resource" && b.Type != "data") || len(b.Labels) != 2 {
			continue
		}
		typ := b.Labels[0]
		found := false
		for _, r := range resourceRules {
			if strings.HasPrefix(typ, r.prefix) {
				found = true
				for _, s := range r.services {
					need(s, b.file.name+": "+b.Type+" "+typ)
				}
				break
			}
		}
		if !found {
			t.Errorf("%s: %s %s has no rule in resourceRules (apis_test.go): say which API manages it", b.file.name, b.Type, typ)
		}
	}
}
