"""Anchor-identity sweep on the world (issue 10): how much does the clip's (or the text start's) identity matter?

For each identity seed, the world preset recipe (`world.presets.world_video_motion` or `world_text_motion`,
shipped settings) makes a motion of one identity; it is added at strength 1 to three sets of 50 unseen neutral
renders inverted with the world encoder: seed 200 (validation: the only set used to choose
`world.presets.VIDEO_SEEDS`) and seeds 100 and 300 (test). Each row: target change, success rate and
non-target drift per set (`evaluate.summarize`).

Run (GPU): PYTHONPATH=src python experiments/anchor_identity/sweep.py video|text OUT.jsonl FIRST END NAMES
(seeds FIRST..END-1, NAMES comma-separated preset names; VARIANTS='[{...}]' adds keyword variations).
Research code, not part of the package; results and the choice: README.md beside this file.
"""
import sys, os, json, time, torch
from micromotion.checkpoint import load_generator
from micromotion.evaluate import starting_latents, read_edits, summarize
from micromotion.presets import PRESETS
from micromotion.world.presets import world_video_motion, world_text_motion
from micromotion.models.clip import Clip
dev = "cuda" if torch.cuda.is_available() else "cpu"
G = load_generator("world", device=dev).eval()
mode, out = sys.argv[1], sys.argv[2]
seeds = range(int(sys.argv[3]), int(sys.argv[4]))
names = sys.argv[5].split(",")
NID = int(os.environ.get("NID", "50"))
SETS = {s: starting_latents(G, NID, s, faces="renders") for s in (200, 100, 300)}
clip = Clip.load("world-clip", device=dev) if mode == "text" else None
variants = json.loads(os.environ.get("VARIANTS", "[{}]"))
def met(m, f, ws):
    r = summarize(read_edits(G, m, ws, [0, 1], batch_size=64), f, [0, 1])
    return {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
with open(out, "a") as fh:
    for name in names:
        p = PRESETS[name]
        for seed in seeds:
            for v in variants:
                t0 = time.time()
                try:
                    if mode == "video":
                        m = world_video_motion(G, p.factor, seed=seed, **v)
                    else:
                        m = world_text_motion(G, clip, p.template, seed=seed, cache=False, progress=False, **v)
                except Exception as e:
                    fh.write(json.dumps(dict(mode=mode, name=name, seed=seed, v=v, error=str(e)[:200])) + "\n"); continue
                row = dict(mode=mode, name=name, seed=seed, v=v, s=round(time.time() - t0, 1))
                for s, ws in SETS.items():
                    row[str(s)] = met(m, p.factor, ws)
                fh.write(json.dumps(row) + "\n"); fh.flush()
