#!/usr/bin/env python3
"""Summary of bench/os-phase.sh: a Markdown table with the ratios, and the idempotence
and equivalence checks. Usage: os-phase-summary.py RESULTS_DIR"""
import collections
import json
import pathlib
import re
import sys

results = pathlib.Path(sys.argv[1])


def timing(name):
    path = results / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["results"][0]


def fmt(r):
    if r is None:
        return "—"
    if len(r["times"]) == 1:
        return f"{r['mean']:.2f} s"
    return f"{r['mean']:.2f} s ± {r['stddev']:.2f} (min {r['min']:.2f}, max {r['max']:.2f}, n={len(r['times'])})"


def statuses(report_path):
    """Step statuses of a metalk8s JSON report, counted; None when absent/unreadable."""
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return None
    counts = collections.Counter()
    for phase in report.get("phases", []):
        for host in phase.get("hosts", []):
            if host.get("error"):
                counts["host error"] += 1
            for step in host.get("steps", []):
                outcome = step.get("outcome", step)
                counts[outcome.get("status", "?")] += 1
    return counts


def recap(path):
    """changed= and failed= totals of an ansible-playbook PLAY RECAP."""
    try:
        text = path.read_text()
    except OSError:
        return None
    rows = re.findall(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", text, re.M)
    if not rows:
        return None
    return {
        "hosts": len(rows),
        "changed": sum(int(r[1]) for r in rows),
        "unreachable": sum(int(r[2]) for r in rows),
        "failed": sum(int(r[3]) for r in rows),
    }


lines = [
    "| nodes | tool | first run | no-op re-run |",
    "|---:|---|---:|---:|",
]
ratios = []
checks = []
for nodes in (3, 10):
    m_first, m_noop = timing(f"os-{nodes}-metalk8s-first"), timing(f"os-{nodes}-metalk8s-noop")
    a_first, a_noop = timing(f"os-{nodes}-ansible-first"), timing(f"os-{nodes}-ansible-noop")
    if not any((m_first, m_noop, a_first, a_noop)):
        continue
    lines.append(f"| {nodes} | metalk8s | {fmt(m_first)} | {fmt(m_noop)} |")
    lines.append(f"| {nodes} | Ansible | {fmt(a_first)} | {fmt(a_noop)} |")
    first = a_first["mean"] / m_first["mean"] if a_first and m_first else None
    noop = a_noop["mean"] / m_noop["mean"] if a_noop and m_noop else None
    ratios.append((nodes, first, noop, m_noop))

    s = statuses(results / f"os-{nodes}-metalk8s-noop-report.json")
    checks.append(f"- {nodes} nodes, metalk8s no-op re-run report: {dict(s) if s is not None else 'missing'}")
    r = recap(results / f"os-{nodes}-ansible-noop-output.txt")
    checks.append(f"- {nodes} nodes, Ansible no-op re-run recap: {r if r else 'missing'}")
    r = recap(results / f"os-{nodes}-ansible-after-metalk8s.txt")
    checks.append(f"- {nodes} nodes, Ansible run on the lab metalk8s converged: {r if r else 'missing'}")
    s = statuses(results / f"os-{nodes}-metalk8s-dry-run-after-ansible.json")
    checks.append(f"- {nodes} nodes, metalk8s dry run on the lab Ansible converged: {dict(s) if s is not None else 'missing'}")

print("\n".join(lines))
print()
print("| nodes | first run: Ansible / metalk8s | no-op re-run: Ansible / metalk8s |")
print("|---:|---:|---:|")
for nodes, first, noop, _ in ratios:
    f = f"{first:.1f}×" if first else "—"
    n = f"{noop:.1f}×" if noop else "—"
    print(f"| {nodes} | {f} | {n} |")
print()
print("Targets:")
for nodes, first, noop, m_noop in ratios:
    if first:
        print(f"- {nodes} nodes, first run ≥ 3× faster: {'met' if first >= 3 else 'MISSED'} ({first:.1f}×)")
    if noop:
        print(f"- {nodes} nodes, no-op re-run ≥ 15× faster: {'met' if noop >= 15 else 'MISSED'} ({noop:.1f}×)")
    if nodes == 10 and m_noop:
        ok = m_noop["mean"] < 1.0
        print(f"- 10 nodes, no-op re-run < 1 s: {'met' if ok else 'MISSED'} ({m_noop['mean']:.3f} s)")
print()
print("Checks (no-op means nothing changed; each tool finds nothing to do after the other):")
print("\n".join(checks))
