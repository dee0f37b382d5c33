"""`make demo` on real faces: MobileStyleGAN FFHQ-1024 (the `random-face` package's generator, issue 21).

A seeded sample of the model and real photos (default: scikit-image's astronaut) -> FFHQ-aligned -> inverted
with the optimization projector (W+, pixel-pyramid loss unless LPIPS is cached, a learning rate for short
runs: `projector_lr`; there is no encoder for this model yet) -> the five presets -> an mp4 per face and motion, a contact sheet (first, middle and last frame
per motion) and the measures table: dlib's reading of each preset's measure on the first and last frame
(`face_meter.FaceMeter`, the readings `micromotion evaluate` uses), dlib's descriptor distance first vs last
frame (identity, same person below 0.6) and, for photos, aligned photo vs reconstruction.

A 1024² frame takes seconds on a CPU and a projector step several times that, so on a CPU the demo renders
only the first, middle and last frame of each motion (`CPU_FRAMES`) after `CPU_STEPS` projector steps: the
reconstructions are rough, and the output says so. `demo.run_demo` (the face world) is the fallback when
the model is not installed.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import MicromotionError
from .presets import PRESETS
from .render import contact_sheet, save_png, synthesize_batches, to_uint8, write_frames

log = logging.getLogger(__name__)

MODEL = "mobilestylegan-ffhq-1024"
SAMPLE_SEED = 7  # the seeded sample face (z seed), psi below
SAMPLE_PSI = 0.7
#: What a CPU runs within `make demo`'s 3 minutes (1024² synthesis: ~1.5 s a frame, ~6 s a projector step on 2
#: cores); a GPU runs the GPU_* counts.
CPU_FRAMES, CPU_STEPS = 3, 10
GPU_FRAMES, GPU_STEPS = 24, 200
TILE = 128  # contact-sheet tile height, px: with a 256-colour palette a face's sheet stays near 200 KB


class RealModelUnavailable(MicromotionError):
    """The real-face model cannot be loaded here (e.g. `random-face` is not installed); one line saying why."""


@dataclass
class RealDemoReport:
    model: str
    device: str
    frames: int
    steps: int
    method: str = "projector"  # how photos are inverted: "encoder" when one ships for the model, else "projector"
    faces: dict = field(default_factory=dict)  # face -> {"kind", "reconstruction_distance", "motions": {...}}
    files: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_animator(device: str = "auto"):
    """`Animator` on the real-face model; RealModelUnavailable (one line) when it cannot be loaded."""
    from .animate import Animator

    try:
        return Animator(model=MODEL, device=device)
    except MicromotionError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RealModelUnavailable(f"the real-face model {MODEL} is not available ({first})") from None


def astronaut_photo(out: Path) -> Path:
    """scikit-image's astronaut (Eileen Collins, NASA, public domain) written as a PNG in `out`."""
    try:
        from skimage import data
    except ImportError:
        raise RealModelUnavailable("the demo photo comes from scikit-image (`pip install scikit-image`)") from None
    return save_png(np.ascontiguousarray(data.astronaut()[..., :3]), out / "astronaut.png")


def default_counts(device: torch.device, frames: int | None, steps: int | None,
                   projector: bool = True) -> tuple[int, int, str | None]:
    """(frames, projector steps, a note when the CPU's smaller counts were taken). projector: False when photos
    are inverted by an encoder (the steps are then unused and the note speaks of frames only)."""
    cpu = device.type == "cpu"
    f = frames if frames is not None else (CPU_FRAMES if cpu else GPU_FRAMES)
    s = steps if steps is not None else (CPU_STEPS if cpu else GPU_STEPS)
    note = None
    if cpu and not projector and frames is None:
        note = (f"on a CPU the demo renders {f} frames per motion to fit 3 minutes (a GPU takes {GPU_FRAMES}); set "
                f"--frames for more")
    elif cpu and projector and (frames is None or steps is None):
        note = (f"on a CPU the demo renders {f} frames per motion and runs {s} projector steps to fit 3 minutes "
                f"(a GPU takes {GPU_FRAMES} and {GPU_STEPS}): reconstructions are rough; set --frames/--steps "
                f"for more")
    return f, s, note


