"""Per-factor mean |change| on 50 validation faces, text vs video smile and head turn (drift_breakdown.json) (issue 10,
session 6; H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/drift_breakdown.py OUT.json
Results and what they show: README.md beside this file. Research code, not part of the package.
"""
import json, sys, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_motion, world_video_motion
from micromotion.evaluate import starting_latents, read_edits, motion_range
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
ws = starting_latents(G, 50, 200, faces="renders")
out = {}
for n in ("smile", "head_turn"):
    p = PRESETS[n]
    for route in ("text", "video"):
        m = world_text_motion(G, clip, p.template, seed=p.seed, cache=False) if route == "text" else world_video_motion(G, p.factor)
        rd = read_edits(G, m, ws, [0, 1], batch_size=50)
        out[f"{n}-{route}"] = {k: round(float(((v[:, -1] - v[:, 0]) / motion_range(k)).abs().mean()), 3) for k, v in rd.items()}
        print(n, route, out[f"{n}-{route}"], flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
