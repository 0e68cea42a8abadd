package terraform_test

import (
	"bufio"
	"go/ast"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/enroll"
)

const scopePrefix = "https://www.googleapis.com/auth/"

// The code is the one source of the scopes: per API, what every token
// calsync asks for carries. Google checks delegated scopes exactly, so a doc
// or output naming another one sends an admin to authorise the wrong thing.
func codeScopes() map[string][]string {
	return map[string][]string{"calendar": calclient.Scopes, "directory": enroll.DirectoryScopes}
}

// knownScopes lists every scope of the Calendar and Directory APIs (the
// generated clients' *Scope constants, from the discovery documents): a doc
// naming one of these that calsync does not ask for is wrong.
func knownScopes(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, pkg := range []string{"google.golang.org/api/calendar/v3", "google.golang.org/api/admin/directory/v1"} {
		cmd := exec.Command("go", "list", "-f", "{{.Dir}}", pkg)
		cmd.Dir = root
		dir, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, f := range parseDir(t, strings.TrimSpace(string(dir))) {
			ast.Inspect(f, func(n ast.Node) bool {
				vs, ok := n.(*ast.ValueSpec)
				if !ok || len(vs.Names) != 1 || len(vs.Values) != 1 || !strings.HasSuffix(vs.Names[0].Name, "Scope") {
					return true
				}
				if lit, ok := vs.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, scopePrefix) {
						out[s] = true
					}
				}
				return true
			})
		}
	}
	if !out[calclient.Scope] || !out[scopePrefix+"calendar.readonly"] || !out[enroll.DirectoryScopes[0]] {
		t.Fatalf("scope constants not found in the generated clients (%d found)", len(out))
	}
	return out
}

// A scope in prose: its URL, or its short name (calendar.events.readonly).
var scopeMention = regexp.MustCompile(`(?:https://www\.googleapis\.com/auth/[a-z0-9._]*[a-z0-9]|\b(?:calendar|admin\.directory)(?:\.[a-z0-9_]+)+)`)

// docFiles: every README, every .tf file and the operator CLI's sources
// (its help and comments), outside the test wing (the Calendar emulator
// names every scope of every method, on purpose).
func docFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == filepath.Join("shared", "testing") || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(rel, ".md"), strings.HasSuffix(rel, ".tf"), strings.HasSuffix(rel, ".tftpl"),
			strings.HasPrefix(rel, filepath.Join("scripts", "calsync")+string(filepath.Separator)) && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go"):
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every scope any doc, comment or output names is one the code asks for.
func TestDocsNameTheCodeScopes(t *testing.T) {
	known := knownScopes(t)
	ours := map[string]bool{}
	for _, list := range codeScopes() {
		for _, s := range list {
			ours[s] = true
		}
	}
	files := docFiles(t)
	if len(files) < 10 {
		t.Fatalf("only %d doc files found", len(files))
	}
	mentions := 0
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			for _, m := range scopeMention.FindAllString(sc.Text(), -1) {
				url := m
				if !strings.HasPrefix(m, scopePrefix) {
					url = scopePrefix + m
					if !known[url] {
						continue // a method or package name, not a scope
					}
				}
				mentions++
				if !ours[url] {
					t.Errorf("%s:%d names the scope %s; calsync asks for %v (shared/calclient Scopes, shared/enroll DirectoryScopes)", path, n, m, sortedKeys(ours))
				}
			}
		}
		f.Close()
	}
	if mentions == 0 {
		t.Fatal("no scope named anywhere: the scan is broken")
	}
}

