"""Synthesis throughput of the 1024² config-f StyleGAN2 generator (random weights of the real sizes).

Compares, in one process:
- "original": the original code's structure: fp32, batch 1, one frame at a time, per-sample (grouped)
  modulated convolution, as rosinality's `Generator.forward` that micromotion-styleGAN calls;
- ours: batched shared-weight convolutions (upsampling layers as polyphase dense convs on CUDA), fp32
  (TF32 off and on) and bf16 autocast, optionally `torch.compile` (which fuses the elementwise passes).
Reports frames/s, speed-up over the original structure, and fidelity: PSNR over [-1, 1] of batched fp32
and bf16 frames vs the reference frames (per-sample fp32 without cuDNN), for every layout measured. Exits
non-zero when fp32 is below 100 dB or bf16 below 38 dB: a fast benchmark of wrong frames is a failure.
`--layouts nchw,nhwc` adds the channels_last activations (`SynthesisNetwork.memory_format`); `--profile`
prints where the GPU time of one bf16 batch goes (kernel time by kind: convolutions, Triton/elementwise,
copies), the fastest path profiled.

    python benchmarks/bench_generator.py [--resolution 1024] [--batches 1,8,32,64] [--compile] [--layouts nchw]
                                         [--profile] [--json out.json]
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

from micromotion import Generator, GeneratorConfig, ops

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


def profile_kernels(fn, ws, label):
    """Print the GPU kernel time of one bf16 call of `fn(ws)` by kind, and the 15 longest kernels."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        fn(ws)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn(ws)
            torch.cuda.synchronize()
    rows = sorted(((e.key, e.device_time_total, e.count) for e in prof.key_averages() if e.device_time_total > 0),
                  key=lambda r: -r[1])
    total = sum(t for _, t, _ in rows)
    kinds: dict[str, float] = {}
    for key, t, _ in rows:
        k = key.lower()
        kind = ("convolution" if any(s in k for s in ("conv", "cudnn", "xmma", "implicit", "cutlass", "gemm", "sm90"))
                else "triton (fused elementwise)" if k.startswith("triton") else
                "copy/layout" if any(s in k for s in ("copy", "transpose", "nchw", "nhwc")) else "other")
        kinds[kind] = kinds.get(kind, 0.0) + t
    n = ws.shape[0]
    print(f"profile, {label}: {total / 1000:.2f} ms of kernels ({n / (total / 1e6):.0f} frames/s back to back)")
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:28s} {t / 1000:8.2f} ms  {100 * t / total:5.1f} %")
    for key, t, count in rows[:15]:
        print(f"  {t / 1000:8.2f} ms {count:4d}x {key[:100]}")


def variant_tag(layout: str, upconv: str, sep: str) -> str:
    """A row label's suffix: the layout and the upsampling formulation where they are not the defaults."""
    return ("" if layout == "nchw" else sep + layout) + ("" if upconv == "polyphase" else sep + upconv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--batches", default="1,8,16,32,64")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--layouts", default="nchw", help="activation layouts to time: nchw, nhwc or both")
    ap.add_argument("--upconvs", default="polyphase",
                    help="how the 2x layers upsample on CUDA (ops.UPCONVS, comma-separated), each timed and checked")
    ap.add_argument("--profile", action="store_true", help="GPU kernel time of one bf16 batch, by kind")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="let cuDNN time its algorithms per shape (torch.backends.cudnn.benchmark); fidelity is "
                         "checked under the same setting")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    layouts = args.layouts.split(",")
    if not set(layouts) <= {"nchw", "nhwc"}:
        sys.exit(f"--layouts: nchw and/or nhwc, got {args.layouts!r}")
    upconvs = args.upconvs.split(",")
    if not set(upconvs) <= set(ops.UPCONVS):
        sys.exit(f"--upconvs: one or more of {', '.join(ops.UPCONVS)}, got {args.upconvs!r}")
    variants = [(layout, up) for layout in layouts for up in upconvs]
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
        fastest = (0.0, None)
        for layout, up in variants:
            G.synthesis_net.memory_format, G.synthesis_net.upconv = layout, up
            tag = variant_tag(layout, up, " ")
            for b in batches:
                fps = run(f"ours bf16{tag}", b, torch.bfloat16)
                fastest = max(fastest, (fps, (G.synthesis, b, layout, up)), key=lambda t: t[0])
            if args.compile:
                torch._dynamo.reset()  # the layout is read in Python: compile it afresh
                comp = torch.compile(lambda w: G.synthesis(w), dynamic=False)
                for b in batches:
                    fps = run(f"ours bf16 compiled{tag}", b, torch.bfloat16, fn=comp)
                    fastest = max(fastest, (fps, (comp, b, layout, up)), key=lambda t: t[0])
        if args.profile:
            fn, b, layout, up = fastest[1]
            G.synthesis_net.memory_format, G.synthesis_net.upconv = layout, up
            profile_kernels(fn, ws_all[:b], f"bf16 batch {b} {layout} {up}")
        G.synthesis_net.memory_format, G.synthesis_net.upconv = "nchw", None

    # fidelity: batched frames vs the reference frames (per-sample grouped convs, fp32, no cuDNN, no TF32)
    # at the batch sizes that cuDNN 9.19 got wrong on an H200 (8, 16, 64) and one it got right (12)
    fid, failures = {}, []
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            with torch.backends.cudnn.flags(enabled=False):
                orig = torch.cat([G.synthesis(ws_all[i:i + 1], fused=True) for i in range(64)])
            for layout, up in variants:
                G.synthesis_net.memory_format, G.synthesis_net.upconv = layout, up
                tag = variant_tag(layout, up, "_")
                for b in (8, 12, 16, 64):
                    ref = torch.cat([G.synthesis(c) for c in ws_all.split(b)])
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        low = torch.cat([G.synthesis(c) for c in ws_all.split(b)])
                    for prec, out, bar in (("fp32", ref, FP32_BAR_DB), ("bf16", low, BF16_BAR_DB)):
                        key = f"psnr_{prec}_b{b}{tag}_vs_reference_db"
                        fid[key] = psnr(out, orig)
                        if fid[key] < bar:
                            failures.append(f"{prec} batch {b} {layout} {up}: {fid[key]:.1f} dB < {bar}")
                    fid[f"max_abs_fp32_b{b}{tag}_vs_reference"] = (ref - orig).abs().max().item()
            G.synthesis_net.memory_format, G.synthesis_net.upconv = "nchw", None
        print(json.dumps(fid))
    best = max(r["fps"] for r in rows)
    summary = {"device": name, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
               "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": args.cudnn_benchmark,
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
