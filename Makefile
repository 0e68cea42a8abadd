# The commands a developer needs. `make test` is what CI runs.
GO ?= go
PKGS ?= ./...
# TESTFLAGS: extra go test flags; CI passes -count=1 so no cached result hides a flaky test.
TESTFLAGS ?=

.PHONY: test ci check vet fmt-check merge-check fuzz bench fleet run terraform-check firstdeploy

## run: the whole system on emulators, with a demo calendar and the live change feed (Ctrl-C stops it)
run:
	$(GO) run ./scripts/devstack --demo --state-file .devstack/state.json

## test: format and vet checks, then every test with the race detector (starts the emulators itself)
test: check
	$(GO) test -race -timeout 25m $(TESTFLAGS) $(PKGS)

## ci: what .ci/run runs: the tests, then the Terraform checks
ci: test terraform-check

## terraform-check: terraform fmt -check, tflint (built from the Go module proxy on first use), then init, validate and plan with the real providers from ../shared/terraform-mirror
terraform-check:
	bash .ci/terraform-checks.sh

check: fmt-check vet merge-check

# merge-check: no merge conflict markers committed (one slipped into a README once)
merge-check:
	@if git grep -nE '^(<<<<<<< |>>>>>>> |=======$$)' -- . ':!*.go' 2>/dev/null; then echo 'merge conflict markers committed'; exit 1; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

## fuzz: a short run of every fuzz target
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime 30s ./shared/channeltoken
	$(GO) test -run '^$$' -fuzz FuzzParseFields -fuzztime 10s ./shared/channeltoken
	$(GO) test -run '^$$' -fuzz FuzzOpen -fuzztime 10s ./shared/sealed
	$(GO) test -run '^$$' -fuzz FuzzUntrusted -fuzztime 10s ./shared/logging
	$(GO) test -run '^$$' -fuzz FuzzParseNotification -fuzztime 30s ./functions/webhook
	$(GO) test -run '^$$' -fuzz FuzzPushRequest -fuzztime 30s ./functions/syncworker
	$(GO) test -run '^$$' -fuzz FuzzCalendarKeyPassesMessages -fuzztime 10s ./shared/store
	$(GO) test -run '^$$' -fuzz FuzzParseControl -fuzztime 20s ./shared/messages
	$(GO) test -run '^$$' -fuzz FuzzControlSchema -fuzztime 20s ./shared/messages

## bench: the benchmarks, side by side
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## firstdeploy: the Terraform runbook (terraform/README.md) run in order from a fresh clone against the local emulators, ending with the smoke check
firstdeploy:
	$(GO) run ./scripts/firstdeploy

## fleet: the fleet benchmark (1,000 calendars, 100 identities, 3 SyncWorker processes, 5 minutes; sizes are flags of scripts/bench/fleet)
fleet:
	$(GO) run ./scripts/bench/fleet --out .devstack/bench
