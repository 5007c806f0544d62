#!/usr/bin/env bash
# A converged cluster re-deployed: `metalk8s deploy` of every phase (os, repository, etcd,
# containerd, from the demo's offline bundle) on 10 and 20 lab nodes, timed once it has
# nothing left to do. The binary of this tree and, when BASELINE names a commit, the one
# built from that commit (or the binary BASELINE_BIN names) run in one hyperfine
# invocation on the same lab.
# Raw results land in bench/results/noop-deploy-N.json, a summary in
# bench/results/noop-deploy.md.
#
# Usage: bash bench/noop-deploy.sh     (root, docker running; installs hyperfine if missing)
# Knobs: NODES="10 20" RUNS=10 BASELINE=<commit> (default: none; built in its own target
# directory) or BASELINE_BIN=<a metalk8s binary built earlier>, named by BASELINE if set
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/bench/.work
results=$root/bench/results
NODES=${NODES:-"10 20"}
RUNS=${RUNS:-10}
BASELINE=${BASELINE:-}
BASELINE_BIN=${BASELINE_BIN:-}

command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >&2
cargo build --release --bin metalk8s
metalk8s=${CARGO_TARGET_DIR:-$root/target}/release/metalk8s
mkdir -p "$work" "$results"

baseline_bin=$BASELINE_BIN
if [ -n "$baseline_bin" ]; then
  BASELINE=${BASELINE:-$baseline_bin}
elif [ -n "$BASELINE" ]; then
  tree=$work/baseline-$BASELINE
  [ -d "$tree" ] || git worktree add --detach "$tree" "$BASELINE" >&2
  (cd "$tree" && CARGO_TARGET_DIR=$work/baseline-target cargo build --release --bin metalk8s >&2)
  baseline_bin=$work/baseline-target/release/metalk8s
fi

# The demo's bundle, built once (packages from deb.debian.org, an image made locally).
bundle=$work/noop-bundle.tar.zst
if [ ! -f "$bundle" ]; then
  image=$(mktemp -d)
  mkdir -p "$image/bin" && cp /bin/busybox "$image/bin/busybox" && ln -s busybox "$image/bin/sh"
  tar -C "$image" -cf "$work/busybox.tar" . && rm -rf "$image"
  docker import "$work/busybox.tar" metalk8s-demo/busybox:1 >/dev/null
  [ -f "$work/bundle.key" ] || "$metalk8s" bundle keygen --out "$work/bundle.key" >"$work/bundle.pub"
  "$metalk8s" bundle build --spec scripts/demo-bundle.yaml --out "$bundle" \
    --signing-key "$work/bundle.key" --force >&2
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "metalk8s commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo ' (+ uncommitted changes)')"
  echo "baseline: ${BASELINE:-none}"
  echo "hyperfine: $(hyperfine --version)"
  echo "cpus: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$results/noop-deploy-env.txt"

for nodes in $NODES; do
  lab=benchnoop$nodes
  state=$work/state-$lab
  rm -rf "$state"
  "$metalk8s" lab up --name "$lab" --nodes "$nodes" >&2
  inventory=$("$metalk8s" lab inventory --name "$lab")
  # Converge: the first deploy stages the bundle and installs everything; a second one
  # must then have nothing to do (checked, not assumed).
  METALK8S_STATE_DIR=$state "$metalk8s" deploy -i "$inventory" \
    --bundle "$bundle" --bundle-key "$work/bundle.pub" >&2
  METALK8S_STATE_DIR=$state "$metalk8s" deploy -i "$inventory" -o json >"$results/noop-deploy-$nodes-report.json"
  if grep -q '"status":"changed"' "$results/noop-deploy-$nodes-report.json"; then
    echo "the cluster of $nodes nodes did not converge; see $results/noop-deploy-$nodes-report.json" >&2
    exit 1
  fi
  commands=(-n "metalk8s $(git rev-parse --short HEAD)"
    "env METALK8S_STATE_DIR=$state $metalk8s deploy -i $inventory")
  if [ -n "$baseline_bin" ]; then
    commands+=(-n "metalk8s $BASELINE" "env METALK8S_STATE_DIR=$state $baseline_bin deploy -i $inventory")
  fi
  hyperfine --warmup 1 --runs "$RUNS" --style basic \
    --export-json "$results/noop-deploy-$nodes.json" "${commands[@]}" >&2
  echo "load after the $nodes-node runs: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/noop-deploy-env.txt"
  "$metalk8s" lab down --name "$lab" >&2
done

python3 - "$results" $NODES <<'EOF' >"$results/noop-deploy.md"
import json, sys
results, nodes = sys.argv[1], sys.argv[2:]
print("| nodes | binary | mean | min | max |")
print("|---:|---|---:|---:|---:|")
for n in nodes:
    for r in json.load(open(f"{results}/noop-deploy-{n}.json"))["results"]:
        print(f"| {n} | {r['command']} | {r['mean']:.3f} s ± {r['stddev']:.3f} | {r['min']:.3f} s | {r['max']:.3f} s |")
EOF
cat "$results/noop-deploy.md"
