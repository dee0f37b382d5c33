"""Sweep 15: An upper bound for an identity term: the oracle's identity-factor readings used as the 'ArcFace' of the id
loss (a network the method may not use; only to learn whether any identity term could help) (issue 10, session 6;
H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/oracle_identity.py OUT.jsonl NAME CONFIGS_JSON
Results and what they show: README.md beside this file. Research code, not part of the package.
"""
import json, sys, time, torch, torch.nn.functional as F
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings
from micromotion.world.oracle import load_oracle
from micromotion.world.render import IDENTITY_FACTORS
from micromotion.anchors.text import text_anchors, reinvert_anchors
from micromotion.decompose import Motion
from micromotion.evaluate import starting_latents, read_edits, summarize
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
orc = load_oracle(device="cuda").eval().requires_grad_(False)
idx = [i for i, k in enumerate(orc.cfg.factors) if k in IDENTITY_FACTORS]
class OracleId(torch.nn.Module):
    def __init__(s): super().__init__(); s.o = orc
    def embed(s, img):
        y = s.o(s.o.prepare(img.float()))[:, idx] - 0.5
        return F.normalize(torch.cat([y, torch.ones_like(y[:, :1])], 1), dim=1)
net = OracleId()
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100)}
name = sys.argv[2]; p = PRESETS[name]
for cfg in json.loads(sys.argv[3]):
    st = world_text_settings(p.factor, **cfg)
    a = text_anchors(G, clip, p.template, seed=p.seed, arcface=net if st.id_lambda else None, settings=st, progress=False, cache=False)
    m = Motion.from_anchors(reinvert_anchors(G, a, "encoder"), generator=G, generator_name="world", name=name)
    row = dict(name=name, cfg=cfg)
    for s, ws in SETS.items():
        rd = read_edits(G, m, ws, [0, 1], batch_size=50)
        r = summarize(rd, p.factor, [0, 1])
        row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean", "identity_drift_mean")}
    with open(sys.argv[1], "a") as fh: fh.write(json.dumps(row) + "\n")
