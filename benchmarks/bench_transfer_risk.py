"""Transfer-risk candidates a user could compute without the oracle (issue 25, item 3), against measured transfer.

Reads what `bench_anchor_identities.py --save DIR --json FILE` wrote (each motion, its anchors, its success and
drift on unseen faces) and computes per motion: the direction's norm; the RMS pixel change of 16 generator samples
(z seed 7, psi 0.7) at strength 1 and of the anchor faces, their ratio and the cosine between the two mean changes;
how much of the direction the encoder gives back when the edited samples are re-encoded (share and cosine); the
cosine of the direction decoded again from the anchor images re-inverted; the world CLIP's directional score toward
the template's highest degree and its image similarity before and after. Then Spearman of each with success and
drift: chosen on the --tune motion's motions, reported on the others.

    python benchmarks/bench_anchor_identities.py --motion head_turn --save S --json ht-video.json   # and others
    python benchmarks/bench_transfer_risk.py --save S ht-video.json ht-text.json sm-video.json ... --tune head_turn
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

CANDIDATES = ["stability", "dnorm", "move_others", "move_self", "ratio", "self_cos", "retention", "retention_cos",
              "reinv_cos", "clip_dir", "clip_id"]


def spearman(a, b):
    def ranks(xs):  # average ranks for ties
        return [sum(y < x for y in xs) + (sum(y == x for y in xs) - 1) / 2 for x in xs]
    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return statistics.correlation(ranks(a), ranks(b))


@torch.no_grad()
def candidates(G, clip, faces, img0, code0, f0, motion, anchors, template):
    from micromotion.anchors import Anchors
    from micromotion.anchors.text import DEFAULT_DEGREES, render_template
    from micromotion.anchors.video import invert_frames
    from micromotion.decompose import Motion

    d = motion.direction.flatten()
    img1 = G.synthesis(motion.apply(faces, [1.0])[0], noise_mode="const")
    diff = (img1 - img0).flatten(1)
    starts = torch.stack([g.latents[0] for g in anchors.groups()])
    dself = (G.synthesis(motion.apply(starts, [1.0])[0], noise_mode="const")
             - G.synthesis(starts, noise_mode="const")).flatten(1)
    move_others, move_self = diff.square().mean(1).sqrt().mean().item(), dself.square().mean(1).sqrt().mean().item()
    dcode = (invert_frames(G, img1, progress=False)[0] - code0).flatten(1)
    again = [Anchors(invert_frames(G, G.synthesis(g.latents, noise_mode="const"), progress=False)[0].cpu(),
                     g.labels, g.source) for g in anchors.groups()]
    again = again[0] if len(again) == 1 else Anchors.concat(again)
    d2 = Motion.from_anchors(again, generator=G, name=motion.meta.name).direction.flatten()
    t = clip.encode_text([render_template(template, DEFAULT_DEGREES[-1]), render_template(template, DEFAULT_DEGREES[0])])
    f1 = clip.encode_image(img1)
    return {"dnorm": d.norm().item(), "move_others": move_others, "move_self": move_self,
            "ratio": move_others / max(move_self, 1e-8),
            "self_cos": F.cosine_similarity(diff.mean(0), dself.mean(0), dim=0).item(),
            "retention": (dcode @ d / d.square().sum()).mean().item(),
            "retention_cos": F.cosine_similarity(dcode, d[None], dim=1).mean().item(),
            "reinv_cos": F.cosine_similarity(d2, d, dim=0).item(),
            "clip_dir": F.cosine_similarity(f1 - f0, F.normalize(t[0] - t[1], dim=0)[None], dim=1).mean().item(),
            "clip_id": F.cosine_similarity(f1, f0, dim=1).mean().item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", help="--json files of bench_anchor_identities.py")
    ap.add_argument("--save", required=True, help="the --save folder of those runs")
    ap.add_argument("--tune", default="head_turn", help="motion whose motions choose the candidate")
    ap.add_argument("--limit", type=int, default=0, help="only the first motions of each file (a quick check)")
    ap.add_argument("--json")
    a = ap.parse_args()

    from micromotion.anchors import Anchors
    from micromotion.anchors.video import invert_frames
    from micromotion.decompose import Motion
    from micromotion.generators import load_generator
    from micromotion.models.clip import Clip
    from micromotion.presets import PRESETS, canonical

    G = load_generator("world")
    clip = Clip.load("world-clip")
    with torch.no_grad():
        faces = G.mapping(torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(7)), 0.7)
        img0 = G.synthesis(faces, noise_mode="const")
        code0, f0 = invert_frames(G, img0, progress=False)[0], clip.encode_image(img0)
    rows = {}
    for path in a.results:
        res = json.loads(Path(path).read_text())
        route, factor = res.get("route", "video"), res["args"]["motion"]
        for key, r in list(res["motions"].items())[: a.limit or None]:
            save = Path(a.save)
            m = Motion.load(save / f"motion-{route}-{factor}-{key.replace('/', '-')}.safetensors")
            parts = [Anchors.load(save / f"anchors-{route}-{factor}-{s}.safetensors") for s in key.split("/")[1].split("+")]
            anchors = parts[0] if len(parts) == 1 else Anchors.concat(parts)
            c = candidates(G, clip, faces, img0, code0, f0, m, anchors, PRESETS[canonical(factor)].template)
            rows[f"{route}/{factor}/{key}"] = {**r, **c}
            print(f"{route}/{factor}/{key}: " + ", ".join(f"{k} {v:.4g}" for k, v in rows[f'{route}/{factor}/{key}'].items()))
    tune = [k for k in rows if f"/{a.tune}/" in k]
    test = [k for k in rows if k not in tune]
    report = {"rows": rows, "spearman": {}}
    for target in ("success", "drift"):
        table = {c: {name: spearman([rows[k][c] for k in ks], [rows[k][target] for k in ks])
                     for name, ks in (("tune", tune), ("test", test))} for c in CANDIDATES}
        pick = max(CANDIDATES, key=lambda c: abs(table[c]["tune"]) if table[c]["tune"] == table[c]["tune"] else -1)
        report["spearman"][target] = {"table": table, "picked": pick}
        print(f"{target}: " + "; ".join(f"{c} {v['tune']:+.2f}/{v['test']:+.2f}" for c, v in table.items()))
        print(f"{target}: picked on {len(tune)} {a.tune} motions: {pick} (tune {table[pick]['tune']:+.2f}, "
              f"test on {len(test)} others {table[pick]['test']:+.2f})")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
