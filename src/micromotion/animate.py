"""Photo -> micromotion video, end to end: load the model once, invert a face, move it along a motion, render.

`Animator` holds one generator (and its presets) for many calls; the CLI's `animate`, the web app and the
Cog predictor are thin shells over it.

Frames follow w + t·S·direction with t from 0 to 1 inclusive (`path="line"`), or the decoded low-rank anchor
trajectory (`path="anchors"`); `loop` goes there and back.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import presets
from .decompose import Motion
from .devices import resolve_device
from .errors import InputError
from .generators import check_ws, load_generator
from .profiles import auto_model, profile_for
from .render import check_output_path, render_video, to_uint8

log = logging.getLogger(__name__)

MAX_FRAMES = 2000


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """'auto' -> bf16 on CUDA (faithful to fp32 and faster: docs/results.md, "Benchmarks"), fp32 elsewhere."""
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in table:
        raise InputError(f"unknown dtype '{dtype}'; choose auto, fp32, bf16 or fp16")
    return table[dtype]


def text_motion(G, template: str, *, clip: str | None = None, seed: int | None = None, progress: bool = False,
                name: str | None = None, **kw) -> Motion:
    """The paper's text route on `G` with its profile's settings (`micromotion.text_motion.text_motion`).

    clip: a CLIP file or registry name (default: the profile's). Anchors are cached, so a rerun is instant.
    """
    from .text_motion import text_motion as motion_from_text

    return motion_from_text(G, template, name=name, seed=seed, progress=progress,
                            **({"clip": clip} if clip is not None else {}), **kw)


def check_render_options(strength: float, frames: int, fps: float) -> None:
    if not isinstance(strength, (int, float)) or not math.isfinite(strength) or abs(strength) > 100:
        raise InputError(f"strength must be a finite number in [-100, 100], got {strength!r}")
    if not isinstance(frames, int) or not 2 <= frames <= MAX_FRAMES:
        raise InputError(f"frames must be an integer in 2..{MAX_FRAMES}, got {frames!r}")
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or not 0 < fps <= 240:
        raise InputError(f"fps must be a number in (0, 240], got {fps!r}")


@dataclass
class AnimationResult:
    out: Path
    motion: str
    frames: int
    inversion: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


class Animator:
    """One model, loaded once, for many animations.

    model: 'auto', a registry name ('stylegan2-ffhq-1024', 'world') or a generator file.
    device: 'auto', 'cpu', 'cuda', 'mps'. dtype: 'auto' (bf16 on CUDA), 'fp32', 'bf16'.
    invert_steps: projector steps when no encoder is available for the model. refine_steps: projector steps
    after the encoder (0: the encoder's codes as they are).
    """

    def __init__(self, model: str = "auto", device: str = "auto", dtype: str = "auto", invert_steps: int = 300,
                 cache_dir: str | os.PathLike | None = None, compile: bool = False, refine_steps: int = 0):
        t0 = time.perf_counter()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model_name = auto_model() if model == "auto" else str(model)
        self.G = load_generator(self.model_name, device=self.device)
        self.profile = profile_for(self.G)  # what differs between models: CLIP, text settings, encoders, align
        self.clip_name = self.profile.clip  # the CLIP of text motions
        self.invert_steps = invert_steps
        self.refine_steps = int(refine_steps)
        self.cache_dir = cache_dir
        self._motions: dict[str, Motion] = {}
        self._synthesis = torch.compile(self.G.synthesis) if compile else None
        log.info("model %s (%dx%d, %d W+ layers) on %s, %s, loaded in %.2fs", self.model_name, self.G.resolution,
                 self.G.resolution, self.G.num_ws, self.device, str(self.dtype).replace("torch.", ""),
                 time.perf_counter() - t0)

    @property
    def is_world(self) -> bool:
        """Kept for callers of the old attribute: whether the model's faces are already aligned crops (the world).
        Ask `self.profile` instead."""
        return not self.profile.align

    # -- pieces ----------------------------------------------------------------------------------------------

    def motion(self, spec: str | Motion) -> Motion:
        """A preset name, a motion file, or a `Motion` -> `Motion` for this generator (cached per spec)."""
        if isinstance(spec, Motion):
            spec.check_generator(self.G)
            return spec.to(self.device)
        if spec not in self._motions:
            def compute(p):  # first use of a preset on a model without shipped motions: the paper's text route
                return text_motion(self.G, p.template, clip=self.clip_name, seed=p.seed, name=p.name,
                                   profile=self.profile)

            self._motions[spec] = presets.resolve_motion(spec, self.G, self.cache_dir, compute).to(self.device)
        return self._motions[spec]

    def invert(self, image, *, align: bool | None = None, face_index: int | None = None, progress: bool = False):
        """Align and invert a photo (or read a latent file) -> (ws [1, num_ws, w_dim], Inversion or None)."""
        from .invert import invert, load_latent

        if isinstance(image, (str, os.PathLike)) and Path(image).suffix.lower() in (".safetensors", ".pt", ".pth"):
            ws, _ = load_latent(image)
            ws = ws.reshape(-1, *ws.shape[-2:])[:1].to(self.device)
            check_ws(self.G, ws, f"{image}: the latent (model {self.model_name})")
            return ws, None
        if align is None:
            align = self.needs_alignment(image, face_index)
        method, opts = self.inversion_method()
        if method == "projector":
            opts = {"steps": self.invert_steps, "progress": progress}
        elif method == "encoder":
            opts = {**opts, "progress": progress}
        inv = invert(self.G, image, method=method, align=align, face_index=face_index, **opts)
        return inv.ws.detach(), inv

    def needs_alignment(self, image, face_index: int | None = None) -> bool:
        """Whether photo `image` is aligned before inversion when the caller does not say: always for models of
        photos (the profile's `align`); for a model whose faces are aligned crops (the world), decided by the
        input: a photo that is not square, or a square one whose detected face is not already framed as an
        FFHQ crop, is aligned; a square image where no face is found, or whose face already fills the FFHQ
        square, is used as it is (recognised, not assumed)."""
        if self.profile.align:
            return True
        return not _is_aligned_crop(image, face_index)

    def inversion_method(self) -> tuple[str, dict]:
        """An encoder trained for this generator; else the profile's encoders (for the FFHQ model ReStyle pSp,
        else e4e) when cached; else the projector (`Profile.inversion_method`)."""
        return self.profile.inversion_method(self.G, self.refine_steps)

    def latents(self, ws0: torch.Tensor, motion: Motion, strength: float, frames: int, loop: bool = False,
                path: str = "line") -> torch.Tensor:
        """W+ codes of every frame, [frames, num_ws, w_dim]."""
        if path == "line":
            offsets = motion.offsets(presets.strengths(frames, strength, loop))
        elif path == "anchors":
            t = presets.strengths(frames, 1.0, loop)
            offsets = motion.scaled(strength).path(t) if strength != 0 else motion.path(t) * 0
        else:
            raise InputError(f"unknown path '{path}'; choose line or anchors")
        return ws0.to(self.device) + offsets.to(self.device, ws0.dtype)

    # -- the whole thing -------------------------------------------------------------------------------------

    def animate(self, image, motion: str | Motion, out: str | os.PathLike, *, strength: float = 1.0,
                frames: int = 100, fps: float = 25.0, loop: bool = False, path: str = "line",
                paste_back: bool = False, side_by_side: bool = False, overwrite: bool = False,
                face_index: int | None = None, align: bool | None = None, batch_size: int = 16,
                progress: bool = False) -> AnimationResult:
        """Invert `image`, move it along `motion`, write the video to `out` (see the module docstring)."""
        check_render_options(strength, frames, fps)
        out = check_output_path(out, overwrite)  # before any work: no partial output on bad options
        times = {}
        t0 = time.perf_counter()
        m = self.motion(motion)
        times["motion"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ws0, inv = self.invert(image, align=align, face_index=face_index, progress=progress)
        times["invert"] = time.perf_counter() - t0
        if paste_back and (inv is None or inv.aligned is None):
            raise InputError("--paste-back needs a photo that was aligned (not a latent file or an aligned crop)")
        ws = self.latents(ws0, m, strength, frames, loop, path)
        post = self._postprocess(inv, paste_back, side_by_side)
        t0 = time.perf_counter()
        render_video(self.G, ws, out, fps=fps, batch_size=batch_size, dtype=self.dtype, overwrite=overwrite,
                     postprocess=post, progress=progress)
        times["render"] = time.perf_counter() - t0
        details = dict(inv.details, method=inv.method) if inv is not None else {"method": "latent file"}
        return AnimationResult(out=Path(out), motion=m.meta.name, frames=frames, inversion=details, seconds=times)

    def _postprocess(self, inv, paste_back: bool, side_by_side: bool):
        if not paste_back and not side_by_side:
            return None
        mask = None
        if paste_back:
            from .align import face_mask

            mask = face_mask(inv.aligned, size=self.G.resolution)
        left = None
        if side_by_side:
            src = inv.aligned.original if (paste_back and inv is not None and inv.aligned is not None) else (
                inv.image if inv is not None else None)
            left = np.asarray(src.convert("RGB")) if src is not None else None

        def post(batch: np.ndarray) -> np.ndarray:
            outs = []
            for frame in batch:
                img = frame
                if paste_back:
                    from .align import paste_back as paste

                    img = np.asarray(paste(Image.fromarray(frame), inv.aligned, mask=mask))
                if left is not None:
                    lh = left if left.shape[:2] == img.shape[:2] else np.asarray(
                        Image.fromarray(left).resize((img.shape[1], img.shape[0]), Image.LANCZOS))
                    img = np.concatenate([lh, img], axis=1)
                outs.append(img)
            return np.stack(outs)

        return post


def first_frame(G, ws: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(G.synthesis(ws[:1]))[0]


#: An image is taken for an aligned crop when its face's FFHQ square is about the image itself: its side within
#: these bounds of the image's and its centre within `ALIGNED_CROP_CENTRE` of the side from the image's centre.
#: Loose, because landmarks on drawn faces (the world's) are loose: measured on world renders, sides of
#: 0.6-0.8 and centres 0.03-0.08 off; a portrait photo's face is far smaller or off centre (the astronaut: 0.34).
ALIGNED_CROP_SIDE = (0.55, 1.45)
ALIGNED_CROP_CENTRE = 0.15


def _is_aligned_crop(image, face_index: int | None = None) -> bool:
    """True if `image` is square and either shows no face the detector finds (e.g. some world renders) or a face
    whose FFHQ alignment square is about the image itself (re-aligning it would only resample it)."""
    from .align import detect_faces, face_landmarks, ffhq_quad
    from .io.images import describe, load_image

    im = load_image(image, name=describe(image))
    if abs(im.width - im.height) > 1:
        return False
    faces = detect_faces(im, "hog")  # cheap; a crop the detector misses is used as it is
    if not faces:
        return True
    i = 0 if face_index is None or not 0 <= face_index < len(faces) else face_index
    quad = ffhq_quad(face_landmarks(im, faces[i].box)) / im.width
    side = (np.hypot(*(quad[3] - quad[0])) + np.hypot(*(quad[1] - quad[0]))) / 2
    off = np.hypot(*(quad.mean(0) - [0.5, im.height / im.width / 2]))
    return bool(ALIGNED_CROP_SIDE[0] <= side <= ALIGNED_CROP_SIDE[1] and off <= ALIGNED_CROP_CENTRE)
