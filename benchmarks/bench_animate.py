"""End-to-end animate: photo -> N-frame mp4 with a 1024² config-f generator (random weights of the real size).

Stages timed (warm: the model is loaded once, one untimed run first): face alignment (dlib, on scikit-image's
astronaut photo), inversion (projector with --steps, or a latent file when --steps 0), latent path, synthesis
+ H.264 encoding. Also the original code's render structure (fp32, batch 1, frame by frame, per-frame min-max).

    python benchmarks/bench_animate.py [--frames 100] [--steps 0] [--resolution 1024]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--steps", type=int, default=0, help="projector steps; 0 = start from a latent file")
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json")
    ap.add_argument("--no-align", action="store_true",
                    help="skip the dlib alignment stage (machines without dlib's landmark model); "
                         "time it on a CPU instead")
    a = ap.parse_args()

    from PIL import Image

    from micromotion import Generator, GeneratorConfig, save_generator
    from micromotion.animate import Animator
    from micromotion.decompose import Motion
    from micromotion.invert import save_latent

    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=a.resolution))
    with torch.no_grad():
        for n, p in G.named_parameters():
            if n.endswith("noise_strength"):
                p.fill_(0.1)
        G.compute_w_avg(1000)
    gpath = save_generator(G, tmp / "g.safetensors")
    photo = tmp / "astronaut.png"
    if not a.no_align:
        from skimage import data

        Image.fromarray(data.astronaut()).save(photo)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "CPU"

    t0 = time.perf_counter()
    an = Animator(model=str(gpath), device=device, invert_steps=max(a.steps, 1))
    load_s = time.perf_counter() - t0
    ws = an.G.mapping(torch.randn(1, an.G.z_dim, device=an.device), 0.7)
    latent = save_latent(ws.cpu(), tmp / "face.safetensors")
    motion = Motion.from_direction(torch.randn(an.G.num_ws, an.G.w_dim) * 0.3, generator=an.G).save(tmp / "m.safetensors")

    align_s = 0.0
    if not a.no_align:
        from micromotion.align import align_face

        align_face(photo, size=a.resolution)  # warm dlib
        t0 = time.perf_counter()
        align_face(photo, size=a.resolution)
        align_s = time.perf_counter() - t0

    src = str(photo) if a.steps else str(latent)
    an.animate(src, str(motion), tmp / "warm.mp4", frames=min(a.frames, 4), batch_size=a.batch_size)  # warm-up
    res = an.animate(src, str(motion), tmp / "out.mp4", frames=a.frames, batch_size=a.batch_size)
    total = sum(res.seconds.values())

    # the original's render loop: fp32, batch 1, frame by frame, per-frame min-max, on the same generator
    frames_orig = min(a.frames, 8 if device == "cpu" else a.frames)
    d = torch.randn(an.G.num_ws, an.G.w_dim, device=an.device) * 0.3
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(frames_orig):
            img = an.G.synthesis(ws + i / 100 * d, fused=True)
            img = (img - img.min()) / (img.max() - img.min())
            (img[0] * 255).byte().cpu()
    if device == "cuda":
        torch.cuda.synchronize()
    orig_per_frame = (time.perf_counter() - t0) / frames_orig

    # where the time goes: the same frames rendered (to I420, on the host) without encoding, then encoded alone
    from micromotion.render import _Mp4Sink, synthesize_batches, to_yuv420

    path = ws + torch.linspace(0, 1, a.frames, device=an.device)[:, None, None] * d
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    planes = [to_yuv420(imgs) for imgs in synthesize_batches(an.G, path, a.batch_size, an.dtype)]
    sync()
    render_only = time.perf_counter() - t0
    encode = {}
    for preset in ("veryfast", "superfast", "ultrafast"):
        sink = _Mp4Sink(tmp / f"enc-{preset}.mp4", 25)
        sink._open(a.resolution, a.resolution)
        sink.stream.options = {"crf": "18", "preset": preset}
        t0 = time.perf_counter()
        for batch in planes:
            for pl in batch:
                sink.write_yuv420(pl)
        sink.finish()
        encode[preset] = {"s": time.perf_counter() - t0, "mb": (tmp / f"enc-{preset}.mp4").stat().st_size / 1e6}

    out = {"device": name, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
           "resolution": a.resolution, "frames": a.frames, "model_load_s": load_s,
           "align_s": None if a.no_align else align_s,
           "stages_s": res.seconds, "total_warm_s_without_align": total, "total_warm_s": total + align_s,
           "share": {k: v / (total + align_s) for k, v in {**res.seconds, "align": align_s}.items()},
           "original_render_loop_s_per_frame": orig_per_frame,
           "original_render_loop_s_for_all_frames": orig_per_frame * a.frames,
           "inversion": "projector %d steps" % a.steps if a.steps else "latent file (no inversion)",
           "render_to_i420_only_s": render_only, "encode_only": encode, "cpu_threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count()}
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
