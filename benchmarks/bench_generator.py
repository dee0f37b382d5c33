"""Synthesis throughput of the 1024² config-f StyleGAN2 generator (random weights of the real sizes).

Compares, in one process:
- "original": the original code's structure: fp32, batch 1, one frame at a time, per-sample (grouped)
  modulated convolution, as rosinality's `Generator.forward` that micromotion-styleGAN calls;
- ours: batched shared-weight convolutions (upsampling layers as polyphase dense convs on CUDA), fp32
  (TF32 off and on) and bf16 autocast, optionally `torch.compile` (which fuses the elementwise passes).
Reports frames/s, speed-up over the original structure, and fidelity: PSNR over [-1, 1] of batched fp32
and bf16 frames vs the reference frames (per-sample fp32 without cuDNN). Exits non-zero when fp32 is below
100 dB or bf16 below 38 dB: a fast benchmark of wrong frames is a failure.

    python benchmarks/bench_generator.py [--resolution 1024] [--batches 1,8,32,64] [--compile] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time

import torch

from micromotion import Generator, GeneratorConfig

FP32_BAR_DB, BF16_BAR_DB = 100.0, 38.0  # below these the frames are wrong, not merely rounded


def make_generator(resolution: int, device) -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=resolution))
    with torch.no_grad():  # non-trivial values everywhere (default init has zero biases and noise strengths)
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
            elif name.endswith("affine.bias"):
                p.add_(0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
        G.compute_w_avg(2000)
    return G.eval().requires_grad_(False).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, min_time=2.0, min_iters=3):
    fn()
    sync(device)  # warm-up
    iters, t0 = 0, time.perf_counter()
    while True:
        fn()
        iters += 1
        sync(device)
        el = time.perf_counter() - t0
        if el >= min_time and iters >= min_iters:
            return el / iters


def psnr(a, b):
    a, b = a.float().clamp(-1, 1), b.float().clamp(-1, 1)
    mse = (a - b).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--batches", default="1,8,16,32,64")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "CPU"
    G = make_generator(args.resolution, device)
    gen = torch.Generator(device="cpu").manual_seed(1)
    ws_all = G.mapping(torch.randn(64, G.z_dim, generator=gen).to(device), 0.7)
    rows = []

    def run(label, batch, dtype, fused=False, channels_last=False, fn=None):
        ws = ws_all[:batch]
        synth = fn or (lambda w: G.synthesis(w, fused=fused))
        ctx = (torch.autocast("cuda", dtype=dtype) if dtype != torch.float32 and device.type == "cuda"
               else torch.autocast("cpu", enabled=False))

        def step():
            with torch.no_grad(), ctx:
                return synth(ws)
        sec = timeit(step, device, args.min_time)
        fps = batch / sec
        rows.append(dict(label=label, batch=batch, dtype=str(dtype).replace("torch.", ""), fps=fps,
                         ms_per_frame=1000 / fps))
        print(f"{label:28s} batch {batch:3d} {str(dtype):15s} {fps:9.1f} frames/s", flush=True)
        return fps

    # the original structure
    base = run("original (fp32, b1, grouped)", 1, torch.float32, fused=True)
    batches = [int(b) for b in args.batches.split(",")]
    if device.type == "cpu":
        batches = [b for b in batches if b <= 4]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    for b in batches:
        run("ours fp32", b, torch.float32)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        for b in batches:
            run("ours tf32", b, torch.float32)
        for b in batches:
            run("ours bf16", b, torch.bfloat16)
        if args.compile:
            comp = torch.compile(lambda w: G.synthesis(w), dynamic=False)
            for b in batches:
                run("ours bf16 compiled", b, torch.bfloat16, fn=comp)

    # fidelity: batched frames vs the reference frames (per-sample grouped convs, fp32, no cuDNN, no TF32)
    # at the batch sizes that cuDNN 9.19 got wrong on an H200 (8, 16, 64) and one it got right (12)
    fid, failures = {}, []
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            with torch.backends.cudnn.flags(enabled=False):
                orig = torch.cat([G.synthesis(ws_all[i:i + 1], fused=True) for i in range(64)])
            for b in (8, 12, 16, 64):
                ref = torch.cat([G.synthesis(c) for c in ws_all.split(b)])
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    low = torch.cat([G.synthesis(c) for c in ws_all.split(b)])
                fid[f"psnr_fp32_b{b}_vs_reference_db"] = psnr(ref, orig)
                fid[f"max_abs_fp32_b{b}_vs_reference"] = (ref - orig).abs().max().item()
                fid[f"psnr_bf16_b{b}_vs_reference_db"] = psnr(low, orig)
                if fid[f"psnr_fp32_b{b}_vs_reference_db"] < FP32_BAR_DB:
                    failures.append(f"fp32 batch {b}: {fid[f'psnr_fp32_b{b}_vs_reference_db']:.1f} dB < {FP32_BAR_DB}")
                if fid[f"psnr_bf16_b{b}_vs_reference_db"] < BF16_BAR_DB:
                    failures.append(f"bf16 batch {b}: {fid[f'psnr_bf16_b{b}_vs_reference_db']:.1f} dB < {BF16_BAR_DB}")
        print(json.dumps(fid))
    best = max(r["fps"] for r in rows)
    summary = {"device": name, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
               "resolution": args.resolution, "original_fps": base, "best_fps": best,
               "speedup": best / base, "rows": rows, **fid}
    print(f"| {name} | {summary['date']} | {base:.1f} | {best:.1f} | {best / base:.1f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if failures:
        sys.exit("FIDELITY FAILED (wrong frames): " + "; ".join(failures))


if __name__ == "__main__":
    main()
