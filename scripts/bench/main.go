// Command bench runs every benchmark of the project, side by side with its
// baselines, and writes a Markdown report with SVG charts of the burst and
// full-sync figures (see README.md).
//
//	go run ./scripts/bench [--out .devstack/bench] [--bench .] [--benchtime 1x]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

type options struct {
	out       string
	bench     string
	benchtime string
	pkgs      string
	from      string
	timeout   time.Duration
	commit    string
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", ".devstack/bench", "directory for report.md, the SVG charts and raw.txt (the go test output)")
	fs.StringVar(&o.bench, "bench", ".", "go test -bench pattern")
	fs.StringVar(&o.benchtime, "benchtime", "1x", "go test -benchtime (the benchmarks are whole-system runs: 1x is minutes already)")
	fs.StringVar(&o.pkgs, "pkgs", "", "comma-separated packages (default: every package with a Benchmark function)")
	fs.StringVar(&o.from, "from", "", "build the report from saved go test -bench output instead of running")
	fs.DurationVar(&o.timeout, "timeout", 40*time.Minute, "go test -timeout per package")
	fs.StringVar(&o.commit, "commit", "", "the code benchmarked, for the header (default: git log -1 here)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	var raw bytes.Buffer
	var runs []PkgRun
	if o.from != "" {
		b, err := os.ReadFile(o.from)
		if err != nil {
			return err
		}
		raw.Write(b)
	} else {
		pkgs := splitList(o.pkgs)
		if len(pkgs) == 0 {
			var err error
			if pkgs, err = benchPackages(ctx); err != nil {
				return err
			}
		}
		for _, p := range pkgs {
			fmt.Fprintf(stdout, "bench: %s\n", p)
			start := time.Now()
			cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", o.bench, "-benchmem",
				"-benchtime", o.benchtime, "-timeout", o.timeout.String(), p)
			cmd.Stdout = io.MultiWriter(&raw, stdout)
			cmd.Stderr = io.MultiWriter(&raw, stderr)
			err := cmd.Run()
			r := PkgRun{Pkg: p, Duration: time.Since(start)}
			if err != nil {
				r.Err = err.Error()
			}
			runs = append(runs, r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if err := os.WriteFile(filepath.Join(o.out, "raw.txt"), raw.Bytes(), 0o644); err != nil {
		return err
	}
	results, problems := Parse(bytes.NewReader(raw.Bytes()))
	if len(runs) == 0 {
		runs = pkgRuns(raw.String())
	}
	sortResults(results)
	charts := map[string]string{}
	for _, r := range results {
		if !chartWorthy.MatchString(r.Name) {
			continue
		}
		t := SideBySide(r)
		if len(t.Variants) == 0 {
			continue
		}
		name := "chart-" + fileSafe(r.Name) + ".svg"
		if err := os.WriteFile(filepath.Join(o.out, name), []byte(Chart(r.Name+" ("+r.Pkg+")", t)), 0o644); err != nil {
			return err
		}
		charts[r.Pkg+"."+r.Name] = name
	}
	var rep bytes.Buffer
	m := machine(ctx)
	if o.commit != "" {
		m.Commit = o.commit
	}
	Report(&rep, m, runs, results, problems, charts, strings.Join(append([]string{"bench"}, args...), " "))
	path := filepath.Join(o.out, "report.md")
	if err := os.WriteFile(path, rep.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: %d results, report %s\n", len(results), path)
	for _, r := range runs {
		if r.Err != "" {
			return fmt.Errorf("%s: %s (report written)", r.Pkg, r.Err)
		}
	}
	return nil
}

var benchFunc = regexp.MustCompile(`(?m)^func Benchmark\w*\(`)

// benchPackages lists the module's packages whose tests declare a benchmark.
func benchPackages(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .TestGoFiles \",\"}},{{join .XTestGoFiles \",\"}}", "./...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		for _, file := range splitList(f[2]) {
			b, err := os.ReadFile(filepath.Join(f[1], file))
			if err == nil && benchFunc.Match(b) {
				pkgs = append(pkgs, f[0])
				break
			}
		}
	}
	return pkgs, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

var pkgDone = regexp.MustCompile(`(?m)^(ok|FAIL)\s+(\S+)\s+([0-9.]+s)`)

// pkgRuns recovers each package's time and status from saved output.
func pkgRuns(out string) []PkgRun {
	var runs []PkgRun
	for _, m := range pkgDone.FindAllStringSubmatch(out, -1) {
		d, _ := time.ParseDuration(m[3])
		r := PkgRun{Pkg: m[2], Duration: d}
		if m[1] == "FAIL" {
			r.Err = "FAIL"
		}
		runs = append(runs, r)
	}
	return runs
}