def _identity_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    d = float((a - b).norm())
    return d if math.isfinite(d) else math.nan


def _tile(frame: np.ndarray, height: int = TILE) -> np.ndarray:
    im = Image.fromarray(frame)
    return np.asarray(im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS))


def face_sheet(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Rows of frames (one row per motion: first, middle, last) -> one grid image, tiles `TILE` px high."""
    tiles = [_tile(f) for row in rows for f in row]
    w = min(t.shape[1] for t in tiles)
    return contact_sheet(np.stack([t[:, :w] for t in tiles]), cols=len(rows[0]))


def save_sheet(sheet: np.ndarray, out: Path) -> Path:
    """A contact sheet as a 256-colour PNG (a third of the RGB file's size, for docs/img), atomically."""
    from .io.files import atomic_output

    with atomic_output(out) as tmp:
        Image.fromarray(sheet).quantize(256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)
    return out


def projector_lr(steps: int) -> float:
    """Adam's initial learning rate for a projector run of `steps`: NVIDIA's 0.1 is meant for 1000 steps; in 10
    it throws W+ off the face manifold (01.jpg, pixel loss: PSNR 15.3 dB, a featureless face dlib cannot find),
    0.01 gives 21.1 dB and a dlib distance of 0.56 to the photo. 0.1 from 100 steps on, linear below."""
    return 0.1 * min(1.0, steps / 100)


def invert_photo(an, photo: Path, steps: int, progress: bool = False):
    """Align and invert `photo` as `an.invert` does, the projector run with `projector_lr(steps)`."""
    from .invert import invert

    method, opts = an.inversion_method()
    if method != "projector":
        return an.invert(photo, progress=progress)
    inv = invert(an.G, photo, method="projector", align=an.profile.align, steps=steps,
                 initial_learning_rate=projector_lr(steps), progress=progress)
    inv.details["initial_learning_rate"] = projector_lr(steps)
    return inv.ws.detach(), inv


def animate_face(an, name: str, ws0: torch.Tensor, out: Path, meter, report: RealDemoReport, *, inv=None,
                 strength: float = 1.0, paste_back: bool = True, fps: float = 12.0) -> list[list[np.ndarray]]:
    """The five presets on one face (ws0 [1, num_ws, w_dim]): mp4s, readings; returns the sheet's rows."""
    frames = report.frames
    post = an._postprocess(inv, True, False) if (paste_back and inv is not None and inv.aligned is not None) \
        else None
    entry = report.faces[name]
    rows = []
    for motion in PRESETS:
        m = an.motion(motion)
        ws = an.latents(ws0, m, strength, frames)
        crops = torch.cat(list(synthesize_batches(an.G, ws, batch_size=8, dtype=an.dtype)))
        video = to_uint8(crops)
        if post is not None:
            video = post(video)
        path = write_frames(video, out / f"{name}_{motion}.mp4", fps=fps, overwrite=True)
        report.files.append(str(path))
        got = meter.measure(crops[[0, -1]].cpu())  # readings on the generator's aligned crops, as `evaluate`
        reading = PRESETS[motion].factor
        first, last = float(got[reading][0]), float(got[reading][1])
        entry["motions"][motion] = {"reading": reading, "first": first, "last": last, "change": last - first,
                                    "identity_distance": _identity_distance(got["identity"][0], got["identity"][1]),
                                    "faces_found": int(got["found"].sum())}
        rows.append([video[0], video[len(video) // 2], video[-1]])
    return rows


def run_real_demo(out: str | Path = "demo-out", photos: list[str | Path] | None = None, *, sample: bool = True,
                  device: str = "auto", frames: int | None = None, steps: int | None = None,
                  strength: float = 1.0, paste_back: bool = True, progress: bool = False,
                  animator=None) -> RealDemoReport:
    """The real-face demo (module docstring). photos: default the astronaut; sample: add the seeded sample.
    Raises RealModelUnavailable when the model cannot be loaded (before writing anything)."""
    from .face_meter import FaceMeter

    t_all = time.perf_counter()
    t0 = time.perf_counter()
    an = animator or load_animator(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    method = an.inversion_method()[0]
    frames, steps, note = default_counts(an.device, frames, steps, projector=method == "projector")
    an.invert_steps = steps
    report = RealDemoReport(model=an.model_name, device=str(an.device), frames=frames, steps=steps, method=method)
    report.seconds["load"] = round(time.perf_counter() - t0, 1)
    if note:
        report.notes.append(note)
    meter = FaceMeter()
    sheets = []
    faces = []
    if sample:
        faces.append((f"sample_seed{SAMPLE_SEED}", None))
    for p in photos if photos is not None else [astronaut_photo(out)]:
        faces.append((Path(p).stem, Path(p)))
    for name, photo in faces:
        t0 = time.perf_counter()
        report.faces[name] = entry = {"kind": "sample" if photo is None else "photo", "motions": {}}
        inv = None
        if photo is None:
            z = torch.randn(1, an.G.z_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED))
            with torch.no_grad():
                ws0 = an.G.mapping(z.to(an.device), truncation_psi=SAMPLE_PSI)
            entry.update(seed=SAMPLE_SEED, psi=SAMPLE_PSI)
        else:
            ws0, inv = invert_photo(an, photo, steps, progress=progress)
            entry["photo"] = str(photo)
            entry["inversion"] = {k: v for k, v in inv.details.items() if isinstance(v, (int, float, str))}
            entry["inversion"]["method"] = inv.method
            target = torch.from_numpy(np.array(inv.image.convert("RGB"))).permute(2, 0, 1)[None] / 127.5 - 1
            got = meter.measure(torch.cat([target.float(), inv.reconstruction.detach().float().cpu()]))
            entry["reconstruction_distance"] = _identity_distance(got["identity"][0], got["identity"][1])
            report.files.append(str(save_png(to_uint8(inv.reconstruction.detach())[0], out / f"{name}_recon.png")))
        entry["seconds_invert"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        rows = animate_face(an, name, ws0, out, meter, report, inv=inv, strength=strength, paste_back=paste_back)
        entry["seconds_animate"] = round(time.perf_counter() - t0, 1)
        sheet = face_sheet(rows)
        report.files.append(str(save_sheet(sheet, out / f"real_{name}.png")))
        sheets.append(sheet)
    w = max(s.shape[1] for s in sheets)
    combined = np.concatenate([np.pad(s, ((0, 0), (0, w - s.shape[1]), (0, 0)), constant_values=255)
                               for s in sheets])
    report.files.append(str(save_sheet(combined, out / "contact_sheet.png")))
    report.seconds["total"] = round(time.perf_counter() - t_all, 1)
    (out / "real_report.json").write_text(json.dumps(report.__dict__, indent=1))
    (out / "measures.md").write_text(measures_table(report) + "\n")
    report.files += [str(out / "real_report.json"), str(out / "measures.md")]
    return report


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None or not math.isfinite(x) else format(x, fmt)


def measures_table(report: RealDemoReport) -> str:
    """The measures as a Markdown table: face, aligned photo ↔ reconstruction distance, then per motion the
    reading first -> last frame and the identity distance first vs last ("–": dlib found no face)."""
    lines = ["| face | photo ↔ reconstruction | motion | reading | first → last | identity first ↔ last |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, entry in report.faces.items():
        rec = _f(entry.get("reconstruction_distance")) if entry["kind"] == "photo" else "(sample)"
        for motion, r in entry["motions"].items():
            lines.append(f"| {name} | {rec} | {motion} | {r['reading']} | {_f(r['first'])} → {_f(r['last'])} "
                         f"| {_f(r['identity_distance'])} |")
    return "\n".join(lines)
