"""Video writing A/B in one process: the RGB path (frames to uint8 RGB on the CPU, libx264 converts and encodes
after each batch) vs the fast path of `render_video` (I420 on the rendering device, encoding on a worker thread
while the next batch renders), and synthesis + I420 alone. 1024² config-f generator, random weights, bf16.

    python benchmarks/bench_video_writer.py [--frames 100] [--batch-size 32] [--reps 3]
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()

    from micromotion import Generator, GeneratorConfig
    from micromotion.render import render_video, synthesize_batches, to_uint8, to_yuv420, write_frames

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else None
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=a.resolution)).to(device).eval()
    with torch.no_grad():
        G.compute_w_avg(1000)
        ws = G.mapping(torch.randn(a.frames, G.z_dim, device=device), 0.7)
    tmp = Path(tempfile.mkdtemp())

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def rgb_path():
        write_frames((to_uint8(b) for b in synthesize_batches(G, ws, a.batch_size, dtype)), tmp / "rgb.mp4",
                     overwrite=True)

    def fast_path():
        render_video(G, ws, tmp / "fast.mp4", batch_size=a.batch_size, dtype=dtype, overwrite=True)

    def synthesis_only():
        for b in synthesize_batches(G, ws, a.batch_size, dtype):
            to_yuv420(b)

    runs = (rgb_path, fast_path, synthesis_only)
    for f in runs:  # warm-up
        f()
        sync()
    times: dict[str, list[float]] = {}
    for _ in range(a.reps):
        for f in runs:
            t = time.perf_counter()
            f()
            sync()
            times.setdefault(f.__name__, []).append(round(time.perf_counter() - t, 3))
    print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else "CPU",
                      "date": datetime.date.today().isoformat(), "frames": a.frames, "resolution": a.resolution,
                      "batch_size": a.batch_size, "seconds": times,
                      "median": {k: statistics.median(v) for k, v in times.items()}}, indent=1))


if __name__ == "__main__":
    main()
