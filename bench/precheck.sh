#!/usr/bin/env bash
# Wall time of `metalk8s precheck` on 3 and 10 lab nodes (each with 2 spare disks).
# Usage: bash bench/precheck.sh   (root, docker running; installs hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >&2
cargo build --release --bin metalk8s
metalk8s=$PWD/target/release/metalk8s
for nodes in 3 10; do
  lab=bench$nodes
  $metalk8s lab up --name "$lab" --nodes "$nodes" >/dev/null
  inventory=$($metalk8s lab inventory --name "$lab")
  hyperfine --warmup 1 --runs 10 --export-markdown "bench/precheck-$nodes.md" \
    -n "precheck, $nodes nodes" "$metalk8s precheck -i $inventory -o json"
  $metalk8s lab down --name "$lab"
done
