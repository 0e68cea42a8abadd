package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Names the Go buildpack uses: the upload is moved into fnSourceDir and the
// generated main package is the module appModule.
const (
	modulePath  = "github.com/calsync/calsync"
	fnSourceDir = "serverless_function_source_code"
	appModule   = "functions.local/app"
)

// mainGo is the main package Google's Go buildpack generates for a root
// package that registers its functions with functions-framework-go's
// functions package (its "declarative" template): a blank import of the
// function package, then funcframework.Start on $PORT; FUNCTION_TARGET picks
// the function served at "/".
const mainGo = `// Binary main file implements an HTTP server that loads and runs user's code
// on incoming HTTP requests.
package main

import (
	"log"
	"net/http"
	"os"

	_ "` + modulePath + `"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
)

func main() {
	http.HandleFunc("/robots.txt", http.NotFound)
	http.HandleFunc("/favicon.ico", http.NotFound)

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("Function failed to start: %v\n", err)
	}
}
`

// BuildOptions say what to build and where.
type BuildOptions struct {
	// ModuleDir is the calsync module's root (default: the module of the
	// current directory, from `go env GOMOD`).
	ModuleDir string
	// OutDir receives the source tree and the binary (required).
	OutDir string
	// Race builds with the race detector.
	Race bool
	// Progress, if set, receives one line per step.
	Progress io.Writer
}

// Build is a built function binary.
type Build struct {
	Binary    string        // the executable: one binary serves every function (FUNCTION_TARGET)
	SourceDir string        // the upload as the buildpack sees it
	Files     []string      // the upload's files, relative to SourceDir, sorted
	Race      bool          // built with -race
	Duration  time.Duration // wall time of the build
}

// BuildFunctions builds the function binary the way Google's Go buildpack
// does from the deployed zip: the zip's files (SourceFiles) are copied into
// OutDir/serverless_function_source_code, the generated main module
// functions.local/app next to it requires the calsync module through a
// replace directive, and `go build` makes OutDir/function.
func BuildFunctions(ctx context.Context, o BuildOptions) (*Build, error) {
	start := time.Now()
	if o.OutDir == "" {
		return nil, errors.New("build: OutDir is required")
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	if o.ModuleDir == "" {
		dir, err := ModuleRoot(ctx)
		if err != nil {
			return nil, err
		}
		o.ModuleDir = dir
	}
	fmt.Fprintf(progress, "build: listing the function source (go list -deps) in %s\n", o.ModuleDir)
	files, err := SourceFiles(ctx, o.ModuleDir)
	if err != nil {
		return nil, err
	}
	src := filepath.Join(o.OutDir, fnSourceDir)
	for _, f := range files {
		if err := copyFile(filepath.Join(o.ModuleDir, f), filepath.Join(src, f)); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	app := filepath.Join(o.OutDir, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		return nil, err
	}
	goVersion, err := goDirective(filepath.Join(src, "go.mod"))
	if err != nil {
		return nil, err
	}
	mod := fmt.Sprintf("module %s\n\ngo %s\n\nrequire %s v0.0.0\n\nreplace %s => ../%s\n", appModule, goVersion, modulePath, modulePath, fnSourceDir)
	if err := os.WriteFile(filepath.Join(app, "go.mod"), []byte(mod), 0o644); err != nil {
		return nil, err
	}
	// The function's go.sum has every checksum the build needs.
	if err := copyFile(filepath.Join(src, "go.sum"), filepath.Join(app, "go.sum")); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(mainGo), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(o.OutDir, "function")
	args := []string{"build", "-mod=mod", "-o", bin}
	if o.Race {
		args = append(args, "-race")
	}
	args = append(args, ".")
	fmt.Fprintf(progress, "build: go %s (%d source files)\n", strings.Join(args, " "), len(files))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = app
	// -mod=mod completes the generated go.mod's requirements from the
	// module graph (what the buildpack's `go mod tidy` does), without touching
	// the function's own go.mod.
	cmd.Env = append(withoutEnv(os.Environ(), "GOFLAGS"), "GOFLAGS=-buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build: go build of the function binary: %w\n%s", err, out.String())
	}
	b := &Build{Binary: bin, SourceDir: src, Files: files, Race: o.Race, Duration: time.Since(start)}
	fmt.Fprintf(progress, "build: %s built in %s (race %v)\n", bin, b.Duration.Round(time.Millisecond), o.Race)
	return b, nil
}

// ModuleRoot is the directory of the go.mod governing the current directory.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("build: not inside the calsync module (run from its checkout, or set ModuleDir)")
	}
	return filepath.Dir(gomod), nil
}

// SourceFiles lists the deployed zip's files, relative to the module root:
// go.mod, go.sum, calsync.go and the non-test .go files of every package of
// the module that `go list -deps .` names (terraform/functions.tf's include
// list; terraform/source_test.go checks that the two agree).
func SourceFiles(ctx context.Context, moduleDir string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json=ImportPath,Dir,Module", ".")
	cmd.Dir = moduleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("build: go list -deps: %w\n%s", err, stderr.String())
	}
	files := []string{"go.mod", "go.sum", "calsync.go"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Dir        string
			Module     *struct{ Path string }
		}
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("build: go list output: %w", err)
		}
		if p.Module == nil || p.Module.Path != modulePath || p.ImportPath == modulePath {
			continue
		}
		rel, err := filepath.Rel(moduleDir, p.Dir)
		if err != nil {
			return nil, err
		}
		all, err := filepath.Glob(filepath.Join(p.Dir, "*.go"))
		if err != nil {
			return nil, err
		}
		for _, f := range all {
			if name := filepath.Base(f); !strings.HasSuffix(name, "_test.go") {
				files = append(files, filepath.ToSlash(filepath.Join(rel, name)))
			}
		}
	}
	sort.Strings(files)
	return files, nil
}

func goDirective(gomod string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "go" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("build: no go directive in %s", gomod)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

func withoutEnv(env []string, keys ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
