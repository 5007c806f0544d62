#!/usr/bin/env bash
# The OS phase on 3 and 10 lab nodes: `metalk8s deploy --phase os` against the equivalent
# Ansible playbook (bench/ansible/os.yml), first run (each on a freshly re-created lab) and
# no-op re-run. Raw results land in bench/results/, a summary in bench/results/os-phase.md.
#
# Usage: bash bench/os-phase.sh          (root, docker running; installs hyperfine and
#                                          ansible-core into bench/.venv if missing)
# Knobs: NODES="3 10" FIRST_RUNS=2 NOOP_RUNS=10 ANSIBLE_NOOP_RUNS=5
#
# Internal: bash bench/os-phase.sh fresh TOOL NODES  (re-create the lab before a first run)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
metalk8s=$root/target/release/metalk8s
work=$root/bench/.work
results=$root/bench/results
venv=$root/bench/.venv
export ANSIBLE_CONFIG=$root/bench/ansible/ansible.cfg
export ANSIBLE_SSH_CONTROL_PATH_DIR=$work/ssh-control
export ANSIBLE_NOCOLOR=1

lab_name() { echo "benchos$1"; }

# Close Ansible's persisted SSH masters for a lab (they would outlive its containers).
close_masters() {
  local nodes=$1 ip
  [ -d "$ANSIBLE_SSH_CONTROL_PATH_DIR" ] || return 0
  for sock in "$ANSIBLE_SSH_CONTROL_PATH_DIR"/*; do
    [ -S "$sock" ] || continue
    ip=$(basename "$sock"); ip=${ip%-root}
    ssh -o ControlPath="$sock" -O exit "root@$ip" 2>/dev/null || true
  done
  rm -rf "$ANSIBLE_SSH_CONTROL_PATH_DIR"
}

# A brand-new lab (lab up re-creates it from the image), a new metalk8s state directory,
# no SSH master left from the previous lab, the Ansible inventory for it.
fresh() {
  local tool=$1 nodes=$2 lab
  lab=$(lab_name "$nodes")
  close_masters "$nodes"
  mkdir -p "$ANSIBLE_SSH_CONTROL_PATH_DIR"
  rm -rf "$work/state-$lab"
  "$metalk8s" lab up --name "$lab" --nodes "$nodes" >/dev/null
  "$venv/bin/python" bench/ansible/inventory.py \
    "$("$metalk8s" lab inventory --name "$lab")" >"$work/hosts-$lab.yml"
}

if [ "${1:-}" = fresh ]; then
  fresh "$2" "$3"
  exit 0
fi

NODES=${NODES:-"3 10"}
FIRST_RUNS=${FIRST_RUNS:-2}
NOOP_RUNS=${NOOP_RUNS:-10}
ANSIBLE_NOOP_RUNS=${ANSIBLE_NOOP_RUNS:-5}

command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >&2
if [ ! -x "$venv/bin/ansible-playbook" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ansible-core
fi
cargo build --release --bin metalk8s
mkdir -p "$work" "$results"

# Facts about this measurement.
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "metalk8s commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo ' (+ uncommitted changes)')"
  echo "ansible-core: $("$venv/bin/ansible-playbook" --version | head -1)"
  echo "hyperfine: $(hyperfine --version)"
  echo "cpus: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$results/os-phase-env.txt"

self="bash $root/bench/os-phase.sh"
for nodes in $NODES; do
  lab=$(lab_name "$nodes")
  inventory=/var/lib/metalk8s/labs/$lab/inventory.yaml
  state=$work/state-$lab
  deploy="env METALK8S_STATE_DIR=$state $metalk8s deploy -i $inventory --phase os"
  playbook="$venv/bin/ansible-playbook -i $work/hosts-$lab.yml $root/bench/ansible/os.yml"

  # --- metalk8s: first run on a fresh lab each time, then the no-op re-run.
  hyperfine --runs "$FIRST_RUNS" --prepare "$self fresh metalk8s $nodes" \
    --export-json "$results/os-$nodes-metalk8s-first.json" \
    -n "metalk8s first run, $nodes nodes" "$deploy"
  hyperfine --warmup 1 --runs "$NOOP_RUNS" \
    --export-json "$results/os-$nodes-metalk8s-noop.json" \
    -n "metalk8s no-op re-run, $nodes nodes" "$deploy"
  $deploy -o json >"$results/os-$nodes-metalk8s-noop-report.json"
  # Cross-check: the playbook finds nothing to do on what metalk8s converged.
  $playbook >"$results/os-$nodes-ansible-after-metalk8s.txt" 2>&1 || true

  # --- Ansible: the same on a fresh lab.
  hyperfine --runs "$FIRST_RUNS" --prepare "$self fresh ansible $nodes" \
    --export-json "$results/os-$nodes-ansible-first.json" \
    -n "ansible-playbook first run, $nodes nodes" "$playbook"
  hyperfine --warmup 1 --runs "$ANSIBLE_NOOP_RUNS" \
    --export-json "$results/os-$nodes-ansible-noop.json" \
    -n "ansible-playbook no-op re-run, $nodes nodes" "$playbook"
  $playbook >"$results/os-$nodes-ansible-noop-output.txt" 2>&1
  # Cross-check: metalk8s finds nothing to do on what the playbook converged.
  env METALK8S_STATE_DIR="$state" "$metalk8s" deploy -i "$inventory" --phase os --dry-run -o json \
    >"$results/os-$nodes-metalk8s-dry-run-after-ansible.json" || true

  close_masters "$nodes"
  "$metalk8s" lab down --name "$lab"
  rm -rf "$state"
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/os-phase-env.txt"
"$venv/bin/python" bench/os-phase-summary.py "$results" | tee "$results/os-phase.md"
