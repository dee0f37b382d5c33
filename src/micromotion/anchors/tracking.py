"""Face tracking through the frames of a clip: `FaceTracker` follows one face and returns a `FaceTrack`.

The detector (dlib HOG on a copy no larger than `detect_size`; the CNN when HOG finds nothing in its first
attempts) runs every `detect_every` frames; in between, the face box is predicted from the previous frame's
landmarks. A detection that does not overlap the track ends it, and the frames predicted since the last
confirming detection are dropped. With several faces the largest is tracked (or `face_index`), with a
warning. The 68 landmarks are then smoothed over time inside each unbroken run of frames (`smooth_landmarks`,
Savitzky-Golay in frame times), which removes the landmark fitter's frame-to-frame jitter.
`anchors.video.track_face` reads a clip and feeds its frames to a `FaceTracker`.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..align import DEFAULT_MIN_EYE_DISTANCE, DETECTORS, WEAK_SCORE, detect_faces, face_landmarks
from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["FaceTracker", "FaceTrack", "smooth_landmarks", "landmark_jitter", "smoothing_window"]

#: Time span (seconds) of the landmark smoothing window.
DEFAULT_SMOOTH = 0.3
DEFAULT_DETECT_EVERY = 5
DEFAULT_DETECT_SIZE = 480
# A detection continues the track when it overlaps the predicted box this much (intersection over union).
TRACK_IOU = 0.3
# "auto" detector: after this many HOG attempts without any face, switch to the (slow) CNN detector.
HOG_ATTEMPTS_BEFORE_CNN = 3


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


def smoothing_window(smooth: float, rate: float) -> int:
    """The smoothing window in frames for `smooth` seconds at `rate` tracked frames a second: 1 (no smoothing)
    for smooth = 0, else odd (centred) and at least 3 frames, however sparse the tracked frames."""
    window = max(3, int(round(smooth * rate))) if smooth > 0 else 1
    return window + 1 - window % 2


class FaceTracker:
    """Follows one face through a sequence of frames (see the module docstring for the method).

    face_index: which face of the first frame showing enough faces, counting from the largest (default 0).
    detector: 'auto' (HOG; the CNN if HOG finds nothing in its first attempts), 'hog' or 'cnn'.
    detect_every: run the detector on every n-th frame (and the last); predict the box in between.
    detect_size: the detector sees a copy no larger than this (landmarks are fitted at full resolution).
    min_eye_distance: faces with eyes closer than this (pixels) count as missing (mostly blur once aligned).

    `track(frames, indices, times)` runs it; the settings are checked when the tracker is made.
    """

    def __init__(self, *, face_index: int | None = None, detector: str = "auto",
                 detect_every: int = DEFAULT_DETECT_EVERY, detect_size: int = DEFAULT_DETECT_SIZE,
                 min_eye_distance: float = DEFAULT_MIN_EYE_DISTANCE):
        if detector not in DETECTORS:
            raise InputError(f"unknown detector {detector!r}; choose one of: {', '.join(DETECTORS)}")
        if face_index is not None and (isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer))
                                       or face_index < 0):
            raise InputError(f"face index must be 0 or more (0 is the largest face), got {face_index!r}")
        if int(detect_every) < 1:
            raise InputError(f"detect_every must be >= 1, got {detect_every}")
        if int(detect_size) < 64:
            raise InputError(f"detect_size must be at least 64 pixels, got {detect_size}")
        self.detector = detector
        self.want = int(face_index or 0)
        self.detect_every = int(detect_every)
        self.detect_size = int(detect_size)
        self.min_eye_distance = min_eye_distance

    # -- one run -------------------------------------------------------------------------------------------

    def track(self, frames: Iterable[tuple[int, np.ndarray]], indices: np.ndarray, times: np.ndarray, *,
              window: int = 1, label: str = "frames", progress: bool = True) -> FaceTrack:
        """Follow the face through `frames`: (index, uint8 [H, W, 3] RGB) pairs whose indices are among
        `indices` [T] (frame numbers, increasing), shown at `times` [T] seconds. `window`: the landmark
        smoothing window in frames (`smoothing_window`). `label` names the clip in messages.
        Raises `InputError` naming `label` when no frame shows a face."""
        self._start(np.asarray(indices), np.asarray(times, dtype=np.float64), label)
        t0 = time.perf_counter()
        bar = tqdm(total=self.T, desc="tracking", unit="frame", disable=None if progress else True, leave=False)
        try:
            for idx, frame in frames:
                bar.update(1)
                if self._step(int(np.searchsorted(self.indices, idx)), frame) and progress:
                    bar.set_description(f"tracking: {int(self.found.sum())} face(s)", refresh=False)
        finally:
            bar.close()
        track = self._finish(window)
        log.info("%s: face on %d of %d frames (%d detections, %s, %.1f s); landmark jitter %.4f -> %.4f eye "
                 "distances (smoothing over %d frames)", label, track.num_found, self.T, int(self.detected.sum()),
                 track.detector, time.perf_counter() - t0, track.jitter(False), track.jitter(True), window)
        return track

    def _start(self, indices: np.ndarray, times: np.ndarray, label: str) -> None:
        T = len(indices)
        self.indices, self.times, self.label, self.T = indices, times, label, T
        # what each frame got
        self.raw = np.full((T, 68, 2), np.nan)  # fitted landmarks
        self.found = np.zeros(T, dtype=bool)
        self.detected = np.zeros(T, dtype=bool)  # the detector ran on it
        self.boxes: list = [None] * T
        # the detector
        self.current = "hog" if self.detector == "auto" else self.detector  # the one in use
        self.used: str | None = None  # the one that first found the face
        self.hog_misses = 0
        self.faces_seen, self.multi = 0, 0  # most confident faces in a frame; frames with several
        # the track
        self.last_lm: np.ndarray | None = None  # landmarks of the previous frame while tracking
        self.last_seen: np.ndarray | None = None  # last landmarks ever, to re-acquire the same face after a loss
        self.anchor: tuple | None = None  # (box, landmark centre) of the last detection
        self.last_detect = -10 ** 9
        self.provisional: list[int] = []  # frames predicted since the last confirming detection
        self.misses = 0  # detections in a row that saw no face while tracking

    def _step(self, pos: int, frame: np.ndarray) -> bool:
        """Frame number `pos` (0..T-1): detect or predict. True when a detection confirmed the face."""
        tracking = self.last_lm is not None
        if not self._detection_due(pos):
            if tracking:
                self._predict(pos, frame)
            return False  # not tracking, and not looking on this frame: no face
        self.last_detect = pos
        self.detected[pos] = True
        dets, faces, confident = self._detect(frame)
        choice = self._choose(dets, faces, confident, pos)
        if choice is None and tracking and not dets and self.misses < self.detect_every:
            # The detector missed (a turned head, motion blur) but saw no other face: keep predicting,
            # unconfirmed, and look again on the next frame.
            self.misses += 1
            self._predict(pos, frame)
            return False
        self.misses = 0
        if choice is None:
            self._lose(pos)
            return False
        self._confirm(pos, frame, choice)
        return True

    def _detection_due(self, pos: int) -> bool:
        if self.last_lm is not None:
            return pos - self.last_detect >= self.detect_every or pos == self.T - 1 or self.misses > 0
        # not tracking: look on every frame with HOG; the CNN costs ~1 s a frame, so not that often
        return self.current == "hog" or pos - self.last_detect >= self.detect_every or pos == self.T - 1

    def _predict(self, pos: int, frame: np.ndarray) -> None:
        """Landmarks in the box predicted from the previous frame's, unconfirmed until the next detection."""
        box = _predict_box(self.last_lm, self.anchor)
        lm = face_landmarks(Image.fromarray(frame, "RGB"), box)
        self.raw[pos], self.found[pos], self.boxes[pos] = lm, True, box
        self.provisional.append(pos)
        self.last_lm = lm

    def _detect(self, frame: np.ndarray) -> tuple[list, list, int]:
        """(boxes in frame pixels, the detections, how many are confident) on a downscaled copy."""
        small, sx, sy = _downscaled(frame, self.detect_size)
        faces = detect_faces(small, self.current, min_faces=1)
        if not faces and self.detector == "auto" and self.current == "hog" and self.used is None:
            self.hog_misses += 1
            if self.hog_misses >= HOG_ATTEMPTS_BEFORE_CNN:
                log.info("%s: the HOG detector found no face in %d frames; switching to the CNN detector",
                         self.label, self.hog_misses)
                self.current = "cnn"
                faces = detect_faces(small, self.current, min_faces=1)
        dets = [((d.box[0] + 0.5) / sx - 0.5, (d.box[1] + 0.5) / sy - 0.5, (d.box[2] + 0.5) / sx - 0.5,
                 (d.box[3] + 0.5) / sy - 0.5) for d in faces]
        confident = sum(d.score >= WEAK_SCORE for d in faces)  # weak ones are often false positives
        self.faces_seen = max(self.faces_seen, confident)
        self.multi += confident > 1
        return dets, faces, confident

    def _choose(self, dets: list, faces: list, confident: int, pos: int):
        """The detection that is the tracked face, or None."""
        if self.last_lm is not None:  # continue the track: the detection overlapping the prediction
            pred = _predict_box(self.last_lm, self.anchor)
            scored = sorted(((_iou(pred, d), i) for i, d in enumerate(dets)), reverse=True)
            if scored and scored[0][0] >= TRACK_IOU:
                return dets[scored[0][1]]
            return None
        if self.last_seen is not None and dets:  # re-acquire: the detection nearest the face last seen
            c = _lm_box(self.last_seen)
            centre, scale = (c[:2] + c[2:]) / 2, max(c[2] - c[0], c[3] - c[1], 1.0)
            dist = [np.hypot(*(((np.array(d[:2]) + d[2:]) / 2 - centre))) / scale for d in dets]
            i = int(np.argmin(dist))
            return dets[i] if dist[i] < 1.5 else None
        # first sight: largest first (detect_faces' order), weak detections only if nothing else
        ranked = [d for d, f in zip(dets, faces) if f.score >= WEAK_SCORE] or dets
        if len(ranked) <= self.want:
            return None
        if confident > 1:
            log.warning("%s: %d faces in the frame at %.2f s; tracking face %d (0 is the largest; choose "
                        "another with face_index / --face-index)", self.label, confident, self.times[pos], self.want)
        return ranked[self.want]

    def _lose(self, pos: int) -> None:
        if self.last_lm is not None:
            # the track is lost: frames predicted since the last confirmation are not trusted
            for p in self.provisional:
                self.raw[p], self.found[p], self.boxes[p] = np.nan, False, None
            log.debug("%s: track lost at %.2f s (%d predicted frames dropped)", self.label, self.times[pos],
                      len(self.provisional))
        self.provisional, self.last_lm = [], None

    def _confirm(self, pos: int, frame: np.ndarray, box) -> None:
        lm = face_landmarks(Image.fromarray(frame, "RGB"), box)
        self.used = self.used or self.current
        self.anchor = (tuple(box), _centre(lm))
        self.raw[pos], self.found[pos], self.boxes[pos] = lm, True, box
        self.provisional, self.last_lm, self.last_seen = [], lm, lm

    def _finish(self, window: int) -> FaceTrack:
        raw, found, T = self.raw, self.found, self.T
        # too-small faces would be mostly blur once aligned: they count as missing
        for p in np.flatnonzero(found):
            if not _eye_distance(raw[p]) >= self.min_eye_distance:
                raw[p], found[p] = np.nan, False
        segment = np.full(T, -1, dtype=np.int64)
        s = -1
        for p in range(T):
            if found[p]:
                if p == 0 or not found[p - 1]:
                    s += 1
                segment[p] = s
        if not found.any():
            tried = {"auto": "HOG and CNN detectors", "hog": "HOG detector", "cnn": "CNN detector"}[self.detector]
            if self.detector == "auto" and self.current == "hog":
                tried = "HOG detector"
            raise InputError(f"{self.label}: no face found in any of the {T} frames looked at (tried the {tried}); "
                             f"use a clip where the face is clearly visible" +
                             ("" if self.want == 0 or self.faces_seen > self.want else
                              f", or a smaller face index ({self.faces_seen} face(s) seen at most)"))
        smoothed = smooth_landmarks(raw, self.times, window, segment)
        return FaceTrack(path=self.label, indices=self.indices, times=self.times, found=found, raw=raw,
                         landmarks=smoothed, detected=self.detected, segment=segment, faces_seen=self.faces_seen,
                         face_index=self.want, detector=self.used or self.current, smooth_window=window,
                         multi_face_frames=self.multi, boxes=self.boxes)
