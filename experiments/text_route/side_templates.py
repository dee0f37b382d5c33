"""Sweep 18: Head turn with the side named ('... turned to the right / left', captions the world CLIP was trained on),
start seeds 1-9 (issue 10, session 6; H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/side_templates.py OUT.jsonl FACTOR TEMPLATE CONFIGS_JSON
Results and what they show: README.md beside this file. Research code, not part of the package.
"""
import json, sys, time, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.world.presets import world_text_settings, world_text_motion
from micromotion.evaluate import starting_latents, read_edits, summarize
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100, 300)}
out, factor, template = sys.argv[1], sys.argv[2], sys.argv[3]
for cfg in json.loads(sys.argv[4]):
    cfg = dict(cfg); seed = cfg.pop("seed", 1)
    st = world_text_settings(factor, **cfg)
    t0 = time.time()
    m = world_text_motion(G, clip, template, seed=seed, settings=st, cache=False)
    row = dict(factor=factor, template=template, seed=seed, cfg=cfg, secs=round(time.time() - t0, 1))
    for s, ws in SETS.items():
        r = summarize(read_edits(G, m, ws, [0, 1], batch_size=50), factor, [0, 1])
        row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
    with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
