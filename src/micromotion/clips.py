"""Test clips of a generator's own faces: one seeded face performing a known motion, with the nuisances of a real
recording (head motion, a lighting change, compression), written as a video (issue 22, item 3).

What such a clip shows is known exactly (the motion's W+ direction), so running it through the user's path
(`micromotion extract --video` -> `motion decode`) measures the video route on a real-face model: the cosine of
the decoded direction to the generating one, and the decoded motion's transfer to unseen faces
(`benchmarks/bench_video_real.py`, docs/video_anchors.md "Real faces").

The timing follows the world's clips (`world.faces.motion_track`, which `world.recipes.world_video_anchors`
inverts): the motion eases in and out (`world.faces.ease_in_out`) and the head wanders by the same slow sum of
sinusoids the world's other motions jitter by (`world.faces.slow_wave`). Unlike world clips, the frames are the
generator's own renders, of any generator and motion (the real-face model's smile preset in the benchmark).

Where it lives: beside `evaluate` and `render`, downstream of `decompose` (it takes a `Motion`) and `render` (it
writes a video). anchors/ is upstream of both and reads clips; a clip maker there would import what it feeds.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .decompose import Motion
from .errors import InputError
from .render import synthesize_batches, write_frames
from .world.faces import ease_in_out, slow_wave

__all__ = ["MotionClip", "motion_clip", "relight", "jpeg"]

#: Defaults of `motion_clip`: the last frame's RGB gains (darker and warmer, a lamp dimmed and a window's light
#: fading), JPEG quality (a heavily compressed webcam), the clip's side in pixels.
LIGHT_END = (0.85, 0.72, 0.55)
JPEG_QUALITY = 35
CLIP_SIZE = 512


@dataclass
class MotionClip:
    """A rendered clip and what made it.

    frames: uint8 [T, S, S, 3], as written (shake, lighting and JPEG applied). clean: uint8 [T, S, S, 3], the
    renders before lighting and JPEG (shake applied). ws: [T, num_ws, w_dim] the rendered codes (CPU).
    strengths: [T] the motion's strength per frame. head: [T] the head motion's strength per frame (zeros
    without one). gains: [T, 3] the RGB gains. meta: the settings (JSON-able).
    """

    frames: np.ndarray
    clean: np.ndarray
    ws: torch.Tensor
    strengths: torch.Tensor
    head: torch.Tensor
    gains: np.ndarray
    meta: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike, fps: float = 12.0, overwrite: bool = False) -> Path:
        """Write the frames (`render.write_frames`: .mp4 as H.264 yuv420p, .gif, .webp or a PNG folder)."""
        return write_frames(self.frames, path, fps=fps, overwrite=overwrite)


def relight(frames: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """uint8 frames [T, H, W, 3] times per-frame RGB gains [T, 3], rounded and clipped to uint8."""
    out = frames.astype(np.float32) * np.asarray(gains, np.float32)[:, None, None, :]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    """Each uint8 frame [T, H, W, 3] through a JPEG encode and decode at `quality` (PIL, 4:2:0)."""
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(f, "RGB").save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def _shake(images: torch.Tensor, amount: float, g: torch.Generator) -> tuple[torch.Tensor, list]:
    """A small smooth camera shake of images [T, 3, R, R]: shift by up to ~`amount` of the side, rotation by
    up to ~`amount` radians, zoom by up to ~`amount`, each a `slow_wave` over the clip (border pixels repeated)."""
    T = images.shape[0]
    t = torch.linspace(0, 1, T)
    dx, dy, rot, zoom = (amount * slow_wave(t, g) / 2 for _ in range(4))
    if amount == 0:
        return images, []
    cos, sin, s = torch.cos(rot), torch.sin(rot), 1 + zoom
    theta = torch.stack([torch.stack([cos / s, -sin / s, 2 * dx], 1), torch.stack([sin / s, cos / s, 2 * dy], 1)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out, torch.stack([dx, dy, rot, zoom], 1).tolist()


def motion_clip(G, motion: Motion, *, seed: int = 0, frames: int = 16, strength: float = 1.0, psi: float = 0.7,
                head: Motion | None = None, head_strength: float = 0.5, shake: float = 0.01,
                light_end: tuple[float, float, float] | None = LIGHT_END, jpeg_quality: int | None = JPEG_QUALITY,
                size: int | None = CLIP_SIZE, batch_size: int = 4, progress: bool = False) -> MotionClip:
    """A clip of the face of `seed` (z ~ N(0, I) from `seed`, `G.mapping(z, psi)`) performing `motion`.

    The motion eases from strength 0 to `strength` over `frames` frames (`world.faces.ease_in_out`). Nuisances,
    each off with 0 / None: `head` (e.g. the head_turn preset) wanders by `head_strength` × `slow_wave` / 2
    (so about ±head_strength at most, starting at 0); a camera `shake` (`_shake`); a lighting change, RGB gains
    ramping linearly from 1 to `light_end`; JPEG at `jpeg_quality`. Frames are rendered at G's resolution (on
    G's device, `batch_size` at a time), shaken, resized to `size` (None: kept), relit and compressed.
    Deterministic for a seed on one device. Returns a `MotionClip`.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise InputError(f"a clip needs a whole number of frames >= 2, got {frames!r}")
    if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 95:
        raise InputError(f"jpeg_quality must be in 1..95 (or None: no JPEG), got {jpeg_quality!r}")
    if not (math.isfinite(shake) and 0 <= shake < 0.25):
        raise InputError(f"shake must be in [0, 0.25), got {shake!r}")
    if light_end is not None and (len(light_end) != 3 or not all(math.isfinite(x) and x > 0 for x in light_end)):
        raise InputError(f"light_end must be three positive RGB gains, got {light_end!r}")
    motion.check_generator(G)
    if head is not None:
        head.check_generator(G)
    dev = G.w_avg.device
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(1, G.z_dim, generator=g)
    t = torch.linspace(0, 1, frames)
    strengths = float(strength) * ease_in_out(t)
    head_s = head_strength * slow_wave(t, g) / 2 if head is not None else torch.zeros(frames)
    with torch.no_grad():
        w0 = G.mapping(z.to(dev), psi)[0]
        ws = motion.apply(w0, strengths.to(dev))
        if head is not None:
            ws = ws + head.offsets(head_s.to(dev)).to(ws)
        images = torch.cat(list(synthesize_batches(G, ws, batch_size, progress=progress))).cpu()
    images, shake_path = _shake(images, float(shake), g)
    if size is not None and size != G.resolution:
        images = F.interpolate(images, size=(int(size), int(size)), mode="bicubic", antialias=True,
                               align_corners=False)
    clean = images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    gains = (np.ones((frames, 3), np.float32) if light_end is None else
             1 + t.numpy()[:, None].astype(np.float32) * (np.asarray(light_end, np.float32) - 1))
    out = relight(clean, gains) if light_end is not None else clean.copy()
    if jpeg_quality is not None:
        out = jpeg(out, int(jpeg_quality))
    meta = {"seed": int(seed), "frames": frames, "psi": psi, "motion": motion.meta.name, "strength": float(strength),
            "head": head.meta.name if head is not None else None, "head_strength": float(head_strength),
            "shake": float(shake), "light_end": list(light_end) if light_end is not None else None,
            "jpeg_quality": jpeg_quality, "size": int(size or G.resolution), "shake_path": shake_path}
    return MotionClip(frames=out, clean=clean, ws=ws.cpu(), strengths=strengths, head=head_s, gains=gains, meta=meta)
