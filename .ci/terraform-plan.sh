#!/usr/bin/env bash
# terraform init -backend=false, validate and plan -refresh=false with the REAL
# hashicorp/google and hashicorp/archive providers, offline: they come from the
# filesystem mirror ../shared/terraform-mirror next to the repository root (or
# TERRAFORM_MIRROR). Every Terraform change is thereby checked against the
# provider's real schema and planned end to end (the source zip is built).
#
# It works on a copy (terraform/ plus the files the zip reads), so neither
# .terraform/, a lock file made from the mirror (its hashes differ from the
# registry's: never commit one) nor the zip lands in the checkout. The plan
# uses a dummy project and access token; it reads no data source that needs
# Google (the configuration has none), so nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
start=$SECONDS

bindir="$(go env GOBIN)"
[ -n "$bindir" ] || bindir="$(go env GOPATH)/bin"
export PATH="$bindir:$PATH"
command -v terraform >/dev/null || { echo "terraform-plan: FAIL: no terraform on PATH (.ci/terraform-checks.sh builds it)"; exit 1; }

mirror="${TERRAFORM_MIRROR:-$root/../shared/terraform-mirror}"
for p in google archive; do
  if ! ls "$mirror"/registry.terraform.io/hashicorp/$p/terraform-provider-${p}_*_linux_amd64.zip >/dev/null 2>&1; then
    echo "terraform-plan: FAIL: no hashicorp/$p provider in the mirror at $mirror"
    echo "  (CI expects ../shared/terraform-mirror beside the checkout; set TERRAFORM_MIRROR to use another)"
    exit 1
  fi
done
mirror="$(cd "$mirror" && pwd)" # the CLI configuration needs an absolute path

work="$(mktemp -d)"
trap '[ -n "${KEEP_TF_WORK:-}" ] || rm -rf "$work"' EXIT
# What the plan reads: terraform/, and for the zip go.mod, go.sum, calsync.go
# and the Go files of functions/ and shared/ (functions.tf picks from them).
mkdir -p "$work/repo"
cp -R terraform go.mod go.sum calsync.go functions shared "$work/repo/"
rm -rf "$work/repo/terraform/.terraform" "$work/repo/terraform/.terraform.lock.hcl" "$work/repo"/terraform/*.tfstate* \
  "$work/repo"/terraform/*.tfvars "$work/repo"/terraform/function-source*.zip

cat > "$work/cli.tfrc" <<CFG
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
CFG
export TF_CLI_CONFIG_FILE="$work/cli.tfrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
export TF_DATA_DIR="$work/data"
# Dummy credentials: plan -refresh=false on an empty state calls no API.
export GOOGLE_OAUTH_ACCESS_TOKEN="ci-dummy-token" GOOGLE_PROJECT="" GOOGLE_CREDENTIALS="" GOOGLE_APPLICATION_CREDENTIALS=""

# Every optional part switched on, so dynamic blocks are planned too.
cat > "$work/ci.tfvars" <<'VARS'
project_id                   = "calsync-ci-plan"
region                       = "europe-west1"
oauth_client_id              = "123456789-ci.apps.googleusercontent.com"
changes_example_subscription = "calsync-changes-example"
legacy_credential_keys       = true
credential_public_key        = "pubkey:v1:h1:C2kIGdgJtyiZzag5tZfm456kkp0PvIv2TloZGRuOJSo"
channel_token_v1_until       = "2030-01-01T00:00:00Z"
alert_notification_channels  = ["projects/calsync-ci-plan/notificationChannels/1"]
control_publishers           = ["serviceAccount:product@calsync-ci-plan.iam.gserviceaccount.com"]
tenants = {
  acme = {
    publishers = ["serviceAccount:acme@calsync-ci-plan.iam.gserviceaccount.com"]
    domains    = ["acme.example"]
    subjects   = ["rooms@acme.example"]
    oauth      = false
  }
  globex = {
    publishers                  = ["serviceAccount:globex@calsync-ci-plan.iam.gserviceaccount.com"]
    display_name                = "Globex CRM"
    return_urls                 = ["https://app.globex.example/calendar/"]
    delete_mirror_on_disconnect = true
  }
}
connect_url = "https://connect.calsync-ci-plan.example"
consumers = {
  acme-changes = {
    topic       = "changes"
    tenant      = "acme"
    filter      = "attributes.origin != \"initial\""
    ordering    = true
    subscribers = ["serviceAccount:acme@calsync-ci-plan.iam.gserviceaccount.com"]
  }
  globex-lifecycle = {
    topic                = "lifecycle"
    tenant               = "globex"
    push_endpoint        = "https://globex.example/calsync/lifecycle"
    push_service_account = "globex-push@calsync-ci-plan.iam.gserviceaccount.com"
  }
}
VARS

tf() { terraform -chdir="$work/repo/terraform" "$@"; }
step() { # name, command...
  local name="$1" t0=$SECONDS
  shift
  echo "terraform-plan: $name"
  if ! "$@" >"$work/$name.log" 2>&1; then
    cat "$work/$name.log"
    echo "terraform-plan: FAIL: terraform $name (above)"
    exit 1
  fi
  echo "terraform-plan:   ok in $((SECONDS - t0))s"
}
step init tf init -backend=false -input=false -no-color
step validate tf validate -no-color
step plan tf plan -refresh=false -input=false -lock=false -no-color -var-file="$work/ci.tfvars" -out="$work/plan.out"

summary="$(grep -E '^Plan: ' "$work/plan.log" || true)"
[ -n "$summary" ] || { cat "$work/plan.log"; echo "terraform-plan: FAIL: no plan summary"; exit 1; }
resources="$(tf show -json "$work/plan.out" | python3 -c 'import json,sys; p=json.load(sys.stdin); print(sum(1 for r in p.get("resource_changes",[]) if r["mode"]=="managed"))')"
versions="$(tf version | sed -n 's/^.*provider registry.terraform.io\/hashicorp\/\([a-z]*\) v\(.*\)$/\1 \2/p' | paste -sd, -)"
echo "terraform-plan: OK: $summary ($resources managed resources; providers $versions from $mirror) in $((SECONDS - start))s"

# A deployment of the layout before the moves (terraform/moved.tf) upgrades
# without a resource destroyed or recreated: terraform/moves_check.py plans
# this layout against a state of that one, built offline from its plan.
# MOVES_ONLY=1: nothing added or changed either.
t0=$SECONDS
python3 terraform/moves_check.py --work "$work" --var-file "$work/ci.tfvars" \
  --base "${MOVES_BASE:-5599d2c860bb5b8f57cf12f36f2f731c2082a0bd}" ${MOVES_ONLY:+--only-moves}
echo "terraform-plan: moves checked in $((SECONDS - t0))s"
