package main

import (
	"os/exec"
	"strings"
	"testing"
)

const root = "../.."

// The runbook in terraform/README.md, copy-pasted into one shell at the
// repository root, runs: bash parses it, nothing changes directory, every
// terraform call says -chdir=terraform, every `go run` names a program (and
// calsync command) that exists from the root, it has exactly one line to
// edit, and it ends with the smoke check. (firstdeploy itself runs it.)
func TestRunbookRunsFromRoot(t *testing.T) {
	script, err := readRunbook(root + "/terraform/README.md")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkFromRoot(script, root); err != nil {
		t.Error(err)
	}
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v: %s", err, out)
	}
	if _, err := withEdit(script, "export P=p"); err != nil {
		t.Error(err)
	}
	var last string
	for line := range strings.Lines(script) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			last = l
		}
	}
	if !strings.HasPrefix(last, "go run ./scripts/calsync smoke ") {
		t.Errorf("the runbook ends with %q, want the smoke check (go run ./scripts/calsync smoke ...)", last)
	}
	for _, want := range []string{"terraform -chdir=terraform init", "terraform -chdir=terraform apply", "go run ./scripts/calsync watch", "gcloud scheduler jobs run"} {
		if !strings.Contains(script, want) {
			t.Errorf("the runbook lacks %q", want)
		}
	}
}

// What the check refuses: the former runbook's shape among them (cd
// terraform, then go run ./scripts/... from there).
func TestCheckFromRootRefuses(t *testing.T) {
	for script, want := range map[string]string{
		"cd terraform\nterraform -chdir=terraform init": "cd",
		"terraform init": "without -chdir=terraform",
		"X=\"$(terraform output -raw firestore_database)\"":           "without -chdir=terraform",
		"go run ./scripts/calsync frobnicate --calendar x":            `no command "frobnicate"`,
		"go run ./scripts/nosuch":                                     "no such program",
		"key k1 | gcloud x && cd .. && go run ./scripts/calsync list": "cd",
	} {
		err := checkFromRoot(script, root)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %s", script, err, want)
		}
	}
	if err := checkFromRoot("go run ./scripts/calsync smoke --calendar \"$CAL\"  # cd terraform is in a comment", root); err != nil {
		t.Errorf("a comment: %v", err)
	}
	if _, err := withEdit("a # EDIT\nb # EDIT\n", "x"); err == nil {
		t.Error("two lines to edit accepted")
	}
}
