"""`make demo`: the method offline on the face world, with every step measured.

What runs depends on what is shipped:
- always: world clips of the five micromotions (the world's videos) measured by the oracle; robust PCA vs the
  raw endpoint difference on noisy anchors with outliers;
- with the world generator (`data/world/world.safetensors`): the whole method: video anchors (world clips
  inverted into W+) -> robust decomposition -> transfer to unseen identities, measured by the oracle.
The report says plainly which parts ran.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .decompose import Motion, robust_pca
from .render import contact_sheet, save_png, to_uint8, write_frames

log = logging.getLogger(__name__)

TARGET = {"smile": "smile", "angry": "anger", "aging": "age", "eyes_close": "eyes_closed", "head_turn": "head_turn"}


@dataclass
class DemoReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1)))


def rpca_vs_raw(seed: int = 0, K: int = 12, num_ws: int = 18, w_dim: int = 512) -> dict:
    """Anchors = base + t·d + dense noise + 5 % sparse outliers: cosine of each estimate to the true d."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(num_ws, w_dim, generator=g)
    t = torch.linspace(0, 1, K)
    base = torch.randn(num_ws, w_dim, generator=g)
    A = base + t[:, None, None] * d + 0.05 * torch.randn(K, num_ws, w_dim, generator=g)
    mask = torch.rand(K, num_ws, w_dim, generator=g) < 0.05
    A = A + mask * 10 * torch.randn(K, num_ws, w_dim, generator=g)
    raw = A[-1] - A[0]
    m = Motion.from_anchors(A, rank=1)
    paper = Motion.from_anchors(A, rank=1, variant="paper")
    L, S = robust_pca(A.transpose(0, 1))
    return {"cos_raw_endpoints": _cos(raw, d), "cos_rpca_paper_variant": _cos(paper.direction, d),
            "cos_rpca": _cos(m.direction, d), "sparse_fraction_found": float((S.abs() > 1).float().mean())}


def world_clips(out: Path, frames: int, report: DemoReport, seed: int = 1000) -> dict:
    from .world import render_clip, sample_factors
    from .world.oracle import measure

    g = torch.Generator().manual_seed(seed)
    ident = sample_factors(len(TARGET), g, motion="neutral")
    firsts, lasts, out_rows = [], [], {}
    for i, (motion, factor) in enumerate(TARGET.items()):
        imgs, track = render_clip(ident[i:i + 1], factor, frames=frames, generator=g)
        path = write_frames(to_uint8(imgs), out / f"world_clip_{motion}.mp4", fps=12, overwrite=True)
        report.files.append(str(path))
        got = measure(imgs[[0, -1]])[factor]
        true = getattr(track, factor)[[0, -1]]
        out_rows[motion] = {"true_start": float(true[0]), "true_end": float(true[-1]),
                            "oracle_start": float(got[0]), "oracle_end": float(got[-1])}
        firsts.append(to_uint8(imgs[:1])[0])
        lasts.append(to_uint8(imgs[-1:])[0])
    sheet = contact_sheet(np.stack(firsts + lasts), cols=len(TARGET))
    report.files.append(str(save_png(sheet, out / "world_clips_first_last.png")))
    return out_rows


def full_method(G, out: Path, report: DemoReport, identities: int = 4, frames: int = 24, steps: int = 150,
                seed: int = 2000) -> dict:
    """Video anchors from world clips -> motion -> transfer to unseen (inverted) identities, measured."""
    from .invert import project
    from .world import render, render_clip, sample_factors
    from .world.oracle import measure

    dev = G.w_avg.device
    g = torch.Generator().manual_seed(seed)
    R = G.resolution
    results = {}
    unseen = sample_factors(identities, g, motion="neutral")
    targets = torch.nn.functional.interpolate(render(unseen), size=(R, R), mode="area", antialias=False)
    faces = project(G, targets.to(dev), steps=steps, progress=False, seed=seed).ws.detach()
    for motion, factor in TARGET.items():
        anchor_ident = sample_factors(1, g, motion="neutral")
        clip, _ = render_clip(anchor_ident, factor, frames=12, generator=g)
        clip = torch.nn.functional.interpolate(clip, size=(R, R), mode="area")
        anchors = project(G, clip.to(dev), steps=steps, progress=False, seed=seed).ws.detach()
        m = Motion.from_anchors(anchors.cpu(), name=motion, generator=G,
                                source={"kind": "video", "file": f"world clip ({factor})", "frames": [0, 11]})
        m.save(out / f"motion_{motion}.safetensors")
        strengths = torch.linspace(0, 1, frames)
        ws = faces[:, None] + m.offsets(strengths).to(dev)[None]  # [I, T, num_ws, w_dim]
        with torch.no_grad():
            first = G.synthesis(ws[:, 0])
            last = G.synthesis(ws[:, -1])
        a, b = measure(first)[factor], measure(last)[factor]
        results[motion] = {"target_change_mean": float((b - a).mean()),
                           "identities": identities}
        from .render import render_video

        report.files.append(str(render_video(G, ws[0], out / f"transfer_{motion}.mp4", fps=12, overwrite=True)))
    return results


def run_demo(out: str | Path = "demo-out", frames: int = 24, identities: int = 4) -> DemoReport:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport()
    t0 = time.perf_counter()
    report.numbers["world_clips"] = world_clips(out, frames, report)
    report.ran.append("world clips of the five micromotions, read back by the oracle")
    report.numbers["robust_pca"] = rpca_vs_raw()
    report.ran.append("robust PCA vs the raw endpoint difference on anchors with 5% outliers")
    world = Path(__file__).parent / "data" / "world" / "world.safetensors"
    if world.is_file():
        from .checkpoint import load_generator

        G = load_generator(world)
        report.numbers["transfer"] = full_method(G, out, report, identities=identities, frames=frames)
        report.ran.append("the whole method: video anchors -> robust decomposition -> transfer, measured")
    else:
        report.skipped.append(
            "the world StyleGAN2 is not shipped yet, so anchors -> decomposition -> transfer on generated faces "
            "did not run (train it with `python -m micromotion.world.train --out runs/world --minutes 8 "
            "--resume --export src/micromotion/data/world/world.safetensors` on a GPU)")
    report.numbers["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(report.__dict__, indent=1))
    report.files.append(str(out / "report.json"))
    return report
