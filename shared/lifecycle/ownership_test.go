package lifecycle

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// statusWrites are the store methods that change a calendar's, an
// identity's, a domain's or a credential's status (or the 404 streak and
// poll mode that lead to one). The names are unique in the module.
var statusWrites = map[string]bool{
	"SetStatus": true, "RecordNotFound": true, "ClearNotFound": true, "ProbeResult": true, "SetPollMode": true,
	"RevokeIdentity": true, "DenyIdentity": true, "SetIdentityStatus": true, "SetDomainStatus": true, "RevokeCredential": true,
	"DenyDomain": true, "ClearDomainStatus": true,
	// Enrollment: registering, enrolling again, applying a listing, a
	// reader's hand-over (statuses from this package's table).
	"RegisterCalendar": true, "PutIdentity": true, "ApplyListing": true, "ApplyCustomerRooms": true, "ReplanCalendar": true,
}

// Only shared/lifecycle decides transitions: outside shared/store (which
// defines them) and tests, nobody else calls the status-changing store
// methods.
func TestOnlyLifecycleWritesStatus(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	files, here := 0, 0
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "shared/store/") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !statusWrites[sel.Sel.Name] {
				return true
			}
			if strings.HasPrefix(rel, "shared/lifecycle/") {
				here++
				return true
			}
			t.Errorf("%s: %s is called outside shared/lifecycle; report the answer to lifecycle.Owner instead", fset.Position(call.Pos()), sel.Sel.Name)
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The scan saw the tree and recognises the calls (lifecycle's own).
	if files < 100 || here < len(statusWrites)-1 {
		t.Fatalf("scan saw %d files and %d calls in shared/lifecycle: not the tree it should check", files, here)
	}
}
