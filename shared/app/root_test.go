package app_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/calsync/calsync/"

// engines are the constructors only the composition root may call (a call,
// or a composite literal of the type), outside tests.
var engines = map[string][]string{
	module + "shared/syncer":      {"New", "Syncer"},
	module + "shared/renewer":     {"New", "Renewer"},
	module + "shared/enroll":      {"New", "Enroller"},
	module + "shared/channels":    {"Manager"},
	module + "shared/credentials": {"NewAccess", "Access", "Revoker"},
	module + "shared/calclient":   {"New", "Factory", "SharedBudget"},
}

// allowed are the places besides shared/app that may, and why.
var allowed = map[string]string{
	// NewAccess builds the Calendar factory, its budget and the Revoker:
	// the Access the root asks for.
	"shared/credentials/access.go calclient.New":          "part of credentials.NewAccess",
	"shared/credentials/access.go calclient.SharedBudget": "part of credentials.NewAccess",
	"shared/credentials/access.go credentials.Access":     "part of credentials.NewAccess",
	"shared/credentials/access.go credentials.Revoker":    "part of credentials.NewAccess",
	// A Syncer given no Revoker makes one that stops no channels (tests).
	"shared/syncer/syncer.go credentials.Revoker": "the syncer's default",
}

// Engines are built in one place: syncer.New, the renewer, the enrollment
// engine, the channel manager, the Calendar access are made by shared/app
// only (outside tests), so the functions, the CLI and the benchmarks run
// the same wiring.
func TestEnginesBuiltByTheRootOnly(t *testing.T) {
	root := moduleRoot(t)
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || rel == "shared/app" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, use := range engineUses(t, rel, src) {
			if _, ok := allowed[rel+" "+use.name]; !ok {
				found = append(found, use.String())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Errorf("engines built outside shared/app (use app.Build, with an option for what differs):\n%s", strings.Join(found, "\n"))
	}
}

// The scan finds a call and a literal, however the import is named, and
// not a type used without being built.
func TestEngineUsesFindsConstruction(t *testing.T) {
	src := `package x
import (
	sy "github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/channels"
)
var _ *enroll.Enroller
func f() {
	_ = sy.New(sy.Options{})
	_ = &enroll.Enroller{}
	_ = channels.Namespace("p", "d")
}`
	var got []string
	for _, u := range engineUses(t, "x.go", []byte(src)) {
		got = append(got, u.name)
	}
	if want := []string{"syncer.New", "enroll.Enroller"}; !slices.Equal(got, want) {
		t.Errorf("found %v, want %v", got, want)
	}
}

type use struct {
	pos  string
	name string // package.Name
}

func (u use) String() string { return u.pos + ": " + u.name }

// engineUses lists the engine constructions in a Go file.
func engineUses(t *testing.T, name string, src []byte) []use {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	imported := map[string]string{} // local name → import path
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		local := p[strings.LastIndex(p, "/")+1:]
		if imp.Name != nil {
			local = imp.Name.Name
		}
		imported[local] = p
	}
	var out []use
	match := func(e ast.Expr) {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok {
			return
		}
		p := imported[x.Name]
		if slices.Contains(engines[p], sel.Sel.Name) {
			out = append(out, use{pos: fset.Position(sel.Pos()).String(), name: fmt.Sprintf("%s.%s", p[strings.LastIndex(p, "/")+1:], sel.Sel.Name)})
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			match(n.Fun)
		case *ast.CompositeLit:
			match(n.Type)
		}
		return true
	})
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
