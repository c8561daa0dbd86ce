#!/usr/bin/env bash
# Bounded fuzz runs of every target: tests/fuzz/run.sh [SECONDS_PER_TARGET] (default 10).
# `make test` runs a short smoke (5 s each); `make fuzz` runs FUZZ_SECONDS each.
#
# Runs on the stable toolchain: libfuzzer-sys (its libFuzzer is built from source by its
# build script) and the SanitizerCoverage instrumentation cargo-fuzz would add, passed as
# stable codegen flags (-Cpasses=sancov-module, -Cllvm-args=...). No sanitizer: the code
# is safe Rust, and panics, overflow checks and debug assertions are the findings.
# All targets build in ONE cargo build; each then runs for SECONDS with the committed
# seeds (fuzz/corpus/<target>, read only) plus a scratch corpus in fuzz/target/corpus.
# One JSON line per target is appended to target/reliability/fuzz.jsonl:
#   {"target":..,"execs":..,"secs":..,"crashes":..,"corpus":..,"ts":..}
# Any crash fails the script; the input is kept in fuzz/artifacts/<target>/.
set -euo pipefail
secs="${1:-10}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cargo="${CARGO:-$(command -v cargo || echo "$HOME/.cargo/bin/cargo")}"
rustc="${RUSTC:-$(command -v rustc || echo "$HOME/.cargo/bin/rustc")}"
triple="$("$rustc" -vV | sed -n 's/^host: //p')"
targets=(dhcp_policy dns_request proxy_head catalog_yaml api_bodies pve_decode)
out="$root/target/reliability"
mkdir -p "$out"
cd "$root/fuzz"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# --target keeps the instrumentation off build scripts and proc macros (as cargo-fuzz does).
echo "fuzz: building ${#targets[@]} targets"
nice "$cargo" build --quiet --target "$triple" --bins
bindir="target/$triple/debug"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "artifacts/$t"
  log="$out/fuzz-$t.log"
  echo "fuzz $t for ${secs}s"
  set +e
  "$bindir/$t" "target/corpus/$t" "corpus/$t" -max_total_time="$secs" -max_len=4096 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  took="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)"
  crashes=0
  if [ "$rc" -ne 0 ]; then
    crashes=1
    failed=1
    echo "*** fuzz $t FAILED (exit $rc); input in fuzz/artifacts/$t/, log $log:"
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -n 8 || tail -n 20 "$log"
  fi
  ncorpus="$(find "target/corpus/$t" -type f | wc -l)"
  printf '{"target":"%s","execs":%s,"secs":%s,"crashes":%s,"corpus":%s,"ts":%s}\n' \
    "$t" "${execs:-0}" "${took:-$secs}" "$crashes" "$ncorpus" "$(date +%s)" >>"$out/fuzz.jsonl"
  echo "  $t: ${execs:-0} execs, corpus $ncorpus, crashes $crashes"
done
exit "$failed"
