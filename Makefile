# videosync: one-command entry points. See docs/operations.md for what each service needs.
#
#   make run     build and serve on http://127.0.0.1:8080 (embedded defaults, data in ./data)
#   make test    fmt, clippy, docs, then the whole test suite against Postgres, Redis and Garage,
#                and the API fuzzer (schemathesis) against the built server
#
# The build cache lives outside the clone ($(VIDEOSYNC_CACHE)/target), so a fresh clone
# reuses it. Override anything on the command line: `make run ADDR=0.0.0.0:9000`.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VIDEOSYNC_CACHE ?= $(HOME)/.cache/videosync
CARGO_TARGET_DIR ?= $(VIDEOSYNC_CACHE)/target
export VIDEOSYNC_CACHE
export CARGO_TARGET_DIR
# No cargo on PATH yet: scripts/deps.sh installs it with rustup into ~/.cargo/bin.
ifeq ($(shell command -v cargo 2>/dev/null),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif

ADDR ?= 127.0.0.1:8080
DATA_DIR ?= ./data
SERVICES_ENV := $(VIDEOSYNC_CACHE)/services.env
# The benchmark harnesses `make bench` runs (core, sync, ladder, server, media, realtime, or all).
BENCH ?= core

.PHONY: help run build test bench bench-ladder services stop-services fmt clean-data

help: ## list the targets
	@echo "videosync make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  \1\t/' | expand -t 18
	@echo "variables: ADDR=$(ADDR) DATA_DIR=$(DATA_DIR) VIDEOSYNC_CACHE=$(VIDEOSYNC_CACHE)"
	@echo "           CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)"

build: ## install build deps, build the videosync binary (release)
	@scripts/deps.sh
	cargo build --release -p videosync-server --bin videosync

run: build ## build, then serve on http://127.0.0.1:8080 (ADDR, DATA_DIR override)
	@echo "videosync: serving on http://$(ADDR) (data in $(DATA_DIR); Ctrl-C to stop)"
	exec "$(CARGO_TARGET_DIR)/release/videosync" serve --addr "$(ADDR)" --data-dir "$(DATA_DIR)"

test: ## deps + services, then fmt check, clippy, docs, the web app's checks, all tests and the browser tests (stops at the first failure)
	@scripts/deps.sh test
	scripts/services.sh start
	source "$(SERVICES_ENV)"
	export VIDEOSYNC_REQUIRE_SERVICES=1
	echo "== cargo fmt --all -- --check"
	cargo fmt --all -- --check
	echo "== cargo clippy --workspace --all-targets --all-features -- -D warnings"
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	echo "== RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps --all-features"
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
	echo "== web: npm run typecheck, npm run lint"
	(cd web && npm run --silent typecheck && npm run --silent lint)
	echo "== cargo test --workspace --all-features"
	cargo test --workspace --all-features
	echo "== web/e2e (Playwright driving Chromium against videosync serve: the web app end to end)"
	cargo build --quiet --all-features -p videosync-server --bin videosync
	VIDEOSYNC_BIN="$(CARGO_TARGET_DIR)/debug/videosync" node --test --test-concurrency=1 web/e2e/
	echo "== scripts/api-fuzz.sh (schemathesis against videosync serve: embedded, then Postgres + Redis + S3)"
	scripts/api-fuzz.sh
	echo "== node --test videosync-sync/js/vectors.test.mjs (the JavaScript sync client against the shared vectors)"
	node --test videosync-sync/js/vectors.test.mjs
	echo "== examples (embedded backends)"
	cargo run --quiet --all-features --example job_writes_object
	cargo run --quiet --all-features --example embed_server
	scratch="$$(mktemp -d)"; trap 'rm -rf "$$scratch"' EXIT
	ffmpeg -v error -nostdin -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine -t 3 -c:v libx264 -preset ultrafast -c:a aac "$$scratch/clip.mp4"
	cargo run --quiet --all-features --example ladder -- "$$scratch/clip.mp4" "$$scratch/ladder" 360,240
	test -s "$$scratch/ladder/master.m3u8"

bench: ## list the benchmark harnesses and run those named in BENCH (default core; BENCH="core server", BENCH=all)
	@echo "benchmark harnesses (\`make bench BENCH=<name> ...\`; reports in benches/results/<name>.json and .md):"
	echo "  core    object store, job queue, upload sessions, event log, key-value store beside baselines (services)"
	echo "  sync    sync simulator: videosync beside Jellyfin SyncPlay, Syncplay and CyTube (no services)"
	echo "  ladder  HLS ladder: ffmpeg CLI beside videosync transcode, wall/CPU/memory/quality (same as make bench-ladder)"
	echo "  server  HTTP load with oha (login, channel read, search) and search latency over 100 000 videos on SQLite and Postgres"
	echo "  media   upload to ready (beside a bare transcode), delivery (beside nginx sendfile), 1 GiB tus upload (beside cp)"
	echo "  realtime  rooms over WebSocket: 100 rooms of 100 on one server beside a Node ws + Redis baseline"
	echo "            (VIDEOSYNC_BENCH_INSTANCES=2: two instances; VIDEOSYNC_BENCH_RAMP=capacity or rate: the ramps)"
	echo "  browser the sync error between real Chromium players on emulated networks, beside correction off"
	names="$(BENCH)"
	if [[ "$$names" == all ]]; then names="core sync ladder server media realtime browser"; fi
	for b in $$names; do
		case "$$b" in
			core | sync | ladder | server | media | realtime | browser) ;;
			*) echo "make bench: no harness named '$$b' (core, sync, ladder, server, media, realtime, browser, all)" >&2; exit 2 ;;
		esac
	done
	for b in $$names; do
		echo "== bench $$b"
		case "$$b" in
			core)
				scripts/deps.sh test
				scripts/services.sh start
				(source "$(SERVICES_ENV)"; export VIDEOSYNC_REQUIRE_SERVICES=1
				 echo "== cargo bench --all-features --bench core"
				 cargo bench --all-features --bench core) ;;
			sync)
				scripts/deps.sh
				echo "== cargo bench --bench sync"
				cargo bench --bench sync ;;
			ladder)
				scripts/deps.sh test
				echo "== cargo build --release -p videosync-server"
				cargo build --release -p videosync-server
				echo "== cargo bench --features transcode --bench ladder"
				cargo bench --features transcode --bench ladder ;;
			server)
				scripts/deps.sh bench
				scripts/services.sh start
				(source "$(SERVICES_ENV)"; export VIDEOSYNC_REQUIRE_SERVICES=1
				 export PATH="$(VIDEOSYNC_CACHE)/tools/bin:$$PATH"
				 echo "== cargo bench --all-features --bench server"
				 cargo bench --all-features --bench server) ;;
			media)
				scripts/deps.sh bench
				echo "== cargo build --release -p videosync-server"
				cargo build --release -p videosync-server
				(export PATH="$(VIDEOSYNC_CACHE)/tools/bin:$$PATH"
				 echo "== cargo bench --bench media"
				 cargo bench --bench media) ;;
			browser)
				scripts/deps.sh test
				echo "== cargo build --release -p videosync-server --bin videosync"
				cargo build --release -p videosync-server --bin videosync
				echo "== node benches/browser-sync.mjs"
				VIDEOSYNC_BIN="$(CARGO_TARGET_DIR)/release/videosync" node benches/browser-sync.mjs ;;
			realtime)
				scripts/deps.sh test
				scripts/services.sh start
				echo "== cargo build --release -p videosync-server"
				cargo build --release -p videosync-server
				echo "== npm ci (benches/realtime/node-baseline)"
				(cd benches/realtime/node-baseline && npm ci --no-audit --no-fund)
				(source "$(SERVICES_ENV)"
				 echo "== cargo bench --bench realtime"
				 cargo bench --bench realtime) ;;
		esac
	done

bench-ladder: ## the ladder benchmark alone (make bench BENCH=ladder): ffmpeg CLI vs videosync transcode
	@$(MAKE) bench BENCH=ladder

services: ## start (or reuse) Postgres, Redis and Garage; writes services.env under VIDEOSYNC_CACHE
	@scripts/services.sh start

stop-services: ## stop the services that scripts/services.sh started
	@scripts/services.sh stop

fmt: ## format the workspace
	@cargo fmt --all

clean-data: ## delete ./data (the data dir of `make run`)
	@rm -rf ./data
