"""Text-route sweep on the world (issue 10): can text anchors from the world CLIP give motions that transfer?

Each config runs the paper's text-anchor optimization (11 degrees of the preset's template, one identity)
with a variation, decodes the anchors with robust PCA, adds the motion at strength 1 to NID (default 50)
unseen encoded neutral renders (seed 100) and reads the oracle: change of the target factor and drift of the
others, in fractions of each factor's motion range (`evaluate.motion_range`; configs_1/2 were measured before
that change, in signed-range units, which halves head turn's change and doubles nothing else).

Variations (keyword arguments of `run`): space "wplus" | "w" (one offset for every layer) | "pca" with k
components of the W distribution (k < 0: per layer); aug (random affine + noise copies, averaged: EOT); lr,
l2, steps; seeds (one offset shared by several identities); loss "logits" | "cosine" | "directional"
(StyleGAN-NADA's); rank of the decomposition; layers [a, b) (only those W+ layers move); blur (CLIP sees the
image downsampled to blur² and back); cj (colour jitter); idp (weight of a CLIP identity term keeping the
image's similarity to skin, hair and face-shape prompts); pix (weight of the image-space identity term: mean
squared pixel change from the start image); reenc (anchor images inverted again with the world encoder, refine
projector steps after it); nostart (the start latent left out of the decomposition); direction "endpoints" |
"principal"; trunc (the start's truncation); loss also "softmax" (over the template's degree texts) or
"centered" (cosine to the degree's text minus the degrees' mean). CLIP=path picks another CLIP file.

Run (GPU): PYTHONPATH=src python experiments/text_route/sweep.py experiments/text_route/configs_N.json OUT.jsonl
Results and conclusions: README.md beside this file. Research code, not part of the package.
"""
import sys, os, time, math, json, itertools, torch, torch.nn.functional as F
from micromotion.checkpoint import load_generator
from micromotion.models.clip import Clip
from micromotion.anchors.text import start_latent, get_lr, render_template, DEFAULT_DEGREES, clip_loss
from micromotion.decompose import Motion
from micromotion.evaluate import starting_latents, evaluate_motion, read_edits
from micromotion.world.render import FACTOR_SPECS
from micromotion.presets import PRESETS
from micromotion.world.oracle import measure
dev = "cuda" if torch.cuda.is_available() else "cpu"
G = load_generator("world", device=dev).eval(); clip = Clip.load(os.environ.get("CLIP", "world-clip"), device=dev)
NID = int(os.environ.get("NID", "50"))
WS = starting_latents(G, NID, 100, faces="renders")
with torch.no_grad():
    _W = G.mapping(torch.randn(20000, G.z_dim, generator=torch.Generator().manual_seed(7)).to(dev), truncation_psi=1.0)[:, 0].float()
_mu = _W.mean(0); _U, _S, _V = torch.linalg.svd(_W - _mu, full_matrices=False)
PCS = _V * (_S[:, None] / (_W.shape[0] - 1) ** 0.5)  # rows: components scaled to one std
def metrics(m, factor):
    r = read_edits(G, m, WS, [0, 1])
    ch = {k: (v[:, -1] - v[:, 0]) / (1.0 if k == "head_turn" else FACTOR_SPECS[k].span) for k, v in r.items()}
    t = ch[factor]; sg = 1 if t.mean() >= 0 else -1
    drift = torch.stack([ch[k].abs() for k in ch if k != factor]).mean()
    top = sorted(((round(float(v.mean()),2), k) for k, v in ch.items() if k != factor), key=lambda x: -abs(x[0]))[:3]
    return dict(change=round(float(t.mean()),3), succ=round(float((sg*t >= 0.5).float().mean()),2), drift=round(float(drift),3), top=top)
def augment(img, n, g):
    N = img.shape[0]; out=[]
    for _ in range(n):
        s = 1 + (torch.rand(N,generator=g)-0.5)*0.2
        t = (torch.rand(N,2,generator=g)-0.5)*0.12
        theta = torch.zeros(N,2,3); theta[:,0,0]=s; theta[:,1,1]=s; theta[:,:,2]=t
        grid = F.affine_grid(theta.to(img.device), list(img.shape), align_corners=False)
        o = F.grid_sample(img, grid, padding_mode="reflection", align_corners=False)
        o = o + 0.03*torch.randn(o.shape, generator=g).to(img.device)
        out.append(o)
    return torch.cat(out)
