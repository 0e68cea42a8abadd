// Command firstdeploy runs the Terraform runbook (terraform/README.md,
// "Deploying from zero") as an operator would on a first deployment, but
// against the local emulators: in a fresh clone of this checkout, its
// commands in order, in one bash shell at the clone's root. Terraform is the
// real one with the provider mirror (init; each apply is planned, not
// applied); the deployment it would make is the local stack
// (scripts/devstack/stack: the function processes, Pub/Sub push, the
// Calendar emulator); gcloud's two calls map onto it. It ends with the
// runbook's `calsync smoke`: a change on the feed, or a failure.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/calsync/calsync/scripts/devstack/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "firstdeploy: FAIL:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("firstdeploy", flag.ContinueOnError)
	keep := fs.Bool("keep", false, "keep the clone and the logs")
	timeout := fs.Duration("timeout", 10*time.Minute, "the whole walkthrough's limit")
	mirror := fs.String("terraform-mirror", "", "the provider mirror (default: TERRAFORM_MIRROR, else ../shared/terraform-mirror beside the checkout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run it from the repository root: go run ./scripts/firstdeploy")
	}
	if *mirror == "" {
		*mirror = os.Getenv("TERRAFORM_MIRROR")
	}
	if *mirror == "" {
		*mirror = filepath.Join(root, "..", "shared", "terraform-mirror")
	}
	if *mirror, err = filepath.Abs(*mirror); err != nil {
		return err
	}
	realTF, err := exec.LookPath("terraform")
	if err != nil {
		return errors.New("no terraform on PATH (.ci/terraform-checks.sh builds it)")
	}

	work, err := os.MkdirTemp("", "calsync-firstdeploy-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(stderr, "firstdeploy: working in %s (kept)\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	clone := filepath.Join(work, "calsync")
	fmt.Fprintf(stderr, "firstdeploy: a fresh clone of %s (its last commit)\n", root)
	if out, err := exec.CommandContext(ctx, "git", "clone", "--quiet", root, clone).CombinedOutput(); err != nil {
		return fmt.Errorf("git clone: %v: %s", err, out)
	}
	script, err := readRunbook(filepath.Join(clone, "terraform", "README.md"))
	if err != nil {
		return err
	}
	if err := checkFromRoot(script, clone); err != nil {
		return err
	}

	fmt.Fprintln(stderr, "firstdeploy: starting the local stack (the deployment Terraform would make)")
	st, err := stack.Start(ctx, stack.Options{ModuleDir: clone, SyncWorkers: 1, RenewInterval: -1, Progress: stderr, KeepRunDir: *keep})
	if err != nil {
		return fmt.Errorf("the local stack: %w", err)
	}
	defer st.Stop()

	const calendarID = "default@calsync.test" // the emulator's default user's
	script, err = withEdit(script, fmt.Sprintf("export P=%s R=europe-west1 N=calsync CAL=%s   # firstdeploy's values", st.ProjectID, calendarID))
	if err != nil {
		return err
	}
	env, err := sandbox(work, st, realTF, *mirror)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "firstdeploy: running the runbook from the clone's root")
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-xc", script)
	cmd.Dir, cmd.Env = clone, env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = io.MultiWriter(stdout, &out), stderr
	runErr := cmd.Run()
	switch {
	case runErr != nil:
		fmt.Fprint(stderr, st.LogTail(20))
		return fmt.Errorf("the runbook failed: %w", runErr)
	case !strings.Contains(out.String(), "PASS: push → mirror → feed works"):
		return errors.New("the runbook ran but its smoke check did not pass")
	}
	fmt.Fprintln(stdout, "firstdeploy: PASS: the runbook ran from the root of a fresh clone (terraform init and plans with the provider mirror, the rest on the emulators) and ended with a change on the feed")
	return nil
}

