"""Sweep 14: Several restarts of one text route (the start jittered by J * N(0, 1)), each re-inverted; single runs, the
mean of k re-inverted restarts (invmeank) and the re-inverted mean of the raw optimized latents (rawmean8) (issue
10, session 6; H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/restarts.py OUT.jsonl NAME J PRECISION R
Results and what they show: README.md beside this file. Research code, not part of the package.
"""
import json, sys, time, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings
from micromotion.anchors import Anchors
from micromotion.anchors.text import optimize_latents, start_latent, render_template, DEFAULT_DEGREES, reinvert_anchors
from micromotion.decompose import Motion
from micromotion.evaluate import starting_latents, read_edits, summarize
out, name, J, P, R = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
extra = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
G = load_generator("world", device="cuda").eval(); clip = Clip.load("world-clip", device="cuda")
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100, 300)}
p = PRESETS[name]; st = world_text_settings(p.factor, precision=P, **extra)
texts = [render_template(p.template, d) for d in DEFAULT_DEGREES]
w0 = start_latent(G, p.seed, st.truncation)
raw, inv = [], []
for r in range(R):
    eps = torch.randn(tuple(w0.shape), generator=torch.Generator().manual_seed(1000 + r)).to(w0.device)
    wr = w0 + (J * eps if r else 0)
    ws, _ = optimize_latents(G, clip, texts, wr, st, None, progress=False)
    a = Anchors(torch.cat([w0[None], ws]).float().cpu(), ["start", *DEFAULT_DEGREES], {"kind": "text", "settings": st.to_dict()})
    raw.append(ws.float().cpu()); inv.append(reinvert_anchors(G, a, "encoder").latents)
def ev(lat, tag):
    m = Motion.from_anchors(Anchors(lat, list(DEFAULT_DEGREES), {"kind": "text"}), generator=G, generator_name="world", name=name)
    row = dict(name=name, J=J, P=P, extra=extra, tag=tag)
    for s, ws in SETS.items():
        rr = summarize(read_edits(G, m, ws, [0, 1], batch_size=50), p.factor, [0, 1])
        row[str(s)] = {k: round(rr[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
    with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
for r in range(R): ev(inv[r], f"single{r}")
for k in (2, 4, 8, 16):
    if k <= R: ev(torch.stack(inv[:k]).mean(0), f"invmean{k}")
a = Anchors(torch.cat([w0[None].cpu(), torch.stack(raw).mean(0)]), ["start", *DEFAULT_DEGREES], {"kind": "text", "settings": st.to_dict()})
ev(reinvert_anchors(G, a, "encoder").latents, f"rawmean{R}")
