package terraform_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/calsync/calsync"

// listedPackage is what `go list -json` says of one package.
type listedPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	EmbedFiles []string
	Imports    []string
	Module     *struct{ Path string }
}

// deployedPackages lists the module's packages the root package is built
// from (`go list -deps .`), as paths relative to the module root.
func deployedPackages(t *testing.T) map[string]listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	pkgs := map[string]listedPackage{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != modulePath || p.ImportPath == modulePath {
			continue
		}
		pkgs[strings.TrimPrefix(p.ImportPath, modulePath+"/")] = p
	}
	return pkgs
}

// The function zip is made from an include list (local.source_packages):
// it must name exactly the packages the root package is built from, none of
// them may be (or import) the test wing shared/testing, and each package's
// files in the zip (its *.go files but tests) must be exactly what the build
// compiles.
func TestSourceZipIncludeList(t *testing.T) {
	m := loadModule(t)
	pkgsExpr, ok := m.locals["source_packages"]
	if !ok {
		t.Fatal("functions.tf: no local.source_packages (the zip's include list)")
	}
	listed, ok := literalStrings(pkgsExpr)
	if !ok {
		t.Fatalf("%s: local.source_packages must be a literal list of strings", pkgsExpr.pos())
	}
	deployed := deployedPackages(t)
	var want []string
	for p := range deployed {
		want = append(want, p)
	}
	slices.Sort(want)
	if !slices.Equal(slices.Sorted(slices.Values(listed)), want) {
		t.Errorf("local.source_packages = %v\nthe root package is built from %v", listed, want)
	}
	for p, pkg := range deployed {
		if strings.HasPrefix(p, "shared/testing") {
			t.Errorf("deployed package %s is in the test wing", p)
		}
		for _, imp := range pkg.Imports {
			if strings.HasPrefix(imp, modulePath+"/shared/testing") {
				t.Errorf("deployed package %s imports %s", p, imp)
			}
		}
		if len(pkg.EmbedFiles) > 0 {
			t.Errorf("%s embeds %v: the include list only ships *.go files", p, pkg.EmbedFiles)
		}
		compiled := append(slices.Clone(pkg.GoFiles), pkg.CgoFiles...)
		slices.Sort(compiled)
		all, _ := filepath.Glob(filepath.Join(pkg.Dir, "*.go"))
		var shipped []string
		for _, f := range all {
			if name := filepath.Base(f); !strings.HasSuffix(name, "_test.go") {
				shipped = append(shipped, name)
			}
		}
		if !slices.Equal(shipped, compiled) {
			t.Errorf("%s: the zip would hold %v, the build compiles %v", p, shipped, compiled)
		}
	}

	// The expressions that turn the list into files and the files into the zip.
	files, ok := m.locals["source_files"]
	if !ok {
		t.Fatal("functions.tf: no local.source_files")
	}
	raw := files.raw()
	for _, want := range []string{`{go.mod,go.sum,calsync.go}`, "local.source_packages", `fileset(`, `"${p}/*.go"`, `!endswith(f, "_test.go")`} {
		if !strings.Contains(raw, want) {
			t.Errorf("%s: local.source_files lacks %s", files.pos(), want)
		}
	}
	rootFiles, _ := filepath.Glob(filepath.Join(root, "*.go"))
	for _, f := range rootFiles {
		if name := filepath.Base(f); !strings.HasSuffix(name, "_test.go") && name != "calsync.go" {
			t.Errorf("root package file %s is not in local.source_files", name)
		}
	}
	archives := m.resources("data", "archive_file")
	if len(archives) != 1 {
		t.Fatalf("want one data.archive_file, got %d", len(archives))
	}
	a := archives[0]
	if _, ok := a.attr("source_dir"); ok {
		t.Errorf("data.archive_file.%s: source_dir zips everything; use the include list", a.Labels[1])
	}
	var forEach string
	for _, d := range a.children("dynamic") {
		if len(d.Labels) == 1 && d.Labels[0] == "source" {
			if fe, ok := d.attr("for_each"); ok {
				forEach = fe.raw()
			}
		}
	}
	if forEach != "local.source_files" {
		t.Errorf("data.archive_file.%s: want dynamic \"source\" with for_each = local.source_files, got %q", a.Labels[1], forEach)
	}
	// Besides those files, only the manifest of them.
	var static []string
	for _, src := range a.children("source") {
		name, _ := src.literal("filename")
		static = append(static, name)
	}
	if !slices.Equal(static, []string{"SOURCE_FILES.txt"}) {
		t.Errorf("data.archive_file.%s: static sources %v, want only the manifest SOURCE_FILES.txt", a.Labels[1], static)
	}
}
