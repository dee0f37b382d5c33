"""Sweep 19: Anchors on one line, w_k = w0 + t_k d: one direction d optimized for all degrees at once (t_k fixed at the
degree, or learned with learn_t) (issue 10, session 6; H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/line.py OUT.jsonl NAME CONFIGS_JSON
Results and what they show: README.md beside this file. Research code, not part of the package.
"""
import json, sys, time, torch
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.presets import PRESETS
from micromotion.world.presets import world_text_settings
from micromotion.anchors import Anchors
from micromotion.anchors.text import start_latent, render_template, DEFAULT_DEGREES, reinvert_anchors, get_lr, clip_loss, _autocast
from micromotion.decompose import Motion
from micromotion.evaluate import starting_latents, read_edits, summarize
out, name = sys.argv[1], sys.argv[2]
dev = torch.device("cuda")
G = load_generator("world", device="cuda").eval().requires_grad_(False); clip = Clip.load("world-clip", device="cuda")
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100, 300)}
p = PRESETS[name]
texts = [render_template(p.template, d) for d in DEFAULT_DEGREES]
t_fixed = torch.linspace(0, 1, len(texts), device=dev)

def run(st, learn_t, seed, reinv):
    w0 = start_latent(G, seed, st.truncation)
    with torch.no_grad(), _autocast(dev, st.precision):
        tf = clip.encode_text(texts); img0 = G.synthesis(w0[None], noise_mode="const").float()
    ls = clip.logit_scale.detach()
    d = torch.zeros_like(w0, requires_grad=True); t = t_fixed.clone().requires_grad_(learn_t)
    opt = torch.optim.Adam([d] + ([t] if learn_t else []), lr=st.lr)
    for i in range(st.steps):
        opt.param_groups[0]["lr"] = get_lr(i / st.steps, st.lr, st.lr_rampdown, st.lr_rampup)
        opt.zero_grad()
        w = w0 + t[:, None, None] * d
        with _autocast(dev, st.precision):
            img = G.synthesis(w, noise_mode="const")
            per = clip_loss(clip.encode_image(img, st.clip_preprocess), tf, ls, st.clip_loss)
        per = per + st.image_lambda * (img.float() - img0).square().mean((1, 2, 3)) + st.l2_lambda * (w - w0).square().sum((1, 2))
        per.sum().backward(); opt.step()
    w = (w0 + t[:, None, None] * d).detach()
    a = Anchors(torch.cat([w0[None], w]).float().cpu(), ["start", *DEFAULT_DEGREES], {"kind": "text", "settings": st.to_dict()})
    return reinvert_anchors(G, a, "encoder") if reinv else Anchors(w.float().cpu(), list(DEFAULT_DEGREES), {"kind": "text"}), d.norm().item()

for cfg in json.loads(sys.argv[3]):
    cfg = dict(cfg); learn_t = cfg.pop("learn_t", False); seed = cfg.pop("seed", 1); reinv = cfg.pop("reinv", True)
    st = world_text_settings(p.factor, **cfg)
    t0 = time.time(); a, dn = run(st, learn_t, seed, reinv)
    m = Motion.from_anchors(a, generator=G, generator_name="world", name=name)
    row = dict(name=name, cfg=cfg, learn_t=learn_t, seed=seed, reinv=reinv, dnorm=round(dn, 2), secs=round(time.time() - t0, 1))
    for s, wsx in SETS.items():
        r = summarize(read_edits(G, m, wsx, [0, 1], batch_size=50), p.factor, [0, 1])
        row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean")}
    with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
