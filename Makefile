# Berth: `make run` starts the whole thing, `make test` proves it. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
CARGO_LAMBDA := $(VENV)/bin/cargo-lambda
PIP_PKGS    := 'moto[server]==5.2.5' 'cargo-lambda==1.9.2' 'cfn-lint' 'alibabacloud-computenestsupplier20210521==7.1.5' 'computenest-cli==1.9.17' 'schemathesis==4.32.5' 'cryptography'
APT_PKGS    := docker-registry skopeo busybox-static chromium chromium-driver haproxy prometheus
BERTH_DATA_DIR ?= berth-data
BERTH_LISTEN   ?= 127.0.0.1:9080

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help deps apt-deps py-deps docker-engine build run test check bench bench-quick bench-build lambda-build fmt lint clean

help:
	@echo "make run           the whole flow on the embedded default: berth serve on $(BERTH_LISTEN), a registry, an agent, a release"
	@echo "make test          install what tests need, build, run every test"
	@echo "make check         the fast tier: fmt, clippy, every in-process test (no Docker, no venv)"
	@echo "make bench         binary sizes, start-up times, token/render throughput, Lambda init/warm invokes, release fan-out at 10,000 and 100,000 hosts, wake-to-job latency and memory per idle wake channel at 10,000 hosts, health-checked batch handoff and probe overhead, peak RSS under hostile input, honest latency under availability attacks, a 50-host release on 2 processes over S3/SQS against 1"
	@echo "make bench-quick   the ratios and sizes of make bench in a minute or two (no 100,000-host run): run it before you stop"
	@echo "make lambda-build  build every function for AWS Lambda (provided.al2023, x86_64)"
	@echo "make lint          rustfmt check, clippy (every target, warnings are errors) and cargo doc (warnings are errors)"
	@echo "make api-fuzz      schemathesis (every check) against berth serve and infra/openapi.yaml"

## deps: what tests need on a fresh Debian machine; quick when already there.
deps: apt-deps py-deps docker-engine

apt-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

py-deps: $(VENV)/.installed

## docker-engine: the agent's tests and `make run` need a Docker engine that answers; a machine
## (or CI run) whose daemon is not up gets it started here, and a daemon that cannot start fails
## here, loudly, instead of as twenty unrelated test failures.
docker-engine:
	@docker info >/dev/null 2>&1 || { \
	  echo "the Docker engine does not answer: starting it"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO service docker start >/dev/null 2>&1 || ( $$SUDO nohup dockerd >/tmp/berth-dockerd.log 2>&1 & ); \
	  for i in $$(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done; \
	  echo "the Docker engine did not start within 60 s (see /tmp/berth-dockerd.log or the service's log)" >&2; exit 1; }

$(VENV)/.installed: Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check $(PIP_PKGS)
	@touch $@

build:
	cargo build --workspace --bins

run: apt-deps docker-engine build
	@BERTH_DATA_DIR=$(BERTH_DATA_DIR) BERTH_LISTEN=$(BERTH_LISTEN) scripts/run.sh

test: deps build
	$(VENV)/bin/cfn-lint infra/template.yaml
	cargo test --workspace --no-fail-fast

## check: the fast tier a developer runs while working; the end-to-end crate (berth-tests) is left to make test.
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace --exclude berth-tests

## bench: every goal, each a line (figure, goal, ok/over), and a summary at the end that fails
## when one is over; bench-quick: the ratios and sizes only (a minute or two, no 100,000 hosts).
bench bench-quick: export BENCH_SUMMARY := $(CURDIR)/target/bench-summary.tsv

bench-build:
	cargo build --release --workspace --bins
	@# Relinked as they ship: `make lambda-build` builds only these, so only their features count.
	cargo build --release -p berth-credentials -p berth-packages -p berth-render -p berth-releases
	cargo build --release -p berth-cli

bench: deps bench-build
	@rm -f $(BENCH_SUMMARY)
	cargo run --release -q -p berth-tests --bin startup-bench
	cargo run --release -q -p berth-tests --bin token-bench
	cargo run --release -q -p berth-tests --bin signature-bench
	cargo run --release -q -p berth-tests --bin render-bench
	cargo run --release -q -p berth-tests --bin lambda-bench
	cargo run --release -q -p berth-tests --bin wake-bench
	BENCH_HOSTS=10000 cargo run --release -q -p berth-tests --bin fanout-bench
	BENCH_HOSTS=100000 cargo run --release -q -p berth-tests --bin fanout-bench
	cargo run --release -q -p berth-tests --bin multiprocess-bench
	cargo run --release -q -p berth-tests --bin health-bench
	cargo run --release -q -p berth-tests --bin memory-bench
	cargo run --release -q -p berth-tests --bin stall-bench
	cargo run --release -q -p berth-tests --bin bench-summary

bench-quick: deps bench-build
	@rm -f $(BENCH_SUMMARY)
	cargo run --release -q -p berth-tests --bin startup-bench
	cargo run --release -q -p berth-tests --bin render-bench
	cargo run --release -q -p berth-tests --bin lambda-bench
	BENCH_HOSTS=10000 cargo run --release -q -p berth-tests --bin fanout-bench
	cargo run --release -q -p berth-tests --bin bench-summary

lambda-build: deps
	@# -p: only the functions' own features, not the whole workspace's (the test crate's made them ~6% larger).
	$(CARGO_LAMBDA) lambda build --release --compiler cargo --x86-64 \
	  -p berth-credentials -p berth-packages -p berth-render -p berth-releases -p berth-console \
	  --bin berth-credentials --bin berth-packages --bin berth-render --bin berth-releases --bin berth-console
	@for f in credentials packages render releases console; do \
	  printf "%-22s %s bytes\n" "berth-$$f" "$$(stat -c %s target/lambda/berth-$$f/bootstrap)"; done

## api-fuzz: the API description against the server (API_FUZZ_EXAMPLES per operation, default 20).
api-fuzz: py-deps
	cargo build -p berth-cli --bin berth
	scripts/api-fuzz.sh

fmt:
	cargo fmt --all

## lint: the workspace lints ([workspace.lints] in Cargo.toml) are errors, and so is a broken doc link.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

clean:
	cargo clean
	rm -rf $(VENV) $(BERTH_DATA_DIR)
