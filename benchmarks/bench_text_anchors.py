"""Text anchors (issue 6): 11 degrees x 40 steps of CLIP-guided W+ optimization, random weights of the real sizes
(StyleGAN2 1024² config-f, CLIP ViT-B/32, ArcFace IR-SE50).

Compares, in one process:
- "batch": all degrees in one batch (micromotion's default), bf16 autocast on CUDA, CLIP preprocessing "correct";
- "one-at-a-time": the same code and numerics with `batch_size=1`, the original's loop structure;
- "original" (with --original N): the original code's arithmetic for N degrees, extrapolated to all: fp32, batch
  1, per-sample grouped modulated convolutions, CLIP input made by a real x7 nearest upsampling (a 7168² image)
  and 32x32 average pooling, no autocast.
Reports seconds (CUDA-synchronized wall clock), peak GPU memory (`max_memory_allocated`), and how far the
batched latents are from the one-at-a-time ones.

    python benchmarks/bench_text_anchors.py [--device cuda] [--steps 40] [--checkpoint] [--original 2] [--json out.json]

Needs torch and open_clip_torch (with ftfy, wcwidth; torchvision, regex, timm, huggingface_hub come with most
torch images). Runs from a source checkout without installing micromotion.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

try:
    import micromotion  # noqa: F401
except ImportError:  # a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
import torch.nn.functional as F

from micromotion.anchors.text import (DEFAULT_DEGREES, TextAnchorSettings, optimize_latents, render_template,
                                      start_latent)
from micromotion.models.arcface import ArcFace, ArcFaceConfig
from micromotion.models.clip import Clip, ClipConfig
from micromotion.models.stylegan2 import Generator, GeneratorConfig

TEMPLATE = "a person with {degree} smile"


def make_generator(device) -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=1024))
    with torch.no_grad():  # non-trivial values everywhere, as in bench_generator.py
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
            elif name.endswith("affine.bias"):
                p.add_(0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
        G.compute_w_avg(2000)
    return G.eval().requires_grad_(False).to(device)


def make_clip(device) -> Clip:
    clip = Clip.from_config(ClipConfig.vit_b_32(), seed=0, name="random ViT-B/32")
    with torch.no_grad():
        clip.model.logit_scale.fill_(math.log(100.0))  # OpenAI's trained value
    return clip.to(device)


def make_arcface(device) -> ArcFace:
    torch.manual_seed(1)
    return ArcFace(ArcFaceConfig.ir_se50()).eval().requires_grad_(False).to(device)


class OriginalClip(Clip):
    """StyleCLIP's `CLIPLoss` input: nn.Upsample(scale_factor=7) then AvgPool2d(1024 // 32), literally."""

    def preprocess(self, images, mode="paper"):
        x = F.interpolate(images, scale_factor=7, mode="nearest")
        return F.avg_pool2d(x, images.shape[-1] // 32)


class FusedGenerator(torch.nn.Module):
    """The original generator's arithmetic: per-sample grouped convolutions (rosinality's `ModulatedConv2d`)."""

    def __init__(self, G):
        super().__init__()
        self.G = G
        self.num_ws, self.w_dim, self.z_dim, self.w_avg = G.num_ws, G.w_dim, G.z_dim, G.w_avg

    def synthesis(self, ws, noise_mode="const"):
        return self.G.synthesis(ws, noise_mode=noise_mode, fused=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(label, fn, device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
    print(f"{label:<34s} {seconds:8.2f} s   peak {peak:6.2f} GiB", flush=True)
    return out, seconds, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--checkpoint", action="store_true", help="recompute the generator in the backward pass")
    ap.add_argument("--original", type=int, default=0, metavar="N",
                    help="also run the original code's arithmetic for N degrees and extrapolate to all 11")
    ap.add_argument("--skip-sequential", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True

    t0 = time.perf_counter()
    G, clip, arcface = make_generator(device), make_clip(device), make_arcface(device)
    print(f"models ready in {time.perf_counter() - t0:.1f} s on {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()}), "
          f"torch {torch.__version__}", flush=True)
    texts = [render_template(TEMPLATE, d) for d in DEFAULT_DEGREES]
    w0 = start_latent(G, seed=0)
    settings = TextAnchorSettings(steps=args.steps)
    kw = dict(progress=False, checkpoint=args.checkpoint)

    # warm-up (CUDA context, cuDNN autotuning, lazy allocations), not timed
    optimize_latents(G, clip, texts, w0, TextAnchorSettings(steps=2), arcface, **kw)
    optimize_latents(G, clip, texts[:1], w0, TextAnchorSettings(steps=2), arcface, **kw)

    results = {}
    (wb, lb), s, m = run(f"batch ({len(texts)} degrees in one)", lambda: optimize_latents(
        G, clip, texts, w0, settings, arcface, **kw), device)
    results["batch"] = {"seconds": s, "peak_gib": m, "loss_first": lb[0].mean().item(), "loss_last": lb[-1].mean().item()}
    if not args.skip_sequential:
        (ws, ls), s, m = run("one-at-a-time (same numerics)", lambda: optimize_latents(
            G, clip, texts, w0, settings, arcface, batch_size=1, **kw), device)
        diff = (wb - ws).norm() / (wb - w0).norm()
        results["one_at_a_time"] = {"seconds": s, "peak_gib": m}
        results["batch_vs_one_at_a_time_rel_diff"] = diff.item()
        print(f"batch vs one-at-a-time: |dw| / |w - w0| = {diff.item():.2e} "
              f"(bf16 rounding differs between batch sizes)", flush=True)
    if args.original:
        n = args.original
        oclip, oG = OriginalClip(clip.model, clip.tokenizer, image_size=224, name="original"), FusedGenerator(G)
        osettings = TextAnchorSettings(steps=args.steps, clip_preprocess="paper", precision="fp32")
        _, s, m = run(f"original structure ({n} of {len(texts)})", lambda: optimize_latents(
            oG, oclip, texts[:n], w0, osettings, arcface, batch_size=1, progress=False), device)
        results["original"] = {"seconds_measured": s, "degrees_measured": n, "seconds_extrapolated": s * len(texts) / n,
                               "peak_gib": m}
        print(f"original structure, extrapolated to {len(texts)} degrees: {s * len(texts) / n:.1f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__, "steps": args.steps, "degrees": len(texts), "checkpoint": args.checkpoint,
            "results": results}, indent=2))


if __name__ == "__main__":
    main()