// sandbox writes the stand-ins for terraform and gcloud and returns the
// runbook's environment: the operator's view of the stack (where things are,
// no key), the stand-ins first on PATH.
func sandbox(work string, st *stack.Stack, realTF, mirror string) ([]string, error) {
	bin := filepath.Join(work, "bin")
	outputs := filepath.Join(work, "outputs")
	for _, d := range []string{bin, outputs, filepath.Join(work, "secrets")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// terraform output: what the stack is, as the deployment's outputs.
	for name, v := range map[string]string{
		"firestore_database": "(default)", "credential_public_key": st.Env["CREDENTIAL_PUBLIC_KEY"],
		"webhook_url": st.WebhookURL, "control_topic": "projects/" + st.ProjectID + "/topics/calsync-control",
	} {
		if err := os.WriteFile(filepath.Join(outputs, name), []byte(v), 0o644); err != nil {
			return nil, err
		}
	}
	tfrc := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path    = %q\n    include = [\"registry.terraform.io/hashicorp/*\"]\n  }\n  direct {\n    exclude = [\"registry.terraform.io/hashicorp/*\"]\n  }\n}\n", mirror)
	if err := os.WriteFile(filepath.Join(work, "cli.tfrc"), []byte(tfrc), 0o644); err != nil {
		return nil, err
	}
	files := map[string]string{"terraform": terraformShim, "gcloud": gcloudShim}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			return nil, err
		}
	}
	state, _ := json.Marshal(map[string]string{
		"calendarEndpoint": st.CalendarEndpoint, "firestoreEmulatorHost": st.FirestoreHost, "pubsubEmulatorHost": st.PubSubHost,
	})
	stateFile := filepath.Join(work, "operator.json")
	if err := os.WriteFile(stateFile, state, 0o600); err != nil {
		return nil, err
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "TMPDIR", "GOPATH", "GOCACHE", "GOMODCACHE", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN", "LANG":
			env = append(env, kv)
		}
	}
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			env[i] = "PATH=" + bin + string(os.PathListSeparator) + v
		}
	}
	return append(env,
		"FIRSTDEPLOY_TERRAFORM="+realTF, "FIRSTDEPLOY_WORK="+work, "FIRSTDEPLOY_RENEW_URL="+st.RenewChannelsURL,
		"CALSYNC_STATE_FILE="+stateFile, "PS4=+ "), nil
}

// terraformShim: init for real (provider mirror, no backend); apply planned
// for real, not applied (the stack stands in for what it would make);
// output from the stack.
const terraformShim = `#!/usr/bin/env bash
# firstdeploy's terraform (scripts/firstdeploy).
set -euo pipefail
export TF_CLI_CONFIG_FILE="$FIRSTDEPLOY_WORK/cli.tfrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
export GOOGLE_OAUTH_ACCESS_TOKEN=firstdeploy-dummy-token
args=("$@")
chdir=()
if [[ "${args[0]:-}" == -chdir=* ]]; then chdir=("${args[0]}"); args=("${args[@]:1}"); fi
sub="${args[0]:-}"
rest=("${args[@]:1}")
case "$sub" in
  init) exec "$FIRSTDEPLOY_TERRAFORM" "${chdir[@]}" init -backend=false -input=false "${rest[@]}" ;;
  apply)
    echo "firstdeploy: terraform apply ${rest[*]}: planned, not applied (the local stack is the deployment)" >&2
    "$FIRSTDEPLOY_TERRAFORM" "${chdir[@]}" validate -no-color >&2
    exec "$FIRSTDEPLOY_TERRAFORM" "${chdir[@]}" plan -refresh=false -input=false -lock=false -no-color "${rest[@]}" >&2 ;;
  output)
    raw=0; name=""
    for a in "${rest[@]}"; do case "$a" in -raw) raw=1 ;; -*) ;; *) name="$a" ;; esac; done
    f="$FIRSTDEPLOY_WORK/outputs/$name"
    [ -f "$f" ] || { echo "firstdeploy: terraform output $name: not known locally" >&2; exit 1; }
    if [ "$raw" = 1 ]; then cat "$f"; else printf '"%s"\n' "$(cat "$f")"; fi ;;
  *) exec "$FIRSTDEPLOY_TERRAFORM" "$@" ;;
esac
`

// gcloudShim: secrets are kept aside (the stack has its own keys); the
// scheduler's job run calls RenewChannels as Cloud Scheduler would.
const gcloudShim = `#!/usr/bin/env bash
# firstdeploy's gcloud (scripts/firstdeploy).
set -euo pipefail
case "${1:-} ${2:-} ${3:-}" in
  "secrets versions add")
    cat > "$FIRSTDEPLOY_WORK/secrets/$4"
    echo "firstdeploy: gcloud secrets versions add $4: kept aside (the local functions have their own keys)" >&2 ;;
  "scheduler jobs run")
    curl -fsS -X POST -H "User-Agent: Google-Cloud-Scheduler" -o /dev/null "$FIRSTDEPLOY_RENEW_URL"
    echo "firstdeploy: gcloud scheduler jobs run $4: RenewChannels called" >&2 ;;
  *) echo "firstdeploy: gcloud $*: not known locally" >&2; exit 1 ;;
esac
`
