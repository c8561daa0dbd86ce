# Proximity — developer loop. `make demo` runs the product, `make test` proves it.
SHELL := /bin/bash
# cargo from PATH, else the one rustup installs (deps-build installs it when missing).
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
VERSION := $(shell grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
# What building needs (make demo), and what the tests add on top (make test).
BUILD_PACKAGES := build-essential cmake pkg-config curl ca-certificates
APT_PACKAGES := $(BUILD_PACKAGES) nftables iproute2 dnsutils \
	udhcpc isc-dhcp-client dnsmasq-base busybox-static python3-venv zstd file chromium


.PHONY: deps-build bench-smoke all build release static demo test test-rust test-web test-e2e test-fuzz test-reliability lint fmt web bench fuzz soak reliability image clean deps help

help:
	@echo "make demo   - build everything and run the product on this machine (no Proxmox needed)"
	@echo "make test   - install test prerequisites and run every test CI runs"
	@echo "make build  - debug build (web UI + daemon)"
	@echo "make release- optimized binary in target/release/proximity"
	@echo "make static - static appliance binary (crt-static, profile appliance) in target/static/; prints its size"
	@echo "make lint   - rustfmt check + clippy -D warnings"
	@echo "make bench  - benchmarks against dnsmasq/caddy/nginx (results in target/bench/)"
	@echo "make image MINIROOTFS=<path|URL> - appliance CT template in dist/ (static binary, rootfs/, nftables)"
	@echo "make fuzz   - run every fuzz target (FUZZ_SECONDS each, default 60)"
	@echo "make soak   - mixed load on the daemon for SOAK_SECS (default 600); RSS/FDs in target/reliability/"
	@echo "make reliability - tests/RELIABILITY.md from the fuzz/crash/limits/soak results in target/reliability/"

# Install build prerequisites on Debian when missing (as root): packages, Node.js, Rust (rustup).
deps-build:
	@missing=""; for p in $(BUILD_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing packages:$$missing — install them (Debian: apt-get install$$missing)"; exit 1; fi; \
	fi
	@command -v node >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || { echo "node/npm not found: install Node.js 18 or newer"; exit 1; }
	@if ! command -v $(CARGO) >/dev/null; then \
	  echo "Rust not found: installing the stable toolchain with rustup into ~/.cargo (https://rustup.rs)"; \
	  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --no-modify-path \
	    || { echo "could not install Rust: install it from https://rustup.rs (1.95 or newer) and re-run"; exit 1; }; \
	fi

# Install test prerequisites on Debian when missing (as root); elsewhere explain.
deps: deps-build
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing packages:$$missing — install them (Debian: apt-get install$$missing)"; exit 1; fi; \
	fi

web:
	@if [ -f web/package.json ]; then cd web && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build; else mkdir -p web/dist; fi

build: web
	$(CARGO) build

release: web
	$(CARGO) build --release

# The appliance binary: glibc statically linked (crt-static; runs on Alpine's musl userland),
# profile `appliance` (opt-level s, one codegen unit), own target dir so it never invalidates
# the normal builds. Checks it is static and prints its size (budget < 25 MB stripped).
# -C relocation-model=static makes a classic static executable (not a static-pie): `file` says
# "statically linked", `ldd` "not a dynamic executable" (22.8 MB measured).
STATIC_TARGET_DIR ?= target/static
STATIC_BIN := $(STATIC_TARGET_DIR)/x86_64-unknown-linux-gnu/appliance/proximity
static: web
	RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' nice $(CARGO) build --profile appliance \
	  --target x86_64-unknown-linux-gnu --target-dir $(STATIC_TARGET_DIR)
	@file -L $(STATIC_BIN) | tee /dev/stderr | grep -Eq 'statically linked|static-pie linked' || { echo "error: $(STATIC_BIN) is not statically linked"; exit 1; }
	@out=$$(ldd $(STATIC_BIN) 2>&1); echo "ldd: $$out"; \
	  case "$$out" in *"not a dynamic executable"*|*"statically linked"*) ;; *) echo "error: ldd lists shared libraries for $(STATIC_BIN)"; exit 1 ;; esac
	@size=$$(stat -c %s $(STATIC_BIN)); echo "binary: $(STATIC_BIN) $$((size / 1024 / 1024)) MiB ($$size bytes, stripped; budget 25 MiB)"; \
	  [ $$size -lt 26214400 ] || { echo "error: over the 25 MiB budget"; exit 1; }

demo: deps-build release
	./target/release/proximity demo $(DEMO_ARGS)

test: deps web test-rust test-web test-e2e test-fuzz test-reliability bench-smoke

test-rust:
	$(CARGO) test --all-targets --no-fail-fast -- --test-threads=2

# Short bounded fuzz smoke (5 s per target, stable toolchain); `make fuzz` runs longer.
test-fuzz:
	tests/fuzz/run.sh 5

# Crash safety, limits, faults, security checks and the 20 s soak smoke (SOAK_SECS unset) run in test-rust
# (cargo test); this writes tests/RELIABILITY.md from everything they and the fuzz recorded.
test-reliability:
	python3 tests/reliability/report.py

test-web:
	@if [ -f web/package.json ] && grep -q '"test"' web/package.json; then cd web && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm test; fi

# Browser test (Debian chromium + playwright-core) against `proximity demo`; screenshots in target/ui-screenshots/.
test-e2e: web
	$(CARGO) build
	cd web && PROXIMITY_BIN=../target/debug/proximity E2E_SHOTS=../target/ui-screenshots npm run e2e

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

bench: deps release
	tests/bench/run.sh $(BENCH_ARGS)

# Tiny run of every benchmark section (checks the harness; numbers are not meaningful).
bench-smoke: deps
	$(CARGO) build
	PROXIMITY_BIN=target/debug/proximity tests/bench/run.sh --smoke

fuzz:
	tests/fuzz/run.sh $${FUZZ_SECONDS:-60}

soak:
	SOAK_SECS=$${SOAK_SECS:-600} $(CARGO) test --test reliability_soak -- --nocapture
	python3 tests/reliability/report.py

reliability:
	python3 tests/reliability/report.py

# make image MINIROOTFS=alpine-minirootfs-3.xx-x86_64.tar.gz|URL [BINARY=...] [APK_CACHE=dir]
image: deps
	@[ -n "$(MINIROOTFS)" ] || { echo "usage: make image MINIROOTFS=<Alpine minirootfs tarball path or URL> [BINARY=static binary] [APK_CACHE=dir of nftables .apk files]"; exit 2; }
	appliance/build-image.sh --minirootfs "$(MINIROOTFS)" $(if $(BINARY),--binary "$(BINARY)") $(if $(APK_CACHE),--apk-cache "$(APK_CACHE)") $(IMAGE_ARGS)

clean:
	$(CARGO) clean
	rm -rf web/dist dist
