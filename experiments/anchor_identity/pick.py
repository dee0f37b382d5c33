"""The choice of `world.presets.VIDEO_SEEDS` from the sweep's rows, on validation faces only (seed 200).

python experiments/anchor_identity/pick.py experiments/anchor_identity/video_*.jsonl
Margin to the issue-10 bar: min(success - 0.9, 5 (0.1 - drift)); ties go to the lower drift. Prints the chosen
seed and seed 1 (the original code's default identity) on validation and both test sets.
"""
import json
import sys


def fmt(d):
    return f"{d['target_change_mean']:+.2f} {d['target_success_rate'] * 100:3.0f}% {d['nontarget_drift_mean']:.3f}"


def margin(d):
    return min(d["target_success_rate"] - 0.9, 5 * (0.1 - d["nontarget_drift_mean"]))


for path in sys.argv[1:]:
    rows = [r for r in map(json.loads, open(path)) if "error" not in r]
    best = max(rows, key=lambda r: (round(margin(r["200"]), 4), -r["200"]["nontarget_drift_mean"]))
    for tag, r in (("seed 1", next(r for r in rows if r["seed"] == 1)), ("chosen", best)):
        print(f"{r['mode']:5} {r['name']:10} {tag:6} {r['seed']:3} | val {fmt(r['200'])} | test 100 {fmt(r['100'])}"
              f" | test 300 {fmt(r['300'])}")
