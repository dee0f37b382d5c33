"""Text head turn: anchors once per start face (seeds 1-168), decoded several ways (principal axis, rank 1/2) and
measured on validation (200) and test (100, 300) faces (issue 10, session 6; H100). Results:
text_head_turn_decodings.jsonl and README.md beside this file. Research code, not part of the package.

Run (GPU): PYTHONPATH=src python experiments/anchor_identity/text_decodings.py OUT.jsonl head_turn FIRST END VARIANTS_JSON
"""
import json, sys, time, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings
from micromotion.anchors.text import text_anchors, reinvert_anchors
from micromotion.decompose import Motion
from micromotion.evaluate import starting_latents, read_edits, summarize
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100, 300)}
out, name = sys.argv[1], sys.argv[2]; p = PRESETS[name]
seeds = range(int(sys.argv[3]), int(sys.argv[4]))
VARIANTS = json.loads(sys.argv[5])
for seed in seeds:
    a = text_anchors(G, clip, p.template, seed=seed, arcface=None, settings=world_text_settings(p.factor), progress=False, cache=False)
    re = reinvert_anchors(G, a, "encoder")
    for v in VARIANTS:
        try:
            m = Motion.from_anchors(re, generator=G, generator_name="world", name=name, **v)
        except Exception as e:
            continue
        row = dict(mode="text", name=name, seed=seed, v=v)
        for s, ws in SETS.items():
            r = summarize(read_edits(G, m, ws, [0, 1], batch_size=50), p.factor, [0, 1])
            row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
        with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
