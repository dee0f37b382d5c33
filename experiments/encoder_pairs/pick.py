"""The start faces of `world.presets.VIDEO_SEEDS` / `TEXT_SEEDS` from a sweep's rows, on validation faces only.

python experiments/encoder_pairs/pick.py experiments/encoder_pairs/sweep_C2_*.jsonl
Same rule as experiments/anchor_identity/pick.py: the highest margin to the issue-10 bar,
min(success - 0.9, 5 (0.1 - drift)), on validation (seed 200), ties to the lower drift; rows are grouped by
encoder, route, preset and settings. Prints the choice and seed 1 on validation and both test sets (100, 300),
and how many start faces clear the bar on validation and on all three sets.
"""
import json
import sys


def fmt(d):
    return f"{d['target_change_mean']:+.2f} {d['target_success_rate'] * 100:3.0f}% {d['nontarget_drift_mean']:.3f}"


def margin(d):
    return min(d["target_success_rate"] - 0.9, 5 * (0.1 - d["nontarget_drift_mean"]))


def passes(d):
    return d["target_success_rate"] >= 0.9 and d["nontarget_drift_mean"] <= 0.1


rows = [r for path in sys.argv[1:] for r in map(json.loads, open(path)) if "error" not in r]
groups = {}
for r in rows:
    groups.setdefault((r.get("enc", "?"), r["mode"], r["name"], json.dumps(r["v"], sort_keys=True)), []).append(r)
for (enc, mode, name, v), rr in sorted(groups.items()):
    best = max(rr, key=lambda r: (round(margin(r["200"]), 4), -r["200"]["nontarget_drift_mean"]))
    n_val = sum(passes(r["200"]) for r in rr)
    n_all = sum(all(passes(r[s]) for s in ("200", "100", "300")) for r in rr)
    print(f"{enc} {mode} {name} {v if v != '{}' else ''}: {len(rr)} faces, {n_val} clear validation, {n_all} all three")
    one = [r for r in rr if r["seed"] == 1]
    for tag, r in [("chosen", best)] + [("seed 1", one[0])] * bool(one):
        print(f"  {tag:6} {r['seed']:3} | val {fmt(r['200'])} | test 100 {fmt(r['100'])} | test 300 {fmt(r['300'])}")
