# reversald: developer and CI entry points. CI calls make targets only (.ci/run -> make test).
# Tests need the dev stack (PostgreSQL + Kafka on loopback, scripts/devstack.sh); every target
# that needs it depends on `up`, which starts it if needed and writes .stack/env.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
STACK_ENV := .stack/env
WITH_ENV  := . ./$(STACK_ENV) &&
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Extra flags for go test, e.g. make test GOTESTFLAGS='-v -run TestIntake'.
GOTESTFLAGS ?=
BENCH     ?=
BENCHTIME ?= 1s
FUZZTIME  ?= 15s
GOLANGCI_VERSION := v2.15.0
GOLANGCI  := $(HOME)/.cache/reversald/golangci-lint-$(GOLANGCI_VERSION)/golangci-lint

.PHONY: help up down status test fmt-check vet compose-check tools deploy-check bench demo build lint fuzz pacing-proof bench-purge console bench-naive chaos chaos-mutant chaos-smoke

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## start the dev stack (PostgreSQL + Kafka on loopback) if needed; writes .stack/env
	@./scripts/devstack.sh up

down: ## stop this repo's dev stack and delete .stack
	@./scripts/devstack.sh down

status: ## say what the dev stack runs, where
	@./scripts/devstack.sh status

# The chaos smoke run goes on its own, after the other tests: its kills and restarts load the
# machine, and the lease and pacing tests of the other packages must not run beside it.
test: up fmt-check vet compose-check tools ## gofmt check, go vet, go test -race against the dev stack, the chaos smoke run, and the deployment checks
	$(WITH_ENV) $(GO) test -race -count=1 -timeout=20m -skip='^TestChaosSmoke$$' $(GOTESTFLAGS) ./...
	@$(MAKE) --no-print-directory chaos-smoke
	@$(MAKE) --no-print-directory deploy-check

# deploy/check is a module of its own (k8s.io/api, the Prometheus Operator's types and
# prometheus/prometheus stay out of the daemon's go.mod): helm lint and template, strict
# decoding of every rendered object (KEDA's ScaledObject against KEDA's CRD schema),
# promtool check and test rules, and every PromQL query against a running daemon's /metrics.
deploy-check: up tools ## the deployment checks alone (chart, alerts, dashboard queries); make test runs them
	$(WITH_ENV) cd deploy/check && $(GO) test -count=1 -timeout=10m $(GOTESTFLAGS) ./...

tools: ## install the pinned helm, promtool and docker-compose the checks use (scripts/tools.sh; cached in ~/.cache/reversald)
	@./scripts/tools.sh install

fmt-check: ## fail if a Go file is not gofmt-formatted
	@files=$$(find . -name '*.go' -not -path './.stack/*' -not -path './bin/*' -not -path '*/testdata/*' -print); \
	bad=$$(gofmt -l $$files); \
	if [ -n "$$bad" ]; then echo "gofmt: these files need formatting (gofmt -w):"; echo "$$bad"; exit 1; fi

vet: ## go vet ./...
	$(GO) vet ./...

compose-check: ## validate docker-compose.yml with docker-compose config -q (Debian's docker-compose, installed when missing; no engine needed)
	@dc=$$(./scripts/tools.sh docker-compose) && "$$dc" -f docker-compose.yml config -q && echo "docker-compose.yml: valid ($$("$$dc" version --short))"

bench: up ## benchmarks against the dev stack, at the counts the README's figures use (or BENCH=regexp BENCHTIME=1s)
ifeq ($(BENCH),)
	$(WITH_ENV) $(GO) test -run='^$$' -bench=. -benchmem ./qfpay/...
	$(WITH_ENV) $(GO) test -run='^$$' -bench=BenchmarkIntake -benchtime=40x ./store
	$(WITH_ENV) $(GO) test -run='^$$' -bench=BenchmarkIntake -benchtime=3x ./consumer
	$(WITH_ENV) $(GO) test -run='^$$' -bench=BenchmarkExecutor -benchtime=5000x ./reversal
	$(WITH_ENV) $(GO) test -run='^$$' -bench=BenchmarkEndToEnd -benchtime=5000x -timeout=30m ./cmd/reversald
	@$(MAKE) --no-print-directory bench-naive
else
	$(WITH_ENV) $(GO) test -run='^$$' -bench='$(BENCH)' -benchtime=$(BENCHTIME) -benchmem ./...
endif

