"""Sweep 17: The degrees as one path: 'chain' (each degree starts from the previous degree's result; pull to the start
or to the previous one) and 'coupled' (gamma * |w_d - w_(d-1)|^2 between neighbours, the first to the start) (issue
10, session 6; H100).

Run (GPU): PYTHONPATH=src python experiments/text_route/path.py OUT.jsonl NAME CONFIGS_JSON (keys: mode, gamma, steps_next, pull, settings)
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
SETS = {s: starting_latents(G, 50, s, faces="renders") for s in (200, 100)}
p = PRESETS[name]
texts = [render_template(p.template, d) for d in DEFAULT_DEGREES]

def run(st, mode, gamma, steps_next, pull):
    w0 = start_latent(G, p.seed, st.truncation)
    with torch.no_grad(), _autocast(dev, st.precision):
        tf_all = clip.encode_text(texts); img0 = G.synthesis(w0[None], noise_mode="const").float()
    ls = clip.logit_scale.detach()
    def losses(w, tf, anchor, anchor_img):
        with _autocast(dev, st.precision):
            img = G.synthesis(w, noise_mode="const")
            per = clip_loss(clip.encode_image(img, st.clip_preprocess), tf, ls, st.clip_loss)
        per = per + st.image_lambda * (img.float() - anchor_img).square().mean((1, 2, 3))
        return per + st.l2_lambda * (w - anchor).square().sum((1, 2))
    def optimize(w_init, tf, steps, anchor, anchor_img, coupled=False):
        w = w_init.clone().requires_grad_(True); opt = torch.optim.Adam([w], lr=st.lr)
        for i in range(steps):
            opt.param_groups[0]["lr"] = get_lr(i / steps, st.lr, st.lr_rampdown, st.lr_rampup)
            opt.zero_grad(); loss = losses(w, tf, anchor, anchor_img).sum()
            if coupled:
                prev = torch.cat([w0[None], w[:-1]])
                loss = loss + gamma * (w - prev).square().sum()
            loss.backward(); opt.step()
        return w.detach()
    if mode == "independent":
        return optimize(w0.expand(len(texts), -1, -1), tf_all, st.steps, w0, img0), w0
    if mode == "coupled":
        return optimize(w0.expand(len(texts), -1, -1), tf_all, st.steps, w0, img0, coupled=True), w0
    ws, prev = [], w0[None]
    for d in range(len(texts)):
        anchor, aimg = (w0, img0) if pull == "start" else (prev[0], G.synthesis(prev, noise_mode="const").float())
        prev = optimize(prev, tf_all[d:d + 1], st.steps if d == 0 else steps_next, anchor, aimg)
        ws.append(prev)
    return torch.cat(ws), w0

for cfg in json.loads(sys.argv[3]):
    cfg = dict(cfg); mode = cfg.pop("mode"); gamma = cfg.pop("gamma", 0.0); sn = cfg.pop("steps_next", None); pull = cfg.pop("pull", "start")
    st = world_text_settings(p.factor, **cfg); sn = sn or st.steps
    t0 = time.time(); ws, w0 = run(st, mode, gamma, sn, pull)
    a = Anchors(torch.cat([w0[None], ws]).float().cpu(), ["start", *DEFAULT_DEGREES], {"kind": "text", "settings": st.to_dict()})
    m = Motion.from_anchors(reinvert_anchors(G, a, "encoder"), generator=G, generator_name="world", name=name)
    row = dict(name=name, cfg=cfg, mode=mode, gamma=gamma, steps_next=sn, pull=pull, secs=round(time.time() - t0, 1))
    for s, wsx in SETS.items():
        r = summarize(read_edits(G, m, wsx, [0, 1], batch_size=50), p.factor, [0, 1])
        row[str(s)] = {k: round(r[k], 4) for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean", "identity_drift_mean")}
    with open(out, "a") as fh: fh.write(json.dumps(row) + "\n")
