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

    python benchmarks/bench_text_anchors.py [--device cuda] [--steps 40] [--micro-batch 6,4] [--compile]
                                            [--original 1] [--equality] [--json out.json]

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


def make_generator(device, tiny=False) -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32) if tiny else GeneratorConfig(resolution=1024))
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


def make_clip(device, tiny=False) -> Clip:
    clip = Clip.from_config(ClipConfig.tiny() if tiny else ClipConfig.vit_b_32(), seed=0, name="random ViT-B/32")
    with torch.no_grad():
        clip.model.logit_scale.fill_(math.log(100.0))  # OpenAI's trained value
    return clip.to(device)


def make_arcface(device, tiny=False) -> ArcFace:
    torch.manual_seed(1)
    return ArcFace(ArcFaceConfig.tiny() if tiny else ArcFaceConfig.ir_se50()).eval().requires_grad_(False).to(device)


class OriginalClip(Clip):
    """StyleCLIP's `CLIPLoss` input: nn.Upsample(scale_factor=7) then AvgPool2d(1024 // 32), literally."""

    def preprocess(self, images, mode="paper"):
        g = math.gcd(images.shape[-1], self.image_size)  # 32 for 1024 -> 224: x7, then 32x32 pooling
        x = F.interpolate(images, scale_factor=self.image_size // g, mode="nearest")
        return F.avg_pool2d(x, images.shape[-1] // g)


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
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    shown = f"{peak:6.2f} GiB" if peak is not None else "n/a"
    print(f"{label:<34s} {seconds:8.2f} s   peak {shown}", flush=True)
    return out, seconds, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--micro-batch", default="", metavar="LIST",
                    help="also run the batch with these micro-batch sizes (comma-separated), e.g. 6,4")
    ap.add_argument("--compile", action="store_true",
                    help="also run the batch (and micro-batches) with the synthesis network under torch.compile")
    ap.add_argument("--original", type=int, default=0, metavar="N",
                    help="also run the original code's arithmetic for N degrees and extrapolate to all 11")
    ap.add_argument("--memory-budget", type=float, default=None, metavar="F",
                    help="with --compile, also run the compiled batch with torch's activation memory budget F "
                         "(0..1: the compiler recomputes instead of saving activations, trading time for memory)")
    ap.add_argument("--skip-sequential", action="store_true")
    ap.add_argument("--equality", action="store_true",
                    help="also compare batch and one-at-a-time in fp32 and bf16 (3 degrees, 10 steps)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tiny", action="store_true", help="tiny models (a smoke test of this script)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    micro = [int(m) for m in args.micro_batch.split(",") if m.strip()]

    t0 = time.perf_counter()
    G, clip, arcface = (make_generator(device, args.tiny), make_clip(device, args.tiny),
                        make_arcface(device, args.tiny))
    print(f"models ready in {time.perf_counter() - t0:.1f} s on {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()}), "
          f"torch {torch.__version__}", flush=True)
    texts = [render_template(TEMPLATE, d) for d in DEFAULT_DEGREES]
    w0 = start_latent(G, seed=0)
    settings = TextAnchorSettings(steps=args.steps)
    results = {}

    def warm(**kw):  # CUDA context, cuDNN autotuning, compilation: not timed
        t1 = time.perf_counter()
        optimize_latents(G, clip, texts, w0, TextAnchorSettings(steps=2), arcface, progress=False, **kw)
        sync(device)
        return time.perf_counter() - t1

    def timed(name, label, **kw):
        (w, losses), sec, peak = run(label, lambda: optimize_latents(G, clip, texts, w0, settings, arcface,
                                                                      progress=False, **kw), device)
        results[name] = {"seconds": sec, "peak_gib": peak, "loss_first": losses[0].mean().item(),
                         "loss_last": losses[-1].mean().item()}
        return w

    warm()
    warm(batch_size=1)
    wb = timed("batch", f"batch ({len(texts)} degrees in one)")
    for m in micro:
        warm(micro_batch=m)
        timed(f"batch_micro{m}", f"batch, micro-batches of {m}", micro_batch=m)
    if args.compile:
        cs = warm(compile=True)
        print(f"torch.compile warm-up: {cs:.1f} s", flush=True)
        wc = timed("batch_compile", "batch, compiled synthesis", compile=True)
        results["batch_compile"].update(compile_seconds=cs,
                                        rel_diff_vs_eager=((wc - wb).norm() / (wb - w0).norm()).item())
        for m in micro:
            results["batch_compile"][f"compile_seconds_micro{m}"] = warm(micro_batch=m, compile=True)
            timed(f"batch_compile_micro{m}", f"batch, compiled, micro-batches of {m}", micro_batch=m, compile=True)
        if args.memory_budget is not None:
            import torch._functorch.config as functorch_config

            from micromotion.anchors import text as text_anchors
            budget_before = functorch_config.activation_memory_budget
            functorch_config.activation_memory_budget = args.memory_budget
            torch._dynamo.reset()
            text_anchors._COMPILED.clear()  # compile afresh under the budget
            key = f"batch_compile_budget{args.memory_budget:g}"
            cs = warm(compile=True)
            wm = timed(key, f"batch, compiled, activation memory budget {args.memory_budget:g}", compile=True)
            results[key].update(compile_seconds=cs, rel_diff_vs_eager=((wm - wb).norm() / (wb - w0).norm()).item())
            functorch_config.activation_memory_budget = budget_before
    if not args.skip_sequential:
        ws = timed("one_at_a_time", "one-at-a-time (same numerics)", batch_size=1)
        diff = (wb - ws).norm() / (wb - w0).norm()
        results["batch_vs_one_at_a_time_rel_diff"] = diff.item()
        print(f"batch vs one-at-a-time: |dw| / |w - w0| = {diff.item():.2e}", flush=True)
    if args.equality:
        three = texts[::5]
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        for prec in ("fp32", "auto"):
            st = TextAnchorSettings(steps=10, precision=prec)
            a, _ = optimize_latents(G, clip, three, w0, st, arcface, progress=False)
            b, _ = optimize_latents(G, clip, three, w0, st, arcface, batch_size=1, progress=False)
            rel = ((a - b).norm() / (a - w0).norm()).item()
            results[f"equality_{prec}"] = {"rel_diff": rel, "max_abs_diff": (a - b).abs().max().item(),
                                           "max_abs_move": (a - w0).abs().max().item()}
            print(f"equality, {'fp32' if prec == 'fp32' else 'bf16'}, 3 degrees x 10 steps: batch vs one at a "
                  f"time |dw| / |w - w0| = {rel:.2e}", flush=True)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    if args.original:
        n = args.original
        oclip = OriginalClip(clip.model, clip.tokenizer, image_size=clip.image_size, name="original").to(device)
        oG = FusedGenerator(G)
        osettings = TextAnchorSettings(steps=args.steps, clip_preprocess="paper", precision="fp32")
        _, sec, peak = run(f"original structure ({n} of {len(texts)})", lambda: optimize_latents(
            oG, oclip, texts[:n], w0, osettings, arcface, batch_size=1, progress=False), device)
        results["original"] = {"seconds_measured": sec, "degrees_measured": n,
                               "seconds_extrapolated": sec * len(texts) / n, "peak_gib": peak}
        print(f"original structure, extrapolated to {len(texts)} degrees: {sec * len(texts) / n:.1f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__, "steps": args.steps, "degrees": len(texts), "results": results}, indent=2))


if __name__ == "__main__":
    main()
