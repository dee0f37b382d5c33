"""Video anchors: a short clip of one face doing a micromotion -> time-ordered W+ latents (issue 7).

The paper (Wu et al., CPAL 2024, Sec. 3) names video frames as a source of anchors; its code has none. Here:

1. read: frames are decoded with PyAV (mp4, mov, avi, webm, gif, ...) and put in presentation order (packed
   B-frames in AVI files decode out of order); `start`/`end`/`stride` choose the tracked frames;
2. track (align=True; `tracking.FaceTracker`): one face is followed through the tracked frames. The detector
   (dlib HOG on a copy no larger than `detect_size`) runs every `detect_every` frames; in between, the face
   box is predicted from the previous frame's landmarks. A detection that does not overlap the track ends
   it, and the frames predicted since the last confirming detection are dropped. With several faces the
   largest is tracked (or `face_index`), with a warning and a note in the anchors' source metadata;
3. smooth (`tracking.smooth_landmarks`): the 68 landmarks are smoothed over time inside each unbroken run of
   frames by a local polynomial fit (Savitzky-Golay, in frame times, so gaps and strides are handled), which
   removes the landmark fitter's frame-to-frame jitter; the crops then do not shake;
4. align: `max_frames` frames, evenly spread over the tracked frames with a face, are cut out with the
   FFHQ recipe of photos (`align.ffhq_quad` + `align.warp_to_quad`) at the generator's resolution, or, for
   clips of already-aligned faces (align=False), resized;
5. invert: with an encoder registered in `invert.METHODS` for this generator, all frames in batches;
   otherwise the first frame with NVIDIA's projector in W, refined in W+, then batches of later frames
   warm-started from the latest frame's codes, refined in `warm_steps` (default steps // 4) with a pull
   toward those codes (see `refine`: without it the codes drift apart along directions the images do not
   show, and the motion drowns in that drift);
6. the latents [K, num_ws, w_dim] with the frame times (seconds from the clip's first frame) as labels make
   an `Anchors` stack, decoded like text anchors by `Motion.from_anchors`.
"""
from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from ..align import DEFAULT_MIN_EYE_DISTANCE, ffhq_quad, warp_to_quad
from ..errors import InputError, MicromotionError
from ..io.images import atomic_output
from ..invert import METHODS, image_to_tensor, make_loss, project, psnr, resolve_method, synthesize
from .base import Anchors, module_fingerprint
from .tracking import (DEFAULT_DETECT_EVERY, DEFAULT_DETECT_SIZE, DEFAULT_SMOOTH, FaceTrack, FaceTracker,
                       landmark_jitter, smooth_landmarks, smoothing_window)

log = logging.getLogger(__name__)

__all__ = ["VideoInfo", "FaceTrack", "VideoAnchors", "probe_video", "parse_position", "select_frames",
           "iter_frames", "track_face", "smooth_landmarks", "landmark_jitter", "spread", "refine", "invert_frames",
           "video_anchors", "anchors_from_video"]

#: Default number of anchors taken from a clip (the paper's text anchors: 11 degrees + the start).
DEFAULT_MAX_FRAMES = 12
#: Projector steps for the first frame; later frames are warm-started and take a quarter.
DEFAULT_STEPS = 400
#: Frames inverted together after the first (each batch starts from the previous batch's last frame).
DEFAULT_BATCH_SIZE = 4
# Warm-started frames (see `refine`): Adam's learning rate, and the weight of the squared distance to the
# neighbour's codes (mean over coordinates). Measured on a tiny generator's clip (tests/anchors/test_video.py):
# without the term the recovered direction's cosine to the truth is 0.87, with 3.0 it is 0.94.
WARM_LR = 0.03
PROXIMAL = 3.0


# ----------------------------------------------------------------------------------------------------------
# Reading


def _av():
    import av

    return av


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


