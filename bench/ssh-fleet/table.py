#!/usr/bin/env python3
"""Print one N's results: min/median seconds per tool and scenario, ratios to pyinfra and raw ssh."""
import json
import statistics
import sys
from pathlib import Path

R, N = Path(sys.argv[1]), sys.argv[2]


def load(name):
    p = R / f"{name}.json"
    if not p.exists():
        return None
    times = json.loads(p.read_text())["results"][0]["times"]
    return min(times), statistics.median(times)


raw = load("raw-ssh-true")
print(f"\n### N = {N} hosts (wall-clock seconds; ratio = tend / other, lower is better for tend)\n")
print("| scenario | tend min | tend median | pyinfra median | ansible median | tend/pyinfra (median) | tend/raw floor (median) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for s in ["first", "noop", "onefile"]:
    t, p, a = load(f"tend-{s}"), load(f"pyinfra-{s}"), load(f"ansible-{s}")
    if t is None:
        continue
    fmt = lambda x: f"{x[1]:.2f}" if x else "–"
    vs_p = f"{t[1] / p[1]:.3f} ({p[1] / t[1]:.1f}× faster)" if p else "–"
    vs_raw = f"{t[1] / raw[1]:.2f}" if raw else "–"
    print(f"| {s} | {t[0]:.2f} | {t[1]:.2f} | {fmt(p)} | {fmt(a)} | {vs_p} | {vs_raw} |")
if raw:
    print(f"\nraw floor (N fresh `ssh true` in parallel): min {raw[0]:.2f} s, median {raw[1]:.2f} s")