bench-naive: up ## issue 13's ratio: a naive per-partition consumer, then the daemon, on the same 20,000 in-flight payments (12 partitions, 0 ms gateway); prints ratio = reversald / naive
	$(WITH_ENV) $(GO) test -run='^$$' -bench=BenchmarkVersusNaive -benchtime=20000x -timeout=30m ./cmd/reversald | grep -E 'ratio = |^Benchmark|^ +[0-9]+ |^(ok|FAIL|PASS)'

pacing-proof: up ## issue 9's proof: daemons as processes share QFPay's per-merchant limits (about 16 min; PROOF_HOT_PAYMENTS=150 for ~1 min)
	$(WITH_ENV) $(GO) test -run='^$$' -bench=BenchmarkPacingProof -benchtime=1x -timeout=60m ./cmd/reversald

bench-purge: up ## issue 11's retention figure: purge 1,000,000 final attempts while intake runs (10-20 min; PURGE_BENCH_ATTEMPTS=N, PURGE_BENCH_PAUSE=100ms)
	$(WITH_ENV) $(GO) test -run='^$$' -bench=BenchmarkPurgeUnderIntake -benchtime=1x -timeout=60m ./store

# The tokens are made once per stack under .stack/console (deleted by make down); sign in with
# either file's content (admin.token acts, viewer.token reads).
console: up ## the operator console on the dev stack's database, http://127.0.0.1:9095 (CONSOLE_ADDR=...); tokens in .stack/console
	@mkdir -p .stack/console && chmod 700 .stack/console
	@for r in admin viewer; do [ -s .stack/console/$$r.token ] || (umask 077 && openssl rand -base64 24 > .stack/console/$$r.token); done
	@echo "console tokens: .stack/console/admin.token (acts), .stack/console/viewer.token (reads)"
	$(WITH_ENV) $(GO) run ./cmd/reversald migrate
	$(WITH_ENV) CONSOLE_ADMIN_TOKEN_FILE=.stack/console/admin.token CONSOLE_READONLY_TOKEN_FILE=.stack/console/viewer.token \
	  $(GO) run ./cmd/reversald console

# The chaos suite runs its own PostgreSQL and broker (devstack.sh with DEVSTACK_DIR, killed and
# restarted by the run), so the dev stack only serves the schema checks of the outcomes. Root is
# needed for the out-of-disk fault (a loop-mounted ext4). TestChaosSmoke, a short run, is part of
# make test.
CHAOS_TIMEOUT ?= 60m
chaos: up ## issue 14's chaos run: daemons as processes under faults (CHAOS_EVENTS=20000 CHAOS_INSTANCES=5 CHAOS_DURATION=5m CHAOS_SEED=n)
	$(WITH_ENV) $(GO) test -run='^$$' -bench='^BenchmarkChaos$$' -benchtime=1x -timeout=$(CHAOS_TIMEOUT) ./cmd/reversald

chaos-smoke: up ## the chaos suite's short run alone (TestChaosSmoke: 2,000 events, 3 daemons, 30 s of faults, seed 14); make test runs it
	$(WITH_ENV) $(GO) test -race -count=1 -timeout=15m -run='^TestChaosSmoke$$' ./cmd/reversald

chaos-mutant: up ## the same run against a daemon with a known bug put back (MUTANT=testdata/chaos/<x>.patch): it must go red
	$(WITH_ENV) CHAOS_TIMEOUT=$(CHAOS_TIMEOUT) ./scripts/chaos-mutant.sh

demo: up ## end-to-end demo (scripts/demo.sh)
	$(WITH_ENV) ./scripts/demo.sh

build: ## static binaries (CGO_ENABLED=0) of ./cmd/... into bin/
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w -X main.version=$(VERSION)' -o bin/ ./cmd/...
	@ls -l bin/

lint: ## golangci-lint, the pinned version (installed into ~/.cache/reversald when missing); CI runs it
	@if [ ! -x "$(GOLANGCI)" ]; then \
	  echo "installing golangci-lint $(GOLANGCI_VERSION) into $(dir $(GOLANGCI))"; \
	  mkdir -p "$(dir $(GOLANGCI))" && GOBIN="$(dir $(GOLANGCI))" $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION); \
	fi
	"$(GOLANGCI)" run ./...

fuzz: ## run every Fuzz target for FUZZTIME (default 15s) each
	@targets=$$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '^./.stack/' || true); \
	if [ -z "$$targets" ]; then echo "no fuzz targets"; exit 0; fi; \
	if [ -f $(STACK_ENV) ]; then . ./$(STACK_ENV); fi; \
	for f in $$targets; do \
	  dir=$$(dirname "$$f"); \
	  for fn in $$(sed -n -E 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$f"); do \
	    echo "== fuzz $$dir $$fn ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) "$$dir"; \
	  done; \
	done