@dataclass(frozen=True)
class VideoInfo:
    """A decoded clip's frame list, in presentation order.

    times: [N] seconds from the first frame. order: [N] decode-order counters of those frames (the
    decoder emits packed/B-frames out of presentation order). fps: the stream's average rate (None if
    unknown). size: (width, height).
    """

    path: str
    times: np.ndarray
    order: np.ndarray
    fps: float | None
    size: tuple[int, int]
    codec: str
    truncated: bool = False
    decode_error: str | None = None  # why decoding stopped early (a truncated or corrupt file), else None
    announced_frames: int = 0  # what the container says it holds (0: it does not say)
    announced_seconds: float | None = None

    def read_span(self) -> str:
        """What was actually read, for messages: '13 frames, 0.00-0.52 s of the 2.00 s the file announces'."""
        span = f"{self.num_frames} frames, {self.times[0]:.2f}-{self.duration:.2f} s" if self.num_frames else "0 frames"
        of = []
        if self.announced_frames:
            of.append(f"{self.announced_frames} frames")
        if self.announced_seconds:
            of.append(f"{self.announced_seconds:.2f} s")
        return span + (f" of the {' / '.join(of)} the file announces" if of else "")

    @property
    def num_frames(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last one."""
        step = 1.0 / self.fps if self.fps else (float(np.median(np.diff(self.times))) if self.num_frames > 1 else 0.0)
        return float(self.times[-1]) + step if self.num_frames else 0.0


def _open(path: Path):
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable video ({_one_line(e)}); use an mp4, mov, avi, webm or gif "
                         f"file") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    return container


def _check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such video file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a video file")
    return path


def _decode(path: Path, errors: list[str] | None = None) -> Iterator[tuple[int, object]]:
    """(decode counter, av.VideoFrame) for every frame of the first video stream, until the end or the first
    undecodable packet (appended to `errors`; `probe_video` reports it once)."""
    av = _av()
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        k = 0
        try:
            for frame in container.decode(stream):
                yield k, frame
                k += 1
        except (av.FFmpegError, OSError, ValueError) as e:
            log.debug("%s: decoding stopped after %d frames (%s)", path, k, _one_line(e))
            if errors is not None:
                errors.append(f"decoding stopped after {k} frames: {_one_line(e)}")


_WARNED: dict[tuple, None] = {}


def _first_time(path: Path) -> bool:
    """True once per file version: a clip is probed by several steps, its damage is reported once."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _WARNED:
        return False
    _WARNED[key] = None
    while len(_WARNED) > 256:
        _WARNED.pop(next(iter(_WARNED)))
    return True


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Decode `path` once (no pixel conversion) to list its frames and their times.

    Raises `InputError` naming the file when it is missing, unreadable, has no video stream or no frames.
    """
    path = _check_path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        codec = stream.codec_context.name
        announced = stream.frames  # 0 when the container does not say
        seconds = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base else
                   container.duration / 1e6 if container.duration else None)
    fps = fps if fps and math.isfinite(fps) and fps > 0 else None
    stamps, size, errors = [], None, []
    for k, frame in _decode(path, errors):
        t = frame.time
        stamps.append((float(t) if t is not None else math.nan, k))
        size = size or (frame.width, frame.height)
    truncated = bool(errors) or (bool(announced) and len(stamps) < 0.9 * announced)
    if not stamps:
        why = f" ({errors[0]})" if errors else ""
        raise InputError(f"{path}: no video frames could be decoded{why}; the file is empty or corrupt")
    times = np.array([t for t, _ in stamps])
    if np.isnan(times).any() or len(np.unique(times)) != len(times):
        # no (or repeated) timestamps: decode order at the nominal rate
        times = np.arange(len(stamps), dtype=np.float64) / (fps or 25.0)
        order = np.arange(len(stamps))
    else:
        order = np.argsort(times, kind="stable")
        times = times[order]
    times = times - times[0]
    info = VideoInfo(path=str(path), times=times, order=np.asarray(order, dtype=np.int64), fps=fps, size=size,
                     codec=codec, truncated=truncated, decode_error=errors[0] if errors else None,
                     announced_frames=int(announced or 0),
                     announced_seconds=seconds if seconds and math.isfinite(seconds) and seconds > 0 else None)
    if truncated and _first_time(path):
        log.warning("%s: truncated or corrupt (%s); read %s", path, info.decode_error or "fewer frames than announced",
                    info.read_span())
    return info


_POSITION = re.compile(r"^\s*(?:(?P<frames>\d+)\s*f|(?:(?P<min>\d+):)?(?P<sec>\d+(?:\.\d*)?|\.\d+)\s*s?)\s*$")


def parse_position(value, what: str = "position") -> tuple[str, float] | None:
    """A clip position: None; a number (seconds); or a string '2.5', '2.5s', '1:02.5' (minutes:seconds) or
    '30f' (frame index, 0-based, in presentation order). Returns ('s', seconds) or ('f', index)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"{what} must be seconds or a frame index like '30f', got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
        return "s", float(value)
    m = _POSITION.match(str(value))
    if not m:
        raise InputError(f"{what} {value!r} is not a clip position; give seconds ('2.5', '2.5s', '1:02.5') or a "
                         f"frame index ('30f')")
    if m["frames"] is not None:
        return "f", float(int(m["frames"]))
    return "s", float(m["sec"]) + 60.0 * float(m["min"] or 0)


def _position_to_index(pos: tuple[str, float], info: VideoInfo) -> int:
    kind, v = pos
    if kind == "f":
        return int(v)
    # first frame at or after the time (a small tolerance absorbs timestamp rounding)
    return int(np.searchsorted(info.times, v - 1e-6, side="left"))


def select_frames(info: VideoInfo, start=None, end=None, stride: int = 1) -> np.ndarray:
    """Presentation-order indices of frames in [start, end) (see `parse_position`), every `stride`-th.

    Raises `InputError` naming the file when no frame is selected.
    """
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise InputError(f"stride must be a whole number >= 1, got {stride!r}")
    s, e = parse_position(start, "start"), parse_position(end, "end")
    lo = _position_to_index(s, info) if s else 0
    hi = _position_to_index(e, info) if e else info.num_frames
    hi = min(hi, info.num_frames)
    length = f"{info.num_frames} frames, {info.duration:.2f} s"
    if lo >= info.num_frames:
        raise InputError(f"{info.path}: zero frames selected: start {start} is past the end of the clip ({length})")
    if lo >= hi:
        raise InputError(f"{info.path}: zero frames selected: start {start} is not before end {end} (the clip has "
                         f"{length})")
    return np.arange(lo, hi, int(stride))


def iter_frames(info: VideoInfo, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, uint8 [H, W, 3] RGB) for the presentation-order `indices`, in increasing index order."""
    wanted = {int(info.order[i]): int(i) for i in sorted(set(int(i) for i in indices))}
    pending: dict[int, np.ndarray] = {}
    queue = sorted(wanted.values())
    nxt = 0
    for k, frame in _decode(Path(info.path)):
        if nxt >= len(queue):
            break
        if k not in wanted:
            continue
        pending[wanted[k]] = frame.to_ndarray(format="rgb24")
        while nxt < len(queue) and queue[nxt] in pending:
            yield queue[nxt], pending.pop(queue[nxt])
            nxt += 1
    for i in sorted(pending):  # frames whose predecessors could not be decoded this time
        yield i, pending[i]


# ----------------------------------------------------------------------------------------------------------
# Tracking


def track_face(path_or_info: str | os.PathLike | VideoInfo, *, start=None, end=None, stride: int = 1,
               face_index: int | None = None, detector: str = "auto", detect_every: int = DEFAULT_DETECT_EVERY,
               detect_size: int = DEFAULT_DETECT_SIZE, smooth: float = DEFAULT_SMOOTH,
               min_eye_distance: float = DEFAULT_MIN_EYE_DISTANCE, progress: bool = True) -> FaceTrack:
    """Follow one face through the frames of a clip chosen by `start`, `end`, `stride` (see `select_frames`).

    face_index: which face of the first frame showing enough faces, counting from the largest (default 0).
    detector: 'auto' (HOG; the CNN if HOG finds nothing in its first attempts), 'hog' or 'cnn'.
    detect_every: run the detector on every n-th frame (and the last); predict the box in between.
    detect_size: the detector sees a copy no larger than this (landmarks are fitted at full resolution).
    smooth: landmark smoothing window in seconds (0: none; else at least 3 tracked frames); see
    `smooth_landmarks`. The tracking itself is `tracking.FaceTracker`'s.
    Raises `InputError` naming the file when no frame shows a face.
    """
    info = path_or_info if isinstance(path_or_info, VideoInfo) else probe_video(path_or_info)
    tracker = FaceTracker(face_index=face_index, detector=detector, detect_every=detect_every,
                          detect_size=detect_size, min_eye_distance=min_eye_distance)
    if not (math.isfinite(smooth) and smooth >= 0):
        raise InputError(f"the smoothing window must be a number of seconds >= 0, got {smooth!r}")
    indices = select_frames(info, start, end, stride)
    rate = (info.fps or (len(indices) / max(info.duration, 1e-9))) / int(stride)
    return tracker.track(iter_frames(info, indices), indices, info.times[indices],
                         window=smoothing_window(smooth, rate), label=info.path, progress=progress)


# ----------------------------------------------------------------------------------------------------------
# Anchors


def spread(count: int, k: int | None) -> np.ndarray:
    """At most `k` positions out of range(count), evenly spread, first and last included (all if k is None)."""
    if k is None or count <= k:
        return np.arange(count)
    if k == 1:
        return np.array([0])
    return np.unique(np.round(np.linspace(0, count - 1, k)).astype(np.int64))


@dataclass
class VideoAnchors:
    """`video_anchors`' result: the anchors, their aligned frames (targets) uint8 [K, R, R, 3], the
    reconstructions [K, 3, R, R] in [-1, 1] (CPU), and the face track (None without alignment)."""

    anchors: Anchors
    frames: np.ndarray
    reconstructions: torch.Tensor
    track: FaceTrack | None = None

    def preview(self, size: int = 128) -> Image.Image:
        """A strip: the aligned frames over their reconstructions, each column labelled with its time."""
        k = len(self.anchors)
        pad, text_h = 4, 14
        sheet = Image.new("RGB", (k * (size + pad) + pad, 2 * (size + pad) + text_h + pad), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        recon = ((self.reconstructions.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        recon = recon.permute(0, 2, 3, 1).numpy()
        for i in range(k):
            x = pad + i * (size + pad)
            for row, arr in enumerate((self.frames[i], recon[i])):
                im = Image.fromarray(arr, "RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.LANCZOS if im.width > size else Image.BICUBIC)
                sheet.paste(im, (x, pad + row * (size + pad)))
            lab = self.anchors.labels[i]
            draw.text((x + 2, pad + 2 * (size + pad)), f"{lab:.2f} s" if isinstance(lab, float) else str(lab),
                      fill=(0, 0, 0))
        return sheet

    def save_preview(self, path: str | os.PathLike, size: int = 128) -> Path:
        """Write `preview(size)` to `path` (.png) atomically."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise InputError(f"{path}: the preview is written as .png; change the file name")
        im = self.preview(size)
        with atomic_output(path) as tmp:
            im.save(tmp, format="PNG")
        return path


def refine(G, targets: torch.Tensor, init_ws: torch.Tensor, *, steps: int, loss: torch.nn.Module,
           lr: float = 0.01, proximal: float = PROXIMAL, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """W+ codes of `targets` [N, 3, R, R] near `init_ws` [N, num_ws, w_dim] (a neighbouring frame's codes).

    Adam on `loss(image, target) + proximal * mean((w - init)^2)` per frame, the learning rate cosine-ramped
    down to 0. NVIDIA's projector (used for the first frame) adds w noise and takes large steps to explore;
    from a neighbour that only moves the codes along directions the image does not show -- Adam steps every
    coordinate by about the learning rate however small its gradient -- and such moves differ from frame to
    frame, burying the motion. The proximal term pins those directions to the neighbour's values, so they
    cancel in the anchors' differences. Returns (ws, per-frame distance), on G's device.
    """
    init = init_ws.detach().to(G.w_avg.device, torch.float32)
    w = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    targets = targets.to(init.device, torch.float32)
    bar = tqdm(range(int(steps)), desc="refining", disable=None if progress else True, leave=False)
    dist = torch.zeros(targets.shape[0], device=init.device)
    for step in bar:
        opt.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / int(steps)))
        dist = loss(synthesize(G, w), targets)
        total = dist + proximal * (w - init).square().mean((1, 2))
        opt.zero_grad(set_to_none=True)
        total.sum().backward()  # summed: each frame follows its own gradient
        opt.step()
    with torch.no_grad():
        dist = loss(synthesize(G, w), targets)
    return w.detach(), dist.detach()


