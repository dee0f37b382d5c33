import json, sys, time, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings, world_text_motion
from micromotion.evaluate import starting_latents, read_edits, summarize
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100, 300)}
out, name = sys.argv[1], sys.argv[2]; p = PRESETS[name]
seeds = [int(x) for x in sys.argv[3].split(",")]; grid = json.loads(sys.argv[4]); reps = int(sys.argv[5])
for seed in seeds:
    for cfg in grid:
        for rep in range(reps):
            m = world_text_motion(G, clip, p.template, seed=seed, settings=world_text_settings(p.factor, **cfg), cache=False)
            row = dict(name=name, seed=seed, cfg=cfg, rep=rep)
            for s, ws in SETS.items():
                r = summarize(read_edits(G, m, ws, [0, 1], batch_size=50), p.factor, [0, 1])
                row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
            with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
