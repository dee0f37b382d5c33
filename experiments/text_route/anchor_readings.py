"""The oracle's readings of each degree's anchor image, optimized and re-inverted (anchor_readings.json) (issue 10,
session 6; H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/anchor_readings.py OUTDIR
Results and what they show: README.md beside this file. Research code, not part of the package.
"""
import json, sys, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings
from micromotion.world.oracle import load_oracle, measure
from micromotion.anchors.text import text_anchors, reinvert_anchors
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
orc = load_oracle(device="cuda")
keys = ["smile", "anger", "head_turn", "nose_size", "mouth_width", "eye_spacing", "skin_tone", "age"]
out = {}
for name in ("smile", "head_turn"):
    p = PRESETS[name]
    a = text_anchors(G, clip, p.template, seed=p.seed, arcface=None, settings=world_text_settings(p.factor), progress=False, cache=False)
    b = reinvert_anchors(G, a, "encoder", drop_start=False)
    for tag, lat in (("opt", a.latents), ("reinv", b.latents)):
        with torch.no_grad(): img = G.synthesis(lat.cuda(), noise_mode="const")
        m = measure(img, orc)
        out[f"{name}-{tag}"] = {k: [round(float(v), 2) for v in m[k]] for k in keys}
        torch.save(img.cpu().half(), f"{sys.argv[1]}/{name}-{tag}.pt")
json.dump(out, open(f"{sys.argv[1]}/read.json", "w"), indent=0)
for k, v in out.items():
    print(k); [print("  ", kk.ljust(12), " ".join("%5.2f" % x for x in vv)) for kk, vv in v.items()]