def run(preset, idp=0.0, blur=0, cj=0.0, layers=None, k=0, space="wplus", aug=0, lr=0.03, l2=0.05, steps=40, seeds=None, loss="logits", rank=4, variant=None, pix=0.0, reenc=False, nostart=False, direction="endpoints", refine=0, trunc=0.7):
    p = PRESETS[preset]
    seeds = seeds or [p.seed]
    w0 = torch.stack([start_latent(G, s, trunc) for s in seeds])  # [K, L, D]
    K = len(seeds)
    texts = [render_template(p.template, d) for d in DEFAULT_DEGREES]
    tf = clip.encode_text(texts).detach()
    n = len(texts)
    if space == "pca":
        c = torch.zeros(n, G.num_ws if k < 0 else 1, abs(k), device=dev, requires_grad=True); basis = PCS[:abs(k)]
        opt = torch.optim.Adam([c], lr=lr)
    else:
        d = torch.zeros(n, 1 if space == "w" else G.num_ws, G.w_dim, device=dev, requires_grad=True)
        opt = torch.optim.Adam([d], lr=lr)
    g = torch.Generator().manual_seed(0)
    ls = clip.logit_scale.detach()
    tfk = tf.repeat(K, 1)
    if pix:
        with torch.no_grad():
            img0 = G.synthesis(w0, noise_mode="const").repeat_interleave(n, 0)
    if idp:
        from micromotion.world.captions import _SKIN, _HAIR_COLORS
        idtexts = [f"a person with {sk} skin" for sk in _SKIN] + [f"a person with {c} hair" for c in _HAIR_COLORS + ["gray"]] + \
            ["a person with a narrow face", "a person with a wide face", "a person with a short face", "a person with a long face",
             "a person with a pointed chin", "a person with a square jaw", "a person wearing glasses", "a person without glasses"]
        idf = clip.encode_text(idtexts).detach()
        with torch.no_grad():
            s0 = clip.encode_image(G.synthesis(w0, noise_mode="const")) @ idf.t()  # [K, J]
        s0 = s0.repeat_interleave(n, 0)
    for i in range(steps):
        opt.param_groups[0]["lr"] = get_lr(i/steps, lr)
        if space == "pca": d = c @ basis
        if layers is not None:
            msk = torch.zeros(1, G.num_ws, 1, device=dev); msk[:, layers[0]:layers[1]] = 1; d_eff = d * msk
        else: d_eff = d
        w = (w0[:, None] + d_eff[None]).reshape(K*n, G.num_ws, G.w_dim)
        img = G.synthesis(w, noise_mode="const")
        if blur:
            img = F.interpolate(F.interpolate(img, size=blur, mode="area"), size=img.shape[-1], mode="bilinear", align_corners=False)
        if cj:
            img = img * (1 + cj * (torch.rand(img.shape[0], 3, 1, 1, generator=g) - 0.5).to(dev)) + cj * (torch.rand(img.shape[0], 3, 1, 1, generator=g) - 0.5).to(dev)
        if aug:
            f = clip.encode_image(augment(img, aug, g)).view(aug, K*n, -1).mean(0); f = F.normalize(f, dim=-1)
        else:
            f = clip.encode_image(img)
        if loss == "directional":
            if i == 0:
                with torch.no_grad():
                    f0 = clip.encode_image(G.synthesis(w0, noise_mode="const")).repeat_interleave(n, 0) if not aug else None
                tdir = F.normalize(tf - tf.mean(0, keepdim=True), dim=-1).repeat(K, 1)
            df = f - (f0 if f0 is not None else f.detach()*0)
            cl = (1 - (F.normalize(df, dim=-1) * tdir).sum(-1)).view(K, n).mean(0)
        elif loss == "softmax":  # each degree's text against all the template's degrees (zero-shot classification)
            cl = F.cross_entropy(ls * f @ tf.t(), torch.arange(n, device=dev).repeat(K), reduction="none").view(K, n).mean(0)
        elif loss == "centered":  # cosine to the degree's text minus the mean of the degrees' texts
            tc = tf - tf.mean(0, keepdim=True)
            cl = (1 - (f * tc.repeat(K, 1)).sum(-1) / tc.norm(dim=-1).repeat(K)).view(K, n).mean(0)
        else:
            cl = clip_loss(f, tfk, ls, loss).view(K, n).mean(0)
        if idp:
            sid = (F.normalize(clip.encode_image(img) if aug or blur or cj else f, dim=-1) @ idf.t())
            cl = cl + idp * (sid - s0).square().sum(-1).view(K, n).mean(0)
        lossv = cl + l2*d_eff.expand(n, G.num_ws, G.w_dim).square().sum((1,2))
        if pix:
            lossv = lossv + pix * (img - img0).square().mean((1, 2, 3)).view(K, n).mean(0)
        opt.zero_grad(); lossv.sum().backward(); opt.step()
    if space == "pca": d = c @ basis
    if layers is not None:
        msk = torch.zeros(1, G.num_ws, 1, device=dev); msk[:, layers[0]:layers[1]] = 1; d = d * msk
    dd = d.detach().expand(n, G.num_ws, G.w_dim)
    A = torch.cat([w0[0][None], w0[0][None] + dd])
    with torch.no_grad():
        r = measure(G.synthesis(A).float().clamp(-1,1))[p.factor]
    if reenc:  # the anchor images inverted again with the world encoder, as video frames are
        from micromotion.invert import METHODS
        with torch.no_grad():
            imgs = G.synthesis(A, noise_mode="const").clamp(-1, 1)
        with torch.enable_grad():
            A = METHODS["encoder"](G, imgs, progress=False, refine_steps=refine).ws.detach()
        with torch.no_grad():
            r = measure(G.synthesis(A).float().clamp(-1,1))[p.factor]
    if nostart:
        A = A[1:]; r = torch.cat([r[:1], r])
    m = Motion.from_anchors(A.cpu(), generator=G, generator_name="world", name=preset, rank=rank, direction=direction, **({"variant": variant} if variant else {}))
    rep = metrics(m, p.factor)
    return dict(preset=preset, space=space, aug=aug, lr=lr, l2=l2, steps=steps, seeds=seeds, loss=loss,
                own=[round(float(x),2) for x in r[[0,1,6,11]]], dnorm=round(float(m.direction.norm()),2),
                k=k, rank=rank, idp=idp, blur=blur, cj=cj, layers=layers, pix=pix, reenc=reenc, nostart=nostart, direction=direction, refine=refine, trunc=trunc, lnorm=[round(float(x),1) for x in (A[-1]-A[1]).norm(dim=-1)], **rep)
if __name__ == "__main__":
    cfgs = json.load(open(sys.argv[1]))
    out = open(sys.argv[2], "a")
    for cfg in cfgs:
        t=time.time()
        try: r = run(**cfg)
        except Exception as e: r = dict(cfg=cfg, error=repr(e))
        r["s"]=round(time.time()-t,1); print(json.dumps(r), flush=True); out.write(json.dumps(r)+"\n"); out.flush()
