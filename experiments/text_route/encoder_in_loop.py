"""Sweep 16: The encoder in the optimization loop: CLIP sees G(E(G(w))), the image the re-inverted anchor will show
(issue 10, session 6; H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/encoder_in_loop.py OUT.jsonl NAME CONFIGS_JSON (keys: settings, n_iters, proj)
Results and what they show: README.md beside this file. Research code, not part of the package.
"""
import json, sys, time, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings
from micromotion.anchors import Anchors
from micromotion.anchors.text import optimize_latents, start_latent, render_template, DEFAULT_DEGREES, reinvert_anchors
from micromotion.invert import _paired_net
from micromotion.decompose import Motion
from micromotion.evaluate import starting_latents, read_edits, summarize
out, name = sys.argv[1], sys.argv[2]
G = load_generator("world", device="cuda").eval().requires_grad_(False); clip = Clip.load("world-clip", device="cuda")
net = _paired_net(G, "world-encoder"); net.requires_grad_(False)
class ProjG:
    def __init__(s, n): s.n = n
    def __getattr__(s, k): return getattr(G, k)
    def synthesis(s, w, noise_mode="const"):
        x = net.prepare(G.synthesis(w, noise_mode=noise_mode).float().clamp(-1, 1)); n = x.shape[0]
        lat = net.latent_avg.unsqueeze(0).expand(n, -1, -1); y = net.average_image().expand(n, -1, -1, -1)
        for _ in range(s.n):
            lat = lat + net.encoder(torch.cat([x, y], dim=1)); full = G.synthesis(lat, noise_mode="const"); y = net._pool(full)
        return full
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100)}
p = PRESETS[name]
texts = [render_template(p.template, d) for d in DEFAULT_DEGREES]
for cfg in json.loads(sys.argv[3]):
    cfg = dict(cfg); n_it = cfg.pop("n_iters", 3); proj = cfg.pop("proj", True)
    st = world_text_settings(p.factor, **cfg)
    w0 = start_latent(G, p.seed, st.truncation)
    t0 = time.time()
    ws, _ = optimize_latents(ProjG(n_it) if proj else G, clip, texts, w0, st, None, progress=False)
    a = Anchors(torch.cat([w0[None], ws]).float().cpu(), ["start", *DEFAULT_DEGREES], {"kind": "text", "settings": st.to_dict()})
    m = Motion.from_anchors(reinvert_anchors(G, a, "encoder"), generator=G, generator_name="world", name=name)
    row = dict(name=name, cfg=cfg, n_iters=n_it, proj=proj, secs=round(time.time() - t0, 1))
    for s, wsx in SETS.items():
        r = summarize(read_edits(G, m, wsx, [0, 1], batch_size=50), p.factor, [0, 1])
        row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean", "identity_drift_mean")}
    with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
