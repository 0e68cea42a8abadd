package calsync

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Package READMEs say what a package is for, where a change belongs and
// what each file does. File lists drift when files are added, renamed or
// removed; this test keeps them honest without an emulator.

const (
	whereHeading = "## Where a change belongs"
	filesHeading = "## Files"
)

// notPackageREADMEs are directories whose README.md is not a package README:
// the root's is the project's README (calsync.go only registers entry points),
// and terraform's documents the infrastructure its test files check.
var notPackageREADMEs = map[string]bool{".": true, "terraform": true}

// goFileName is a Go file named in backticks, possibly with a relative path or
// a glob ("`*_test.go`").
var goFileName = regexp.MustCompile("`([^`\\s]*\\.go)`")

func TestPackageREADMEs(t *testing.T) {
	dirs, err := goDirs(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 10 {
		t.Fatalf("found only %d directories with Go files: is the test running at the repository root?", len(dirs))
	}
	for _, dir := range dirs {
		if notPackageREADMEs[dir] {
			continue
		}
		for _, problem := range readmeProblems(dir) {
			t.Error(problem)
		}
	}
}

// goDirs lists the directories below root holding .go files, skipping those
// the go tool ignores (hidden, "_"-prefixed, testdata).
func goDirs(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			seen[filepath.Dir(path)] = true
		}
		return nil
	})
	dirs := make([]string, 0, len(seen))
	for dir := range seen {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	return dirs, err
}

// readmeProblems returns what is wrong with dir's README.md, one message each,
// naming the directory and the file.
func readmeProblems(dir string) []string {
	readme := filepath.Join(dir, "README.md")
	text, err := os.ReadFile(readme)
	if err != nil {
		return []string{dir + ": no README.md saying what the package is for, where a change belongs and what its files do"}
	}
	var problems []string
	where, files := headingLine(text, whereHeading), headingLine(text, filesHeading)
	if where < 0 {
		problems = append(problems, readme+": no \""+whereHeading+"\" heading")
	}
	if files < 0 {
		return append(problems, readme+": no \""+filesHeading+"\" heading")
	}
	if where > files {
		problems = append(problems, readme+": \""+whereHeading+"\" should come before \""+filesHeading+"\"")
	}
	section := sectionBody(text, filesHeading)
	named := map[string]bool{}
	for _, m := range goFileName.FindAllStringSubmatch(section, -1) {
		named[m[1]] = true
	}
	sources, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, path := range sources {
		name := filepath.Base(path)
		if !strings.HasSuffix(name, "_test.go") && !named[name] {
			problems = append(problems, readme+": `"+name+"` is not named in \""+filesHeading+"\"")
		}
	}
	for name := range named {
		if matches, _ := filepath.Glob(filepath.Join(dir, name)); len(matches) == 0 {
			problems = append(problems, readme+": \""+filesHeading+"\" names `"+name+"`, which is not in "+dir)
		}
	}
	sort.Strings(problems)
	return problems
}

// headingLine is the line number of heading in text, or -1.
func headingLine(text []byte, heading string) int {
	for n, line := range strings.Split(string(text), "\n") {
		if strings.TrimSpace(line) == heading {
			return n
		}
	}
	return -1
}

// sectionBody is the text under heading up to the next heading of the same
// level ("## ") or the end.
func sectionBody(text []byte, heading string) string {
	lines := strings.Split(string(text), "\n")
	start := headingLine(text, heading) + 1
	end := start
	for end < len(lines) && !strings.HasPrefix(lines[end], "## ") {
		end++
	}
	return strings.Join(lines[start:end], "\n")
}

// TestReadmeProblemsFindsDrift shows the check catches a file missing from
// the list and a listed file that no longer exists.
func TestReadmeProblemsFindsDrift(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"kept.go":      "package p\n",
		"added.go":     "package p\n",
		"kept_test.go": "package p\n",
		"README.md": "# p\n\nWhat p is for.\n\n" + whereHeading + "\n\n- to change `gone.go` here, see `other/elsewhere.go`\n\n" +
			filesHeading + "\n\n- `kept.go`: kept.\n- `removed.go`: removed since.\n\n## Design\n\n`design.go` is prose, not the list.\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	readme := filepath.Join(dir, "README.md")
	want := []string{
		readme + ": \"## Files\" names `removed.go`, which is not in " + dir,
		readme + ": `added.go` is not named in \"## Files\"",
	}
	if got := readmeProblems(dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("readmeProblems:\n got %q\nwant %q", got, want)
	}
}
