"""Video anchors: a short clip of one face doing a micromotion -> time-ordered W+ latents (issue 7).

The paper (Wu et al., CPAL 2024, Sec. 3) names video frames as a source of anchors; its code has none. Here:

1. read: frames are decoded with PyAV (mp4, mov, avi, webm, gif, ...) and put in presentation order (packed
   B-frames in AVI files decode out of order); `start`/`end`/`stride` choose the tracked frames;
2. track (align=True): one face is followed through the tracked frames. The detector (dlib HOG on a copy no
   larger than `detect_size`) runs every `detect_every` frames; in between, the face box is predicted from the
   previous frame's landmarks. A detection that does not overlap the track ends it, and the frames predicted
   since the last confirming detection are dropped. With several faces the largest is tracked (or
   `face_index`), with a warning and a note in the anchors' source metadata;
3. smooth: the 68 landmarks are smoothed over time inside each unbroken run of frames by a local
   polynomial fit (Savitzky-Golay, in frame times, so gaps and strides are handled), which removes the
   landmark fitter's frame-to-frame jitter; the crops then do not shake;
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from ..align import (DEFAULT_MIN_EYE_DISTANCE, DETECTORS, WEAK_SCORE, detect_faces, face_landmarks, ffhq_quad,
                     warp_to_quad)
from ..errors import InputError, MicromotionError
from ..image_io import atomic_output
from ..invert import METHODS, image_to_tensor, make_loss, project, psnr, resolve_method, synthesize
from .base import Anchors, module_fingerprint

log = logging.getLogger(__name__)

__all__ = ["VideoInfo", "FaceTrack", "VideoAnchors", "probe_video", "parse_position", "select_frames",
           "iter_frames", "track_face", "smooth_landmarks", "landmark_jitter", "spread", "refine", "invert_frames",
           "video_anchors", "anchors_from_video"]

#: Default number of anchors taken from a clip (the paper's text anchors: 11 degrees + the start).
DEFAULT_MAX_FRAMES = 12
#: Projector steps for the first frame; later frames are warm-started and take a quarter.
DEFAULT_STEPS = 400
#: Time span (seconds) of the landmark smoothing window.
DEFAULT_SMOOTH = 0.3
DEFAULT_DETECT_EVERY = 5
#: Frames inverted together after the first (each batch starts from the previous batch's last frame).
DEFAULT_BATCH_SIZE = 4
DEFAULT_DETECT_SIZE = 480
# Warm-started frames (see `refine`): Adam's learning rate, and the weight of the squared distance to the
# neighbour's codes (mean over coordinates). Measured on a tiny generator's clip (tests/anchors/test_video.py):
# without the term the recovered direction's cosine to the truth is 0.87, with 3.0 it is 0.94.
WARM_LR = 0.03
PROXIMAL = 3.0
# A detection continues the track when it overlaps the predicted box this much (intersection over union).
TRACK_IOU = 0.3
# "auto" detector: after this many HOG attempts without any face, switch to the (slow) CNN detector.
HOG_ATTEMPTS_BEFORE_CNN = 3


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


def _decode(path: Path) -> Iterator[tuple[int, object]]:
    """(decode counter, av.VideoFrame) for every frame of the first video stream, until the end or the first
    undecodable packet (logged)."""
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
            log.warning("%s: decoding stopped after %d frames (%s); using the frames before it", path, k,
                        _one_line(e))


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
    fps = fps if fps and math.isfinite(fps) and fps > 0 else None
    stamps, size = [], None
    for k, frame in _decode(path):
        t = frame.time
        stamps.append((float(t) if t is not None else math.nan, k))
        size = size or (frame.width, frame.height)
    truncated = bool(announced) and len(stamps) < 0.9 * announced
    if not stamps:
        raise InputError(f"{path}: no video frames could be decoded; the file is empty or corrupt")
    times = np.array([t for t, _ in stamps])
    if np.isnan(times).any() or len(np.unique(times)) != len(times):
        # no (or repeated) timestamps: decode order at the nominal rate
        times = np.arange(len(stamps), dtype=np.float64) / (fps or 25.0)
        order = np.arange(len(stamps))
    else:
        order = np.argsort(times, kind="stable")
        times = times[order]
    times = times - times[0]
    return VideoInfo(path=str(path), times=times, order=np.asarray(order, dtype=np.int64), fps=fps, size=size,
                     codec=codec, truncated=truncated)


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


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _lm_box(lm: np.ndarray) -> np.ndarray:
    return np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()])


def _centre(lm: np.ndarray) -> np.ndarray:
    # nose and eyes: they move with the head, not with the mouth or the brows
    return lm[27:48].mean(0)


def _predict_box(lm: np.ndarray, anchor: tuple) -> tuple[float, float, float, float]:
    """The last detection's box, moved with the face since then. Its size stays the detector's: boxes
    re-derived from fitted landmarks drift in scale (a bigger box gives spread-out landmarks, and so on)."""
    box, centre = anchor
    dx, dy = _centre(lm) - centre
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def _eye_distance(lm: np.ndarray) -> float:
    return float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0))))


@dataclass
class FaceTrack:
    """One face followed through the tracked frames of a clip.

    indices: [T] presentation-order frame indices. times: [T] seconds. found: [T] whether the face is there.
    raw: [T, 68, 2] fitted landmarks (NaN where not found). landmarks: [T, 68, 2] smoothed over time.
    detected: [T] frames where the detector ran. segment: [T] run number of unbroken face frames (-1: none).
    faces_seen: the most faces the detector found in one frame. face_index: which face (0: largest) was
    tracked. detector: the detector that found it.
    """

    path: str
    indices: np.ndarray
    times: np.ndarray
    found: np.ndarray
    raw: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    segment: np.ndarray
    faces_seen: int
    face_index: int
    detector: str
    smooth_window: int = 1
    multi_face_frames: int = 0
    boxes: list = field(default_factory=list, repr=False)

    @property
    def num_found(self) -> int:
        return int(self.found.sum())

    @property
    def num_missing(self) -> int:
        return int((~self.found).sum())

    def jitter(self, smoothed: bool = True) -> float:
        """Mean landmark jitter (see `landmark_jitter`) of the smoothed or raw landmarks."""
        return landmark_jitter(self.landmarks if smoothed else self.raw, self.segment)


def _segments(segment: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(segment == s) for s in np.unique(segment[segment >= 0])]


def smooth_landmarks(landmarks: np.ndarray, times: np.ndarray, window: int, segment: np.ndarray | None = None,
                     order: int | None = None) -> np.ndarray:
    """Savitzky-Golay smoothing of landmarks [T, P, 2] over time, inside each run of `segment` ([T] ints,
    -1 for frames left as they are; default: one run).

    Each frame's value is a least-squares polynomial of degree `order` (default 2 for windows of 7 or more
    frames, else 1), fitted in time over `window` frames centred on it (shifted inward at a run's ends, so
    the ends are smoothed too), evaluated at its time. Fitting in times, not positions, handles gaps.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    out = lm.copy()
    T = lm.shape[0]
    segment = np.zeros(T, dtype=np.int64) if segment is None else np.asarray(segment)
    window = int(window)
    if window < 3:
        return out
    order = (2 if window >= 7 else 1) if order is None else int(order)
    times = np.asarray(times, dtype=np.float64)
    for idx in _segments(segment):
        n = len(idx)
        if n < 3:
            continue
        w = min(window, n)
        p = min(order, w - 2)  # at least one degree of freedom left, or nothing is smoothed
        if p < 0:
            continue
        y = lm[idx].reshape(n, -1)
        t = times[idx]
        span = max(float(t[-1] - t[0]), 1e-9)
        for i in range(n):
            lo = min(max(i - w // 2, 0), n - w)
            tt = (t[lo:lo + w] - t[i]) / span
            V = np.vander(tt, p + 1, increasing=True)
            coef, *_ = np.linalg.lstsq(V, y[lo:lo + w], rcond=None)
            out[idx[i]] = coef[0].reshape(lm.shape[1:])
    return out


def landmark_jitter(landmarks: np.ndarray, segment: np.ndarray | None = None) -> float:
    """Mean landmark acceleration: the norm of the second difference between consecutive frames, averaged
    over points and frames inside runs of `segment`, divided by the mean eye distance. Smooth motion adds
    little to it; frame-to-frame shaking dominates it. NaN if no run has 3 frames."""
    lm = np.asarray(landmarks, dtype=np.float64)
    segment = np.zeros(len(lm), dtype=np.int64) if segment is None else np.asarray(segment)
    acc, eyes = [], []
    for idx in _segments(segment):
        if len(idx) < 3:
            continue
        x = lm[idx]
        acc.append(np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean(-1))
        eyes.append([_eye_distance(f) for f in x])
    if not acc:
        return math.nan
    return float(np.concatenate(acc).mean() / np.concatenate(eyes).mean())


def _downscaled(frame: np.ndarray, max_side: int) -> tuple[Image.Image, float, float]:
    im = Image.fromarray(frame, "RGB")
    if max(im.size) <= max_side:
        return im, 1.0, 1.0
    s = max_side / max(im.size)
    size = (max(1, round(im.width * s)), max(1, round(im.height * s)))
    return im.resize(size, Image.BILINEAR, reducing_gap=2.0), size[0] / im.width, size[1] / im.height


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
    `smooth_landmarks`.
    Raises `InputError` naming the file when no frame shows a face.
    """
    info = path_or_info if isinstance(path_or_info, VideoInfo) else probe_video(path_or_info)
    if detector not in DETECTORS:
        raise InputError(f"unknown detector {detector!r}; choose one of: {', '.join(DETECTORS)}")
    if face_index is not None and (isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer))
                                   or face_index < 0):
        raise InputError(f"face index must be 0 or more (0 is the largest face), got {face_index!r}")
    if int(detect_every) < 1:
        raise InputError(f"detect_every must be >= 1, got {detect_every}")
    if int(detect_size) < 64:
        raise InputError(f"detect_size must be at least 64 pixels, got {detect_size}")
    if not (math.isfinite(smooth) and smooth >= 0):
        raise InputError(f"the smoothing window must be a number of seconds >= 0, got {smooth!r}")
    indices = select_frames(info, start, end, stride)
    T = len(indices)
    want = int(face_index or 0)
    raw = np.full((T, 68, 2), np.nan)
    found = np.zeros(T, dtype=bool)
    detected = np.zeros(T, dtype=bool)
    boxes: list = [None] * T
    current = "hog" if detector == "auto" else detector
    hog_misses = 0
    faces_seen, multi = 0, 0
    last_lm: np.ndarray | None = None  # landmarks of the previous frame while tracking
    last_seen: np.ndarray | None = None  # last landmarks ever, to re-acquire the same face after a loss
    anchor: tuple | None = None  # (box, landmark centre) of the last detection
    last_detect = -10 ** 9
    provisional: list[int] = []
    misses = 0  # detections in a row that saw no face while tracking
    used = None
    t0 = time.perf_counter()
    bar = tqdm(total=T, desc="tracking", unit="frame", disable=None if progress else True, leave=False)
    try:
        for idx, frame in iter_frames(info, indices):
            pos = int(np.searchsorted(indices, idx))
            bar.update(1)
            if last_lm is not None:
                run = pos - last_detect >= detect_every or pos == T - 1 or misses > 0
            else:
                # not tracking: look on every frame with HOG; the CNN costs ~1 s a frame, so not that often
                run = current == "hog" or pos - last_detect >= detect_every or pos == T - 1
            if not run and last_lm is None:
                continue  # not tracking, and not looking on this frame: no face
            if not run:
                box = _predict_box(last_lm, anchor)
                lm = face_landmarks(Image.fromarray(frame, "RGB"), box)
                raw[pos], found[pos], boxes[pos] = lm, True, box
                provisional.append(pos)
                last_lm = lm
                continue
            last_detect = pos
            detected[pos] = True
            small, sx, sy = _downscaled(frame, int(detect_size))
            faces = detect_faces(small, current, min_faces=1)
            if not faces and detector == "auto" and current == "hog" and used is None:
                hog_misses += 1
                if hog_misses >= HOG_ATTEMPTS_BEFORE_CNN:
                    log.info("%s: the HOG detector found no face in %d frames; switching to the CNN detector",
                             info.path, hog_misses)
                    current = "cnn"
                    faces = detect_faces(small, current, min_faces=1)
            dets = [((d.box[0] + 0.5) / sx - 0.5, (d.box[1] + 0.5) / sy - 0.5, (d.box[2] + 0.5) / sx - 0.5,
                     (d.box[3] + 0.5) / sy - 0.5) for d in faces]
            confident = sum(d.score >= WEAK_SCORE for d in faces)  # weak ones are often false positives
            faces_seen = max(faces_seen, confident)
            multi += confident > 1
            choice = None
            if last_lm is not None:  # continue the track: the detection overlapping the prediction
                pred = _predict_box(last_lm, anchor)
                scored = sorted(((_iou(pred, d), i) for i, d in enumerate(dets)), reverse=True)
                if scored and scored[0][0] >= TRACK_IOU:
                    choice = dets[scored[0][1]]
            elif last_seen is not None and dets:  # re-acquire: the detection nearest the face last seen
                c = _lm_box(last_seen)
                centre, scale = (c[:2] + c[2:]) / 2, max(c[2] - c[0], c[3] - c[1], 1.0)
                dist = [np.hypot(*(((np.array(d[:2]) + d[2:]) / 2 - centre))) / scale for d in dets]
                i = int(np.argmin(dist))
                choice = dets[i] if dist[i] < 1.5 else None
            else:  # first sight: largest first (detect_faces' order), weak detections only if nothing else
                ranked = [d for d, f in zip(dets, faces) if f.score >= WEAK_SCORE] or dets
                if len(ranked) > want:
                    choice = ranked[want]
                    if confident > 1:
                        log.warning("%s: %d faces in the frame at %.2f s; tracking face %d (0 is the largest; choose "
                                    "another with face_index / --face-index)", info.path, confident, info.times[idx],
                                    want)
            if choice is None and last_lm is not None and not dets and misses < detect_every:
                # The detector missed (a turned head, motion blur) but saw no other face: keep predicting,
                # unconfirmed, and look again on the next frame.
                misses += 1
                box = _predict_box(last_lm, anchor)
                lm = face_landmarks(Image.fromarray(frame, "RGB"), box)
                raw[pos], found[pos], boxes[pos] = lm, True, box
                provisional.append(pos)
                last_lm = lm
                continue
            misses = 0
            if choice is None:
                if last_lm is not None:
                    # the track is lost: frames predicted since the last confirmation are not trusted
                    for p in provisional:
                        raw[p], found[p], boxes[p] = np.nan, False, None
                    log.debug("%s: track lost at %.2f s (%d predicted frames dropped)", info.path, info.times[idx],
                              len(provisional))
                provisional, last_lm = [], None
                continue
            lm = face_landmarks(Image.fromarray(frame, "RGB"), choice)
            used = used or current
            anchor = (tuple(choice), _centre(lm))
            raw[pos], found[pos], boxes[pos] = lm, True, choice
            provisional, last_lm, last_seen = [], lm, lm
            if progress:
                bar.set_description(f"tracking: {int(found.sum())} face(s)", refresh=False)
    finally:
        bar.close()

    # too-small faces would be mostly blur once aligned: they count as missing
    for p in np.flatnonzero(found):
        if not _eye_distance(raw[p]) >= min_eye_distance:
            raw[p], found[p] = np.nan, False
    segment = np.full(T, -1, dtype=np.int64)
    s = -1
    for p in range(T):
        if found[p]:
            if p == 0 or not found[p - 1]:
                s += 1
            segment[p] = s
    rate = (info.fps or (T / max(info.duration, 1e-9))) / int(stride)
    # odd (centred), and at least 3 frames when smoothing is on, however sparse the tracked frames
    window = max(3, int(round(smooth * rate))) if smooth > 0 else 1
    window += 1 - window % 2
    times = info.times[indices]
    smoothed = smooth_landmarks(raw, times, window, segment)
    if not found.any():
        tried = {"auto": "HOG and CNN detectors", "hog": "HOG detector", "cnn": "CNN detector"}[detector]
        if detector == "auto" and current == "hog":
            tried = "HOG detector"
        raise InputError(f"{info.path}: no face found in any of the {T} frames looked at (tried the {tried}); use "
                         f"a clip where the face is clearly visible" +
                         ("" if want == 0 or faces_seen > want else
                          f", or a smaller face index ({faces_seen} face(s) seen at most)"))
    track = FaceTrack(path=info.path, indices=indices, times=times, found=found, raw=raw, landmarks=smoothed,
                      detected=detected, segment=segment, faces_seen=faces_seen, face_index=want,
                      detector=used or current, smooth_window=window, multi_face_frames=multi, boxes=boxes)
    log.info("%s: face on %d of %d frames (%d detections, %s, %.1f s); landmark jitter %.4f -> %.4f eye distances "
             "(smoothing over %d frames)", info.path, track.num_found, T, int(detected.sum()), track.detector,
             time.perf_counter() - t0, track.jitter(False), track.jitter(True), window)
    return track


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
    anchors = Anchors(ws.detach().float().cpu(), times, source)
    frames = np.stack([np.asarray(c, dtype=np.uint8) for c in crops])
    log.info("%s: %d anchors from %.2f s to %.2f s in %.1f s (%s; PSNR %.1f dB mean)", label, len(anchors),
             times[0], times[-1], time.perf_counter() - t0, details["method"], float(quality.mean()))
    return VideoAnchors(anchors=anchors, frames=frames, reconstructions=recon, track=track)


def _round(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 6)


def anchors_from_video(G, path: str | os.PathLike, **options) -> Anchors:
    """`video_anchors(G, path, **options).anchors`: the W+ codes of the clip's frames, labelled by time."""
    return video_anchors(G, path, **options).anchors
