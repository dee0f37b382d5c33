"""Video anchors on real faces (issue 22, item 3): a known smile (or head turn) through the user's path, measured.

A seeded face of the real-face model performs the shipped smile preset (`clips.motion_clip`: the smile eases in,
the head wanders by a little of the head_turn preset, the camera shakes, the light dims and warms, JPEG),
or with `--motion head_turn` the head-turn preset while the smile wanders by a little,
written as an mp4; then, as a user would, `micromotion extract --video` (tracking, alignment, inversion by
`--method auto`: the shipped encoder) and `micromotion motion decode`. Reported: the cosine of the decoded
direction to the performed preset's, over the W+ rows that change the image (`image_rows`; flattened, one cosine
over all those rows together), and with --evaluate the transfer of the decoded motion and of the preset to the
same unseen faces (`micromotion evaluate ... --seed 2026`).

    python benchmarks/bench_video_real.py --out /tmp/video-real [--seed 7] [--frames 16] [--evaluate 20]
                                          [--motion smile|head_turn]
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def cli(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "micromotion", *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"micromotion {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def image_rows(G) -> list[int]:
    return list(getattr(getattr(G, "cfg", None), "image_rows", range(G.num_ws)))


def direction_cosine(a: torch.Tensor, b: torch.Tensor, rows) -> float:
    """One cosine over the given W+ rows of two directions [num_ws, w_dim], flattened together."""
    rows = list(rows)
    return float(F.cosine_similarity(a[rows].flatten(), b[rows].flatten(), dim=0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilestylegan-ffhq-1024")
    ap.add_argument("--out", required=True, help="folder for the clip, anchors, motion and reports")
    ap.add_argument("--seed", type=int, default=7, help="the clip's face")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--evaluate", type=int, default=0, help="unseen faces to measure transfer on (0: skip)")
    ap.add_argument("--faces-seed", type=int, default=2026)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--motion", choices=["smile", "head_turn"], default="smile",
                    help="the preset the clip's face performs; the other one wanders a little as a nuisance")
    a = ap.parse_args()

    from micromotion.clips import motion_clip
    from micromotion.decompose import Motion
    from micromotion.generators import load_generator
    from micromotion.presets import preset_motion

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    G = load_generator(a.model, device=a.device)
    other = "head_turn" if a.motion == "smile" else "smile"
    target, nuisance = preset_motion(a.motion, G), preset_motion(other, G)
    t0 = time.perf_counter()
    clip = motion_clip(G, target, seed=a.seed, frames=a.frames, head=nuisance)
    path = clip.save(out / f"{a.motion}_seed{a.seed}.mp4", overwrite=True)
    times = {"clip": time.perf_counter() - t0}
    anchors, motion = out / "anchors.safetensors", out / "motion.safetensors"
    t0 = time.perf_counter()
    cli("extract", "--video", str(path), "--model", a.model, "--device", a.device, "-o", str(anchors), "--overwrite")
    times["extract"] = time.perf_counter() - t0
    motion.unlink(missing_ok=True)  # `motion decode` does not overwrite
    cli("motion", "decode", str(anchors), "-o", str(motion), "-g", a.model)
    m = Motion.load(motion)
    rows = image_rows(G)
    report = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "device": a.device,
              "cpu": platform.processor() or platform.machine(), "args": vars(a), "clip": clip.meta,
              "rows": rows, f"cosine_{a.motion}": direction_cosine(m.direction, target.direction, rows),
              f"cosine_{a.motion}_all_rows": direction_cosine(m.direction, target.direction, range(G.num_ws)),
              f"cosine_{other}": direction_cosine(m.direction, nuisance.direction, rows),
              "cosine_per_row": [direction_cosine(m.direction, target.direction, [r]) for r in range(G.num_ws)],
              "times": times}
    print(f"cosine to the {a.motion} preset over rows {rows}: {report[f'cosine_{a.motion}']:.3f} "
          f"(all rows {report[f'cosine_{a.motion}_all_rows']:.3f}; to {other} {report[f'cosine_{other}']:.3f})")
    if a.evaluate:
        for name, spec in (("decoded", str(motion)), ("preset", a.motion)):
            t0 = time.perf_counter()
            r = json.loads(cli("evaluate", spec, "--target", a.motion, "--model", a.model, "--identities",
                               str(a.evaluate), "--seed", str(a.faces_seed), "--strengths", "0,1", "--device",
                               a.device, "--json"))
            times[f"evaluate_{name}"] = time.perf_counter() - t0
            report[f"evaluate_{name}"] = r
            print(f"{name}: {json.dumps(r)[:600]}")
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