// outputs.tf renders the code's scopes, per API, for the Admin console.
func TestDelegationScopesOutput(t *testing.T) {
	m := loadModule(t)
	e, ok := m.locals["delegation_scopes"]
	if !ok {
		t.Fatal("outputs.tf: no local.delegation_scopes")
	}
	v, diags := e.Value(nil)
	if diags.HasErrors() || !v.CanIterateElements() {
		t.Fatalf("%s: local.delegation_scopes must be a literal object of lists", e.pos())
	}
	got := map[string][]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, list := it.Element()
		for li := list.ElementIterator(); li.Next(); {
			_, s := li.Element()
			got[k.AsString()] = append(got[k.AsString()], s.AsString())
		}
	}
	for api, want := range codeScopes() {
		if !slices.Equal(got[api], want) {
			t.Errorf("%s: local.delegation_scopes.%s = %q, the code asks for %q", e.pos(), api, got[api], want)
		}
	}
	if len(got) != len(codeScopes()) {
		t.Errorf("%s: local.delegation_scopes has APIs %v, want calendar and directory", e.pos(), sortedKeys(got))
	}
	var out tfBlock
	for _, b := range m.blocks {
		if b.Type == "output" && len(b.Labels) == 1 && b.Labels[0] == "delegation_scopes" {
			out = b
		}
	}
	if out.Block == nil {
		t.Fatal("outputs.tf: no output delegation_scopes")
	}
	if v, ok := out.attr("value"); !ok || !strings.Contains(v.raw(), "local.delegation_scopes") {
		t.Errorf("output delegation_scopes must be made from local.delegation_scopes")
	} else if keys, err := m.objectKeys(v); err != nil || !slices.Equal(keys, []string{"calendar", "directory"}) {
		// No list of both APIs' scopes: it would invite authorising one
		// client id for both.
		t.Errorf("output delegation_scopes has keys %v (%v), want calendar and directory only", keys, err)
	}
	// Each API's delegation account is an output of its own, with the
	// client id the Admin console takes.
	for _, api := range []string{"calendar", "directory"} {
		found := false
		for _, b := range m.blocks {
			if b.Type == "output" && len(b.Labels) == 1 && b.Labels[0] == api+"_service_account" {
				found = true
				if v, ok := b.attr("value"); !ok || !strings.Contains(v.raw(), `google_service_account.this["`+api+`"].unique_id`) {
					t.Errorf("output %s_service_account must give the %s account's client_id (unique_id)", api, api)
				}
			}
		}
		if !found {
			t.Errorf("outputs.tf: no output %s_service_account", api)
		}
	}
}

// The delegation steps in terraform/README.md list exactly the code's
// scopes, per API, comma-separated as the Admin console takes them, and
// say where in the Admin console they go.
func TestDelegationStepsListTheScopes(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- delegation-scopes -->", "<!-- /delegation-scopes -->"
	_, rest, ok1 := strings.Cut(string(src), begin)
	section, _, ok2 := strings.Cut(rest, end)
	if !ok1 || !ok2 {
		t.Fatalf("terraform/README.md: no %s ... %s section", begin, end)
	}
	for _, want := range []string{"Security > Access and data control > API controls > Domain-wide delegation", "terraform -chdir=terraform output -json delegation_scopes", "calendar_service_account"} {
		if !strings.Contains(strings.Join(strings.Fields(section), " "), want) {
			t.Errorf("delegation steps do not say %q", want)
		}
	}
	// Each API's line names its own delegation account's client id and
	// exactly that API's scopes: one client id is never authorised for both
	// (Google checks the signing client id's scopes; iam.tf lets only the
	// functions needing an API sign as its account).
	for api, label := range map[string]string{"calendar": "Calendar API", "directory": "Directory API"} {
		want := "`" + strings.Join(codeScopes()[api], ",") + "`"
		account := api + "_service_account"
		found := false
		for line := range strings.Lines(section) {
			if strings.Contains(line, "**"+label+"**") {
				found = true
				if !strings.Contains(line, want) || !strings.Contains(line, "client id of `"+account+"`") {
					t.Errorf("delegation steps, %s line %q: want the client id of `%s` with exactly %s", label, strings.TrimSpace(line), account, want)
				}
				for other, scopes := range codeScopes() {
					for _, sc := range scopes {
						if other != api && strings.Contains(line, sc) {
							t.Errorf("delegation steps, %s line lists %s, a scope of the %s API: each client id gets its own API's scopes only", label, sc, other)
						}
					}
				}
			}
		}
		if !found {
			t.Errorf("delegation steps: no **%s** line", label)
		}
	}
}
