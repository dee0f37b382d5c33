"""MobileStyleGAN FFHQ 1024² (`mobilestylegan-ffhq-1024`): synthesis speed and fidelity, CPU and GPU.

In one process:
- CPU fp32, batch 1: ours (pure PyTorch) next to OpenVINO's runtime on the same IR files (when the `openvino`
  package is importable; it is not a dependency: install it in a scratch venv to compare), and the ratio;
- CUDA (when present): fp32 (TF32 off) and bf16 autocast at several batch sizes, optionally compiled;
  fidelity of each vs our CPU fp32 frames (PSNR over [-1, 1]);
- projector seconds per step (pixel-pyramid loss) and a 100-frame 1024² mp4 from a latent (render + H.264).
Exits non-zero when the GPU fp32 frames are below 100 dB of the CPU's or bf16 below 38 dB: fast wrong
frames are a failure.

Weights: the installed random-face files (default), or `--state-dict FILE`, a safetensors state dict of our
MobileStyleGAN (for machines without the package; fp16 is fine for speed, fidelity is measured against the
same weights on the CPU), or `--random` (random weights of the real sizes).

    python benchmarks/bench_mobilestylegan.py [--batches 1,8,32,64,128] [--compile] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

FP32_BAR_DB, BF16_BAR_DB = 100.0, 38.0


def load(args):
    from micromotion.models.mobilestylegan import Generator, MobileStyleGANConfig

    if args.state_dict:
        from safetensors.torch import load_file

        G = Generator(MobileStyleGANConfig())
        sd = {k: v.float() for k, v in load_file(args.state_dict).items()}
        G.load_state_dict(sd)
        return G.eval().requires_grad_(False), None
    if args.random:
        torch.manual_seed(0)
        G = Generator(MobileStyleGANConfig())
        G.compute_w_avg(2000)
        return G.eval().requires_grad_(False), None
    from micromotion.models.mobilestylegan_convert import find_random_face_files, load_random_face

    files = find_random_face_files()
    return load_random_face(files).eval().requires_grad_(False), files


def psnr(a, b):
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def timeit(fn, sync=lambda: None, min_time=2.0, min_iters=3):
    fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync()
        el = time.perf_counter() - t0
        if el >= min_time and n >= min_iters:
            return el / n


def openvino_seconds(files, ws_one, min_time):
    """Seconds per frame of OpenVINO's runtime on the IR (synthesis only), or None without openvino."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    model = core.read_model(str(files["SynthesisNetwork.xml"]), str(files["SynthesisNetwork.bin"]))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    w = ws_one[:, 0].numpy()  # the IR takes one w [1, 512]
    return timeit(lambda: req.infer([w]), min_time=min_time)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32,64,128")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--state-dict")
    ap.add_argument("--random", action="store_true")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU timings (GPU machines)")
    ap.add_argument("--json")
    args = ap.parse_args()

    G, files = load(args)
    gen = torch.Generator().manual_seed(2026)
    ws = G.mapping(torch.randn(128, G.z_dim, generator=gen), 0.7)
    out = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "rows": []}
    failures = []

    with torch.no_grad():
        ref = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(8)])  # CPU fp32, the fidelity reference
    if not args.no_cpu:
        with torch.no_grad():
            sec = timeit(lambda: G.synthesis(ws[:1]), min_time=args.min_time)
        out["cpu_fp32_s_per_frame"] = sec
        print(f"CPU ours fp32 batch 1: {sec:.3f} s/frame ({torch.get_num_threads()} threads)", flush=True)
        if files is not None:
            ov_sec = openvino_seconds(files, ws[:1], args.min_time)
            if ov_sec is not None:
                out["cpu_openvino_s_per_frame"] = ov_sec
                out["cpu_ours_over_openvino"] = sec / ov_sec
                print(f"CPU OpenVINO f32 batch 1: {ov_sec:.3f} s/frame; ours / OpenVINO = {sec / ov_sec:.2f}", flush=True)
            else:
                print("CPU OpenVINO: not installed (pip install openvino in a scratch venv to compare)")

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        out["device"] = torch.cuda.get_device_name()
        out["cudnn"] = torch.backends.cudnn.version()
        Gc = G.to(dev)
        wsc = ws.to(dev)

        def sync():
            torch.cuda.synchronize()

        def bench(label, fn, batch, dtype):
            ctx = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16")

            def step():
                with torch.no_grad(), ctx:
                    return fn(wsc[:batch])
            sec = timeit(step, sync, args.min_time)
            with torch.no_grad(), ctx:
                frames = torch.cat([fn(c) for c in wsc[:8].split(batch)]) if batch <= 8 else fn(wsc[:batch])[:8]
            fid = psnr(frames.cpu(), ref)
            row = dict(label=label, batch=batch, dtype=dtype, fps=batch / sec, psnr_vs_cpu_fp32_db=fid)
            out["rows"].append(row)
            print(f"{label:22s} batch {batch:4d} {dtype:5s} {batch / sec:9.1f} frames/s  {fid:6.1f} dB vs CPU fp32",
                  flush=True)
            bar = FP32_BAR_DB if dtype == "fp32" else BF16_BAR_DB
            if fid < bar:
                failures.append(f"{label} {dtype} batch {batch}: {fid:.1f} dB < {bar}")

        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        batches = [int(b) for b in args.batches.split(",")]
        for b in batches:
            bench("ours", Gc.synthesis, b, "fp32")
        for b in batches:
            bench("ours", Gc.synthesis, b, "bf16")
        if args.compile:
            comp = torch.compile(Gc.synthesis, dynamic=False)
            for b in batches:
                bench("ours compiled", comp, b, "bf16")
        # a 100-frame 1024² mp4 from a latent (render + H.264), bf16
        from micromotion.render import render_video

        with tempfile.TemporaryDirectory() as tmp:
            path = wsc[:1] + torch.linspace(0, 1, 100, device=dev)[:, None, None] * (wsc[1:2] - wsc[:1])

            def video():
                render_video(Gc, path, Path(tmp) / "v.mp4", fps=25, batch_size=50, dtype=torch.bfloat16,
                             overwrite=True, progress=False)
            try:
                out["video_100_frames_s"] = timeit(video, sync, min_time=1.0, min_iters=2)
                print(f"100-frame 1024² mp4 from a latent (bf16): {out['video_100_frames_s']:.2f} s", flush=True)
            except ImportError as e:
                print(f"mp4: skipped ({e})")
        # projector: seconds per step at batch 1 (pixel-pyramid loss)
        from micromotion.invert.projector import project

        target = ref[:1].to(dev)
        t0 = time.perf_counter()
        project(Gc, target, steps=20, loss="pixel", w_avg_samples=1000, progress=False)
        sync()
        out["projector_s_per_step_cuda"] = (time.perf_counter() - t0) / 20
        print(f"projector (CUDA): {out['projector_s_per_step_cuda']:.3f} s/step", flush=True)
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if failures:
        sys.exit("FIDELITY FAILED (wrong frames): " + "; ".join(failures))


if __name__ == "__main__":
    main()
