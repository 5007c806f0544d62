#!/usr/bin/env bash
# VIP failover times on a 3-node lab: the lab test crates/metalk8s-kubernetes/tests/proxy_lab.rs
# run with METALK8S_VIP_FAILOVERS=ROUNDS (default 5), each round failing the VIP's holder
# three ways (keepalived stopped, API server unready, haproxy stopped). The table lands in
# bench/results/vip-failover.md, every failover's line and the test's log in
# bench/results/vip-failover.log.
# Usage: bash bench/vip-failover.sh   (root, docker running; knob ROUNDS=5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
table=bench/results/vip-failover.md
log=bench/results/vip-failover.log
mkdir -p bench/results
cargo test -p metalk8s-kubernetes --test proxy_lab --no-run >&2
{
  echo "Command: \`ROUNDS=$rounds bash bench/vip-failover.sh\`"
  echo "Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' plus uncommitted changes')"
  echo "Started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
} >"$table"
METALK8S_VIP_FAILOVERS=$rounds cargo test -p metalk8s-kubernetes --test proxy_lab -- --nocapture \
  >"$log.stdout" 2>"$log"
{
  echo "Ended: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  grep '^|' "$log.stdout"
} >>"$table"
rm "$log.stdout"
cat "$table"
