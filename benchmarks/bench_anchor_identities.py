"""Motions as users make them (issue 25): from anchor faces nobody chose, one face or several, measured.

K motions from single anchor identities and K from N identities each (the shared motion, `Anchors.concat` ->
`Motion.from_anchors`), all transferred to the same unseen faces at strength 1; reported as the median and the
10th percentile of success and of drift over the K motions (not the best). World model: world clips of random
identities (seeds drawn from --pool-seed, never looked at), inverted with the world encoder, read by the oracle
on 50 neutral renders of --faces-seed inverted with the encoder (as `micromotion evaluate --faces renders`).
The N-identity motions use the same clips as the singles and more: identity pool[N*i : N*i+N] for motion i,
the singles pool[0..K-1] (with --all-singles every identity of the pool).

--route text: each identity's anchors as `micromotion extract --text TEMPLATE --seed SEED` makes them on the
world (the preset's template, the world profile's settings for it, re-inverted with the world encoder:
`text_motion.text_motion_anchors` with the profile's defaults), the same pool seeds as start faces (z from the
seed, as `--seed` does: the generator's faces, not the renderer's identities the video route draws with the
same seeds); the shared motions join N of them as `extract --text --identities N` does (`Anchors.concat`).

    python benchmarks/bench_anchor_identities.py --motion smile --k 10 --n 3 [--route text] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

BAR_P10_SUCCESS, BAR_DRIFT = 0.8, 0.1


def quantile(xs, q):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--motion", default="smile", help="world factor: smile, head_turn, anger, age, eyes_closed")
    ap.add_argument("--k", type=int, default=10, help="motions per kind")
    ap.add_argument("--n", type=int, default=3, help="identities per shared motion")
    ap.add_argument("--pool-seed", type=int, default=2027, help="draws the anchor identities")
    ap.add_argument("--faces-seed", type=int, default=100)
    ap.add_argument("--identities", type=int, default=50, help="unseen faces")
    ap.add_argument("--route", choices=["video", "text"], default="video", help="how each identity's anchors are made")
    ap.add_argument("--anchors-cache", help="text: cache folder of text anchors [default: the library's]")
    ap.add_argument("--all-singles", action="store_true", help="a single motion from every identity of the pool "
                    "(K * N), not only the first K")
    ap.add_argument("--save", help="folder to write each identity's anchors and each motion to (.safetensors)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    a = ap.parse_args()

    from micromotion.anchors import Anchors
    from micromotion.decompose import Motion, anchor_stability
    from micromotion.evaluate import evaluate_motions, starting_latents
    from micromotion.generators import load_generator
    from micromotion.presets import PRESETS, canonical
    from micromotion.text_motion import text_motion_anchors
    from micromotion.world.recipes import world_video_anchors

    name = canonical(a.motion)  # the preset name, from which evaluate reads the target factor
    G = load_generator("world", device=a.device)
    pool = torch.randperm(100_000, generator=torch.Generator().manual_seed(a.pool_seed))[: a.k * a.n].tolist()
    t0 = time.perf_counter()
    anchors = {}
    for i, seed in enumerate(pool):
        if a.route == "video":
            anchors[seed] = world_video_anchors(G, a.motion, seed=seed)
        else:
            anchors[seed] = text_motion_anchors(G, PRESETS[name].template, seed=seed, cache_dir=a.anchors_cache)
        print(f"anchors {i + 1}/{len(pool)} (seed {seed}) {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)
    motions, stability = {}, {}
    for i in range(len(pool) if a.all_singles else a.k):
        key = f"single/{pool[i]}"
        motions[key] = Motion.from_anchors(anchors[pool[i]], generator=G, name=name)
        stability[key] = anchor_stability(anchors[pool[i]])["min_cosine"]
    for i in range(a.k):
        group = pool[a.n * i: a.n * i + a.n]
        key = f"shared/{'+'.join(map(str, group))}"
        joined = Anchors.concat([anchors[s] for s in group])
        motions[key] = Motion.from_anchors(joined, generator=G, name=name)
        stability[key] = anchor_stability(joined)["min_cosine"]
    if a.save:
        save = Path(a.save)
        save.mkdir(parents=True, exist_ok=True)
        for seed, anc in anchors.items():
            anc.save(save / f"anchors-{a.route}-{a.motion}-{seed}.safetensors")
        for key, m in motions.items():
            m.save(save / f"motion-{a.route}-{a.motion}-{key.replace('/', '-')}.safetensors")
    ws = starting_latents(G, a.identities, a.faces_seed, 0, 16, False, "renders")
    reports = evaluate_motions(G, motions, identities=a.identities, seed=a.faces_seed, strengths=[0.0, 1.0], ws=ws)
    out = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "device": a.device, "route": a.route,
           "cpu": platform.processor() or platform.machine(), "args": vars(a), "pool": pool, "kinds": {},
           "motions": {k: {"success": r["target_success_rate"], "drift": r["nontarget_drift_mean"],
                           "change": r["target_change_mean"], "stability": stability[k]}
                       for k, r in reports.items()}}
    for kind in ("single", "shared"):
        rows = [v for k, v in out["motions"].items() if k.startswith(kind + "/")]
        succ, drift = [r["success"] for r in rows], [r["drift"] for r in rows]
        out["kinds"][kind] = {"success_median": statistics.median(succ), "success_p10": quantile(succ, 0.1),
                              "drift_median": statistics.median(drift), "drift_p90": quantile(drift, 0.9),
                              "meets_bar": quantile(succ, 0.1) >= BAR_P10_SUCCESS and quantile(drift, 0.9) <= BAR_DRIFT}
    for k, v in out["motions"].items():
        print(f"{k:28s} change {v['change']:+.3f} success {100 * v['success']:5.1f} % drift {v['drift']:.3f} "
              f"stability {v['stability']:.3f}")
    rows = list(out["motions"].values())
    if len(rows) > 2:  # does the leave-one-out stability tell a motion that transfers from one that does not?
        def ranks(xs):  # average ranks for ties
            return [sum(y < x for y in xs) + (sum(y == x for y in xs) - 1) / 2 for x in xs]
        st, su = [r["stability"] for r in rows], [r["success"] for r in rows]
        out["spearman_stability_success"] = (statistics.correlation(ranks(st), ranks(su))
                                             if len(set(st)) > 1 and len(set(su)) > 1 else None)
        print(f"Spearman(stability, success) over all motions: {out['spearman_stability_success']}")
    for kind, v in out["kinds"].items():
        print(f"{kind}: success median {100 * v['success_median']:.0f} %, p10 {100 * v['success_p10']:.0f} %; "
              f"drift median {v['drift_median']:.3f}, p90 {v['drift_p90']:.3f}; "
              f"bar (success p10 >= 80 %, drift p90 <= 0.1): "
              f"{'met' if v['meets_bar'] else 'not met'}")
    print(f"{time.perf_counter() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
