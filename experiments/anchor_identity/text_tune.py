"""Text-route settings for the world's smile and head turn, re-chosen on validation faces (session 5).

Each config (JSON list of `world_text_settings` changes) runs `world_text_motion` from the preset's seed and is
added at strength 1 to 50 encoded neutral renders of seeds 200 (validation), 100 and 300 (test).
Run (GPU): PYTHONPATH=src python experiments/anchor_identity/text_tune.py OUT.jsonl smile '[{"steps": 100}]'
Results: text_settings.jsonl and README.md beside this file. Research code, not part of the package.
"""
import json, sys, itertools, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings, world_text_motion
from micromotion.evaluate import starting_latents, read_edits, summarize
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100, 300)}
name = sys.argv[2]; p = PRESETS[name]
grid = json.loads(sys.argv[3])
with open(sys.argv[1], "a") as fh:
    for cfg in grid:
        st = world_text_settings(p.factor, **cfg)
        m = world_text_motion(G, clip, p.template, seed=p.seed, settings=st, cache=False)
        row = dict(name=name, cfg=cfg)
        for s, ws in SETS.items():
            r = summarize(read_edits(G, m, ws, [0, 1], batch_size=50), p.factor, [0, 1])
            row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
        fh.write(json.dumps(row) + "\n"); fh.flush()
