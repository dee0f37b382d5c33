"""Text head turn with the world CLIP's paraphrase templates ("a head {degree} turned to the side", "a face {degree}
turned to the side"), start faces 1-162; validation (200) and test (100, 300) faces (issue 10, session 6; H100).
Results: text_head_turn_templates.jsonl and README.md beside this file. Research code, not part of the package.

Run (GPU): PYTHONPATH=src python experiments/anchor_identity/text_templates.py OUT.jsonl TEMPLATE FIRST END
"""
import json, sys, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.world.presets import world_text_settings, world_text_motion
from micromotion.evaluate import starting_latents, read_edits, summarize
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100, 300)}
out, template = sys.argv[1], sys.argv[2]
for seed in range(int(sys.argv[3]), int(sys.argv[4])):
    m = world_text_motion(G, clip, template, seed=seed, settings=world_text_settings("head_turn"), cache=False)
    row = dict(mode="text", name="head_turn", template=template, seed=seed)
    for s, ws in SETS.items():
        r = summarize(read_edits(G, m, ws, [0, 1], batch_size=50), "head_turn", [0, 1])
        row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
    with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
