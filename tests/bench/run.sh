#!/usr/bin/env bash
# `make bench`: install the benchmark tools from Debian when missing, then run the harness.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=""
for t in dnsperf:dnsperf perfdhcp:kea-admin wrk:wrk dnsmasq:dnsmasq-base caddy:caddy nginx:nginx-light hey:hey; do
  command -v "${t%%:*}" >/dev/null || need="$need ${t##*:}"
done
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  else
    echo "missing benchmark tools:$need (Debian: apt-get install$need)"; exit 1
  fi
fi
exec python3 tests/bench/bench.py "$@"
