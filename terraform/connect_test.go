package terraform_test

import (
	"go/ast"
	"go/token"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// Connect's public URL (issue 24): CONNECT_URL is the function's own
// cloudfunctions.net address, or connect_url when a custom domain serves it,
// computed from variables (the function cannot take its own url); the
// redirect URI the operator registers in the OAuth client is CONNECT_URL
// plus the path the code sends Google.
func TestConnectURL(t *testing.T) {
	m := loadModule(t)
	connectURL := func(custom string) string {
		vars := map[string]cty.Value{
			"connect_url": cty.StringVal(custom), "region": cty.StringVal("europe-west1"),
			"project_id": cty.StringVal("acme-prod"), "name_prefix": cty.StringVal("cs"),
		}
		locals := map[string]cty.Value{"fn": eval(t, m.local(t, "fn"), vars, nil, nil)}
		return eval(t, m.local(t, "connect_url"), vars, locals, nil).AsString()
	}
	if got, want := connectURL(""), "https://europe-west1-acme-prod.cloudfunctions.net/cs-connect"; got != want {
		t.Errorf("CONNECT_URL without connect_url = %s, want the function's own address %s", got, want)
	}
	if got := connectURL("https://connect.acme.example"); got != "https://connect.acme.example" {
		t.Errorf("CONNECT_URL with connect_url = %s, want connect_url", got)
	}

	// The function is given it, and the outputs say the same.
	env, _ := m.objectItems(m.local(t, "functions"))["connect"].item("env")
	if got := m.objectItems(env)["CONNECT_URL"]; got.raw() != "local.connect_url" {
		t.Errorf("Connect's CONNECT_URL = %s, want local.connect_url", got.raw())
	}
	outputs := map[string]string{}
	for _, b := range m.blocks {
		if b.Type == "output" {
			v, _ := b.attr("value")
			outputs[b.Labels[0]] = v.raw()
		}
	}
	if outputs["connect_url"] != "local.connect_url" {
		t.Errorf("output connect_url = %s, want local.connect_url", outputs["connect_url"])
	}
	if want := `"${local.connect_url}` + callbackPath(t) + `"`; outputs["oauth_redirect_uri"] != want {
		t.Errorf("output oauth_redirect_uri = %s, want %s (CONNECT_URL and the callback path of functions/connect)", outputs["oauth_redirect_uri"], want)
	}
}

// callbackPath is the "/callback" literal functions/connect builds its
// OAuth redirect URL with (CONNECT_URL + it).
func callbackPath(t *testing.T) string {
	t.Helper()
	found := ""
	for _, f := range parseDir(t, filepath.Join(root, "functions", "connect")) {
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if v, _ := strconv.Unquote(lit.Value); v == "/callback" {
					found = v
				}
			}
			return true
		})
	}
	if found == "" {
		t.Fatal(`functions/connect has no "/callback" literal: where does Google send users back?`)
	}
	return found
}
