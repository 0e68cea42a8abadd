package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// The runbook is the part of terraform/README.md between these markers;
// its ```sh blocks, in order, are the commands an operator copies.
const (
	runbookBegin = "<!-- runbook -->"
	runbookEnd   = "<!-- /runbook -->"
	// editMark ends the one line an operator edits (project, region, ...);
	// the walkthrough puts its own values there.
	editMark = "# EDIT"
)

// readRunbook returns the runbook's commands as one script, in order.
func readRunbook(readme string) (string, error) {
	src, err := os.ReadFile(readme)
	if err != nil {
		return "", err
	}
	_, rest, ok1 := strings.Cut(string(src), runbookBegin)
	section, _, ok2 := strings.Cut(rest, runbookEnd)
	if !ok1 || !ok2 {
		return "", fmt.Errorf("%s: no %s ... %s section", readme, runbookBegin, runbookEnd)
	}
	var script strings.Builder
	in := false
	for line := range strings.Lines(section) {
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && trimmed == "```sh":
			in = true
		case in && trimmed == "```":
			in = false
			script.WriteString("\n")
		case in:
			script.WriteString(strings.TrimPrefix(strings.TrimRight(line, "\n"), "   ") + "\n")
		}
	}
	if in {
		return "", fmt.Errorf("%s: a ```sh block of the runbook is not closed", readme)
	}
	if script.Len() == 0 {
		return "", fmt.Errorf("%s: the runbook has no ```sh block", readme)
	}
	return script.String(), nil
}

// withEdit replaces the runbook's one edited line with line.
func withEdit(script, line string) (string, error) {
	var out []string
	n := 0
	for l := range strings.Lines(script) {
		if strings.HasSuffix(strings.TrimRight(l, "\n"), editMark) {
			n++
			l = line + "\n"
		}
		out = append(out, l)
	}
	if n != 1 {
		return "", fmt.Errorf("the runbook has %d lines ending in %q, want one", n, editMark)
	}
	return strings.Join(out, ""), nil
}

var (
	cdCommand  = regexp.MustCompile(`(^|[;&|(]\s*|\$\(\s*)cd(\s|$)`)
	tfCommand  = regexp.MustCompile(`(^|[;&|(]\s*|\$\(\s*)terraform(\s+\S+)?`)
	goRun      = regexp.MustCompile(`go run (\./\S+)(\s+([a-z-]+))?`)
	calsyncCmd = regexp.MustCompile(`"([a-z-]+)":\s+cmd[A-Z]`)
)

// checkFromRoot reports what stops the runbook from running, copy-pasted,
// in one shell at the repository root: a cd, a terraform call without
// -chdir=terraform, a `go run` of a program or calsync command that does
// not exist.
func checkFromRoot(script, root string) error {
	cli, err := os.ReadFile(root + "/scripts/calsync/main.go")
	if err != nil {
		return err
	}
	commands := map[string]bool{}
	for _, m := range calsyncCmd.FindAllStringSubmatch(string(cli), -1) {
		commands[m[1]] = true
	}
	var errs []error
	for i, line := range strings.Split(script, "\n") {
		code, _, _ := strings.Cut(line, " #")
		if strings.HasPrefix(strings.TrimSpace(code), "#") {
			continue
		}
		at := fmt.Sprintf("runbook line %d %q", i+1, strings.TrimSpace(line))
		if cdCommand.MatchString(code) {
			errs = append(errs, fmt.Errorf("%s: cd (every command runs from the repository root)", at))
		}
		for _, m := range tfCommand.FindAllStringSubmatch(code, -1) {
			if strings.TrimSpace(m[2]) != "-chdir=terraform" {
				errs = append(errs, fmt.Errorf("%s: terraform without -chdir=terraform", at))
			}
		}
		for _, m := range goRun.FindAllStringSubmatch(code, -1) {
			if _, err := os.Stat(root + "/" + m[1] + "/main.go"); err != nil {
				errs = append(errs, fmt.Errorf("%s: go run %s: no such program from the root", at, m[1]))
			}
			if m[1] == "./scripts/calsync" && !commands[m[3]] {
				errs = append(errs, fmt.Errorf("%s: calsync has no command %q", at, m[3]))
			}
		}
	}
	return errors.Join(errs...)
}
