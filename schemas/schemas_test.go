package schemas

import (
	"io/fs"
	"os/exec"
	"strings"
	"testing"
)

const modulePath = "github.com/calsync/calsync"

// The deployed build is the function zip of Go files only (terraform/
// functions.tf): a package it builds that imported this one would find no
// .json to embed and fail to build in the cloud, though every local build
// passes. So neither the root package nor anything under functions/ may
// depend on it.
func TestFunctionsDoNotImportSchemas(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", modulePath, modulePath+"/functions/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), deps)
	}
	for _, p := range deps {
		if p == modulePath+"/schemas" {
			t.Fatalf("the deployed build depends on %s/schemas: the function zip holds no .json, so it cannot build", modulePath)
		}
	}
}

// Every embedded document compiles, with its $id where Compile puts it.
func TestSchemasCompile(t *testing.T) {
	names, err := fs.Glob(FS, "*.json")
	if err != nil || len(names) < 2 {
		t.Fatalf("embedded schemas %v: %v", names, err)
	}
	for _, name := range names {
		if _, err := Compile(name); err != nil {
			t.Error(err)
		}
	}
	if _, err := Compile("nope.json"); err == nil {
		t.Error("compiled a schema that is not there")
	}
}