def invert_frames(G, targets: torch.Tensor, *, method: str = "auto", steps: int = DEFAULT_STEPS,
                  warm_steps: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE, loss: str = "auto",
                  proximal: float = PROXIMAL, seed: int = 0, progress: bool = True) -> tuple[torch.Tensor, dict]:
    """W+ codes [K, num_ws, w_dim] (on G's device) of time-ordered frames `targets` [K, 3, R, R] in [-1, 1].

    method 'auto': an encoder of `invert.METHODS` whose function has a `supports(G)` attribute returning
    True, else 'projector': the first frame with NVIDIA's projector in W (`steps` steps, from the mean w),
    then `refine`d in W+; the later frames in batches of `batch_size`, each batch warm-started from the
    latest frame's codes and `refine`d in `warm_steps` (default steps // 4) with the `proximal` weight.
    Smaller batches start closer to their frames; larger ones are faster on GPUs.
    Returns (ws, details: method, loss, steps, warm_steps, batch_size, proximal, per-frame distance).
    """
    if targets.ndim != 4 or targets.shape[1:] != (3, G.resolution, G.resolution):
        raise InputError(f"targets must have shape [K, 3, {G.resolution}, {G.resolution}], got {list(targets.shape)}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if int(steps) < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    if not (math.isfinite(proximal) and proximal >= 0):
        raise InputError(f"the proximal weight must be a number >= 0, got {proximal!r}")
    warm_steps = max(1, int(steps) // 4) if warm_steps is None else int(warm_steps)
    if warm_steps < 1:
        raise InputError(f"warm_steps must be at least 1, got {warm_steps}")
    name = resolve_method(G, method)
    dev = G.w_avg.device
    targets = targets.to(dev, torch.float32)
    if name != "projector":
        ws, dist = [], []
        for chunk in targets.split(int(batch_size)):
            r = METHODS[name](G, chunk, progress=progress)
            ws.append(r.ws)
            dist.append(r.distance)
        return torch.cat(ws), {"method": name, "loss": r.loss, "distance": torch.cat(dist).tolist()}
    dist_fn = make_loss(loss).to(dev)
    # The first frame: W (one w for all layers), then W+ from there. W+ alone fits the image as well but
    # lands anywhere along directions the image does not show; later frames inherit that point, and the
    # motion read from their differences is only as faithful as its neighbourhood (e4e, Tov et al. 2021).
    first = project(G, targets[:1], steps=int(steps), w_plus=False, loss=dist_fn, seed=seed, progress=progress)
    w1, d1 = refine(G, targets[:1], first.ws, steps=warm_steps, loss=dist_fn, lr=WARM_LR, proximal=proximal)
    ws, dist = [w1], [d1]
    rest = targets[1:].split(int(batch_size))
    bar = tqdm(total=len(targets) - 1, desc="warm-started frames", unit="frame",
               disable=None if progress and rest else True, leave=False)
    try:
        for chunk in rest:
            w, d = refine(G, chunk, ws[-1][-1:].expand(chunk.shape[0], -1, -1), steps=warm_steps, loss=dist_fn,
                          lr=WARM_LR, proximal=proximal)
            ws.append(w)
            dist.append(d)
            bar.update(chunk.shape[0])
            bar.set_description(f"warm-started frames: dist {float(d.mean()):.4f}", refresh=False)
    finally:
        bar.close()
    details = {"method": "projector", "loss": first.loss, "steps": int(steps), "warm_steps": warm_steps,
               "batch_size": int(batch_size), "proximal": float(proximal), "distance": torch.cat(dist).tolist()}
    return torch.cat(ws), details


def _resize_square(frame: np.ndarray, R: int, label: str) -> Image.Image:
    h, w = frame.shape[:2]
    if abs(w - h) > 1:
        raise InputError(f"{label}: frames are {w}x{h}, not square; without alignment the video must show aligned "
                         f"face crops (turn alignment on to detect and align the face)")
    im = Image.fromarray(frame, "RGB")
    if min(w, h) != max(w, h):  # mp4 pads odd sizes by one pixel: drop it
        im = im.crop((0, 0, min(w, h), min(w, h)))
    return im if im.size == (R, R) else im.resize((R, R), Image.LANCZOS if im.width > R else Image.BICUBIC)


def video_anchors(G, path: str | os.PathLike, *, start=None, end=None, stride: int = 1,
                  max_frames: int | None = DEFAULT_MAX_FRAMES, face_index: int | None = None, align: bool = True,
                  detector: str = "auto", detect_every: int = DEFAULT_DETECT_EVERY,
                  detect_size: int = DEFAULT_DETECT_SIZE, smooth: float = DEFAULT_SMOOTH, method: str = "auto",
                  steps: int = DEFAULT_STEPS, warm_steps: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                  loss: str = "auto", proximal: float = PROXIMAL, seed: int = 0, progress: bool = True,
                  generator_name: str | None = None) -> VideoAnchors:
    """Anchors of the micromotion a clip shows: `max_frames` frames' W+ codes, in time order.

    path: a video file PyAV reads (mp4, mov, avi, webm, gif, ...). start, end: where to read, as seconds
    (2.5, '2.5s', '1:02.5') or frame indices ('30f'); end is exclusive. stride: track every n-th frame.
    max_frames: the anchors, evenly spread over the tracked frames that show the face (None: all).
    face_index, detector, detect_every, detect_size, smooth: see `track_face`. align: False for clips of
    already-aligned faces (e.g. world clips): frames are only resized. method, steps, warm_steps,
    batch_size, loss, proximal, seed: see `invert_frames`. Runs on G's device.

    Labels are the frames' times (seconds from the clip's first frame), so `Motion.from_anchors` uses them
    as times. Raises `InputError` naming the file for an unreadable clip, no frames selected, no face, or
    fewer than two usable frames.
    """
    t0 = time.perf_counter()
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < 2):
        raise InputError(f"max_frames must be a whole number >= 2 (a motion needs two anchors) or None, got "
                         f"{max_frames!r}")
    resolve_method(G, method)  # before any work
    if loss not in ("auto", "lpips", "pixel"):
        raise InputError(f"unknown loss {loss!r}; choose one of: auto, lpips, pixel")
    info = probe_video(path)
    label = info.path
    R = G.resolution
    track = None
    if align:
        track = track_face(info, start=start, end=end, stride=stride, face_index=face_index, detector=detector,
                           detect_every=detect_every, detect_size=detect_size, smooth=smooth, progress=progress)
        usable = np.flatnonzero(track.found)
        chosen = usable[spread(len(usable), max_frames)]
        indices = track.indices[chosen]
    else:
        tracked = select_frames(info, start, end, stride)
        chosen = spread(len(tracked), max_frames)
        indices = tracked[chosen]
    if info.truncated and max_frames is not None and len(indices) < max_frames:
        # half a clip, silently, would be a different motion: refuse unless the frames read are enough
        why = info.decode_error or "fewer frames than announced"
        raise InputError(f"{label}: the file is truncated or corrupt ({why}); read only {info.read_span()}, which gives {len(indices)} of the "
                         f"{max_frames} anchors asked for; re-export the clip, or ask for fewer anchors")
    if len(indices) < 2:
        raise InputError(f"{label}: only {len(indices)} frame(s) with a face; a motion needs at least 2 anchors "
                         f"(choose a longer stretch of the clip or a smaller stride)")
    crops = []
    for j, (idx, frame) in enumerate(iter_frames(info, indices)):
        if align:
            lm = track.landmarks[chosen[j]]
            crops.append(warp_to_quad(Image.fromarray(frame, "RGB"), ffhq_quad(lm), R))
        else:
            crops.append(_resize_square(frame, R, label))
    if len(crops) != len(indices):
        raise MicromotionError(f"{label}: {len(crops)} of {len(indices)} chosen frames could be decoded again; the "
                               f"file changed while it was being read")
    targets = torch.cat([image_to_tensor(c) for c in crops])
    ws, details = invert_frames(G, targets, method=method, steps=steps, warm_steps=warm_steps,
                                batch_size=batch_size, loss=loss, proximal=proximal, seed=seed, progress=progress)
    with torch.no_grad():
        recon = torch.cat([synthesize(G, chunk) for chunk in ws.split(int(batch_size))]).float().cpu()
    quality = psnr(recon, targets)
    times = [round(float(info.times[i]), 6) for i in indices]
    source = {
        "kind": "video",
        "video": os.path.basename(info.path),
        "path": info.path,
        "fps": info.fps,
        "size": list(info.size),
        "codec": info.codec,
        "clip_frames": info.num_frames,
        "truncated": info.truncated,
        "decode_error": info.decode_error,
        "start": None if start is None else str(start),
        "end": None if end is None else str(end),
        "stride": int(stride),
        "max_frames": max_frames,
        "frames": [int(i) for i in indices],
        "times": times,
        "align": bool(align),
        "generator": generator_name,
        "generator_hash": module_fingerprint(G),
        "inversion": {**{k: v for k, v in details.items() if k != "distance"},
                      "distance": [round(d, 6) for d in details["distance"]],
                      "psnr": [round(float(p), 3) for p in quality]},
    }
    if track is not None:
        source["tracking"] = {
            "frames_tracked": len(track.indices), "frames_with_face": track.num_found,
            "frames_without_face": track.num_missing, "detector": track.detector,
            "detections": int(track.detected.sum()), "detect_every": int(detect_every),
            "faces_seen": track.faces_seen, "multiple_faces": track.faces_seen > 1,
            "multi_face_frames": track.multi_face_frames, "face_index": track.face_index,
            "smooth_seconds": float(smooth), "smooth_window": track.smooth_window,
            "jitter_raw": _round(track.jitter(False)), "jitter_smoothed": _round(track.jitter(True)),
        }
        if track.num_missing:
            log.info("%s: %d of %d tracked frames without a face were skipped", label, track.num_missing,
                     len(track.indices))
        changes = identity_changes(targets, track.segment[chosen], times)
        source["tracking"]["identity_changes"] = changes
        for c in changes:
            log.warning("%s: the face tracked from %.2f s on looks like another person (dlib distance %.3f to the "
                        "face at %.2f s, same person below %.1f): a cut between people? The anchors mix them; trim "
                        "the clip with --start/--end", label, c["time"], c["distance"], times[0],
                        c["threshold"])
    anchors = Anchors(ws.detach().float().cpu(), times, source)
    frames = np.stack([np.asarray(c, dtype=np.uint8) for c in crops])
    log.info("%s: %d anchors from %.2f s to %.2f s in %.1f s (%s; PSNR %.1f dB mean)", label, len(anchors),
             times[0], times[-1], time.perf_counter() - t0, details["method"], float(quality.mean()))
    return VideoAnchors(anchors=anchors, frames=frames, reconstructions=recon, track=track)


def identity_changes(targets: torch.Tensor, segments: np.ndarray, times: Sequence[float]) -> list[dict]:
    """Where a track may have jumped to another person: the track restarts after losing the face (a cut, the
    face turned away), and nothing in tracking says it is the same face. For each later run of the track, the
    distance between the mean dlib face descriptor (`models.dlib_face`) of its anchors and that of the first
    run's; runs farther than dlib's same-person distance are returned as {"time", "distance", "threshold"}.
    targets: the anchors' FFHQ-aligned crops [N, 3, R, R] in [-1, 1]; segments: their track runs [N]. Empty
    with one run, or when dlib's network is not installed."""
    from ..models.dlib_face import SAME_PERSON_DISTANCE, chip_crops, load_dlib_face

    runs = [r for r in dict.fromkeys(int(v) for v in segments) if r >= 0]
    if len(runs) < 2:
        return []
    try:
        net = load_dlib_face().eval()
    except MicromotionError as e:
        log.info("identity across the track's runs not checked (%s)", str(e).splitlines()[0])
        return []
    with torch.no_grad():
        d = torch.cat([net.embed(chip_crops(c.float())) for c in targets.split(16)])
    seg = torch.as_tensor(np.asarray(segments))
    first = d[seg == runs[0]].mean(0)
    out = []
    for r in runs[1:]:
        dist = float((d[seg == r].mean(0) - first).norm())
        if dist > SAME_PERSON_DISTANCE:
            at = int(np.flatnonzero(np.asarray(segments) == r)[0])
            out.append({"time": round(float(times[at]), 3), "distance": round(dist, 3),
                        "threshold": SAME_PERSON_DISTANCE})
    return out


def _round(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 6)


def anchors_from_video(G, path: str | os.PathLike, **options) -> Anchors:
    """`video_anchors(G, path, **options).anchors`: the W+ codes of the clip's frames, labelled by time."""
    return video_anchors(G, path, **options).anchors
