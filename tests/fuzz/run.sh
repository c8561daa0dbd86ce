#!/usr/bin/env bash
# Bounded fuzz runs of every target: tests/fuzz/run.sh [SECONDS_PER_TARGET] (default 10).
# `make test` runs a short smoke (10 s each); `make fuzz` runs FUZZ_SECONDS each.
# Needs the nightly toolchain; installs cargo-fuzz when missing. Crashes fail the script.
set -euo pipefail
secs="${1:-10}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root/fuzz"
if ! rustup toolchain list 2>/dev/null | grep -q nightly; then
  echo "*** SKIPPED fuzz: no nightly toolchain (rustup toolchain install nightly) ***"; exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"; cargo install cargo-fuzz --locked
fi
# Sanitizer off by default: the code is safe Rust, and this keeps the build small and quick.
san="${FUZZ_SANITIZER:-none}"
for t in dhcp_policy dns_request; do
  echo "fuzz $t for ${secs}s"
  mkdir -p "target/corpus/$t"
  # New inputs go to target/corpus (ignored); the checked-in seeds in corpus/ are read only.
  cargo +nightly fuzz run --dev -s "$san" "$t" "target/corpus/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>&1 | tail -n 12
done
