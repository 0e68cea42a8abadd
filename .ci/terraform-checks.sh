#!/usr/bin/env bash
# Terraform checks (no provider can be downloaded in CI):
#   terraform fmt -check   (Terraform v1.5.7, the last MPL release)
#   tflint                 (core rules: its bundled "terraform" ruleset, no plugin download)
#   terraform init/validate/plan with the real providers from the offline
#                          mirror ../shared/terraform-mirror (.ci/terraform-plan.sh)
# The HCL-against-code checks are a Go test: go test ./terraform/ (part of make test).
#
# Both tools are built from the Go module proxy into $(go env GOBIN) or
# $(go env GOPATH)/bin and reused when the right version is already there.
# A cold build of terraform takes about 2 minutes and 1.2 GB; cache that directory.
set -euo pipefail
cd "$(dirname "$0")/.."

TERRAFORM_VERSION="1.5.7"
TFLINT_VERSION="v0.64.0" # pinned for repeatable CI; bump deliberately

bindir="$(go env GOBIN)"
[ -n "$bindir" ] || bindir="$(go env GOPATH)/bin"
export PATH="$bindir:$PATH"
export CHECKPOINT_DISABLE=1 # no version check call-home
# A TF_CLI_CONFIG_FILE pointing at a missing file only produces warnings.
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then
  export TF_CLI_CONFIG_FILE=/dev/null
fi

install() { # module@version
  echo "terraform-checks: installing $1 into $bindir"
  (cd / && GOFLAGS=-buildvcs=false GOBIN="$bindir" go install "$1")
}

have_tf="$(terraform version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([^"]*\)".*/\1/p' || true)"
if [ "$have_tf" != "$TERRAFORM_VERSION" ]; then
  start=$SECONDS
  install "github.com/hashicorp/terraform@v$TERRAFORM_VERSION"
  echo "terraform-checks: terraform built in $((SECONDS - start))s"
fi

status=0

echo "terraform-checks: terraform fmt -check (terraform $TERRAFORM_VERSION)"
if ! terraform fmt -check -diff -recursive terraform; then
  echo "terraform-checks: FAIL: run 'terraform fmt -recursive terraform' and commit the result"
  status=1
fi

have_lint="$(tflint --version 2>/dev/null | sed -n 's/^TFLint version \(.*\)$/v\1/p' || true)"
lint=1
if [ "$have_lint" != "$TFLINT_VERSION" ]; then
  if ! install "github.com/terraform-linters/tflint@$TFLINT_VERSION"; then
    echo "terraform-checks: WARNING: tflint could not be installed from the Go module proxy; tflint SKIPPED (fmt, validate, plan and the Go HCL test still run)"
    lint=0
  fi
fi

if [ "$lint" -eq 1 ]; then
  echo "terraform-checks: tflint ($TFLINT_VERSION, bundled terraform ruleset, terraform/.tflint.hcl)"
  if ! tflint --chdir=terraform --no-color; then
    echo "terraform-checks: FAIL: tflint found problems (above)"
    status=1
  fi
fi

# The real providers: init, validate, plan (fails if the mirror is missing).
if ! bash .ci/terraform-plan.sh; then
  status=1
fi

[ "$status" -eq 0 ] && echo "terraform-checks: OK"
exit "$status"
