"""Faces in and out: detection, 68 landmarks, FFHQ alignment, and pasting a rendered face back into the photo.

Detection and landmarks use dlib (PyPI `dlib-bin`) with the models shipped by `face-recognition-models`:
the HOG frontal-face detector first, then, for out-of-domain faces (paintings, statues, game art) that HOG
misses, the CNN (MMOD) detector; small faces are retried on an upsampled image.

Alignment follows the FFHQ recipe (Karras et al. 2019; NVlabs/ffhq-dataset `recreate_aligned_images`): an
oriented square ("quad") from the eye-to-eye and eye-to-mouth vectors; the photo is cropped around it, shrunk
when the face is much larger than the output, padded by reflection + blur where the quad leaves the photo,
and resampled onto the quad with 2-4x supersampling.

Coordinates are pixel-centre coordinates (pixel (col, row) has its centre at (col, row), as dlib's
landmarks). `AlignedFace.transform` is the 3x3 matrix taking homogeneous aligned-crop coordinates (u, v, 1)
to original-photo coordinates (x, y, 1); `paste_back` inverts it to warp a rendered face into the photo.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import InputError, MissingDependencyError
from .io.images import ImageSource, describe, load_image, to_rgb

log = logging.getLogger(__name__)

DETECTORS = ("auto", "hog", "cnn")
#: Faces whose eyes are closer than this (in photo pixels) are refused: the crop would be mostly blur.
DEFAULT_MIN_EYE_DISTANCE = 16.0
# The detectors run on a downscaled copy (landmarks are then fitted at full resolution). HOG is cheap; the
# CNN costs ~1 s per 0.3 megapixel on one CPU core, so it sees a smaller image.
HOG_MAX_SIDE = 1024
CNN_MAX_SIDE = 800
#: The CNN only runs where its image's shorter side, after upsampling, is at least this: dlib's MMOD detector
#: finds faces of 80 px and up at its own scale (40 px in the photo with one upsampling), so a smaller image
#: holds none it could find, and on such images dlib 20.0.1 writes past its buffers before raising (valgrind:
#: invalid writes on 2-8 px squares and an 800 x 3 strip; a 10 x 300 image upsampled once crashed the process
#: at exit). That heap damage crashed test runs later, in unrelated code (a backward pass, a convolution).
CNN_MIN_SIDE = 40
#: Detections scoring below this are ranked after the others (true faces score ~0.5-3 with either detector).
WEAK_SCORE = 0.3


# MissingDependencyError lives in errors.py


# ----------------------------------------------------------------------------------------------------------
# dlib models


def _models_dir() -> Path:
    # Located without importing face_recognition_models: its __init__ needs pkg_resources, which recent
    # setuptools no longer ship.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("face detection needs the dlib models of the 'face-recognition-models' "
                                     "package; run `pip install face-recognition-models`")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _model_file(name: str) -> str:
    path = _models_dir() / name
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing; reinstall it with "
                                     f"`pip install --force-reinstall face-recognition-models`")
    return str(path)


def _dlib():
    try:
        import dlib
    except ImportError:
        raise MissingDependencyError("face detection needs dlib; run `pip install dlib-bin` (prebuilt wheels) "
                                     "or `pip install dlib`") from None
    return dlib


@functools.lru_cache(maxsize=None)
def _hog_detector():
    return _dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn_detector():
    return _dlib().cnn_face_detection_model_v1(_model_file("mmod_human_face_detector.dat"))


@functools.lru_cache(maxsize=None)
def _shape_predictor():
    return _dlib().shape_predictor(_model_file("shape_predictor_68_face_landmarks.dat"))


# ----------------------------------------------------------------------------------------------------------
# Detection


@dataclass(frozen=True)
class FaceDetection:
    """One detected face: `box` (left, top, right, bottom) in photo pixels, detector score, detector name."""

    box: tuple[float, float, float, float]
    score: float
    detector: str

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def _downscaled(image: Image.Image, max_side: int) -> tuple[np.ndarray, float, float]:
    """The image as a uint8 array no larger than `max_side`, and its x/y scale relative to the photo."""
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        small = image.resize(size, Image.BILINEAR, reducing_gap=3.0)
        return np.ascontiguousarray(np.asarray(small, dtype=np.uint8)), size[0] / image.width, size[1] / image.height
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8)), 1.0, 1.0


def _to_photo(rect, sx: float, sy: float) -> tuple[float, float, float, float]:
    l, t, r, b = rect.left(), rect.top(), rect.right(), rect.bottom()
    return ((l + 0.5) / sx - 0.5, (t + 0.5) / sy - 0.5, (r + 0.5) / sx - 0.5, (b + 0.5) / sy - 0.5)


def _passes(detector: str, image: Image.Image):
    """(name, max_side, upsample) passes in the order tried: cheap and coarse first."""
    longest = max(image.size)
    hog = [("hog", HOG_MAX_SIDE, 0), ("hog", HOG_MAX_SIDE, 1)]
    if min(longest, HOG_MAX_SIDE) <= 512:
        hog.append(("hog", HOG_MAX_SIDE, 2))
    cnn = [("cnn", CNN_MAX_SIDE, 0)]
    if min(longest, CNN_MAX_SIDE) <= 640:
        cnn.append(("cnn", CNN_MAX_SIDE, 1))
    return {"hog": hog, "cnn": cnn, "auto": hog + cnn}[detector]


def detect_faces(image: ImageSource, detector: str = "auto", *, min_faces: int = 1) -> list[FaceDetection]:
    """Faces in `image`, largest first (weak detections last), in photo coordinates.

    detector: 'hog' (fast, frontal photos), 'cnn' (MMOD; paintings, statues, cartoons, turned heads) or
    'auto' (HOG, then HOG on an upsampled image, then the CNN) -- passes stop at the first that finds at
    least `min_faces` faces; if none does, the pass with the most faces wins.
    """
    if detector not in DETECTORS:
        raise InputError(f"unknown detector {detector!r}; choose one of: {', '.join(DETECTORS)}")
    image = load_image(image) if not (isinstance(image, Image.Image) and image.mode == "RGB") else image
    best: list[FaceDetection] = []
    cache: dict[int, tuple[np.ndarray, float, float]] = {}
    for name, max_side, upsample in _passes(detector, image):
        if max_side not in cache:
            cache[max_side] = _downscaled(image, max_side)
        arr, sx, sy = cache[max_side]
        if name == "cnn" and min(arr.shape[:2]) * 2 ** upsample < CNN_MIN_SIDE:
            log.debug("cnn skipped on %dx%d (upsample %d): too small to hold a face it finds", arr.shape[1],
                      arr.shape[0], upsample)
            continue
        if name == "hog":
            rects, scores, _ = _hog_detector().run(arr, upsample, 0.0)
            found = [FaceDetection(_to_photo(r, sx, sy), float(s), "hog") for r, s in zip(rects, scores)]
        else:
            try:
                found = [FaceDetection(_to_photo(d.rect, sx, sy), float(d.confidence), "cnn")
                         for d in _cnn_detector()(arr, upsample)]
            except RuntimeError as e:  # dlib: "Filter windows must be small enough..." (not reached: CNN_MIN_SIDE)
                log.debug("cnn on %dx%d: %s", arr.shape[1], arr.shape[0], " ".join(str(e).split())[:200])
                found = []
        log.debug("%s (upsample %d, %dx%d): %d face(s)", name, upsample, arr.shape[1], arr.shape[0], len(found))
        # Largest first; weak detections (upsampled HOG's false positives on small images) after confident ones.
        found.sort(key=lambda d: (d.score >= WEAK_SCORE, d.area), reverse=True)
        if len(found) > len(best):
            best = found
        if len(found) >= min_faces:
            return found
    return best


def face_landmarks(image: ImageSource, box: Sequence[float]) -> np.ndarray:
    """The 68 iBUG landmarks `[68, 2]` (x, y) of the face in `box` (left, top, right, bottom), fitted on the
    full-resolution image."""
    image = load_image(image) if not (isinstance(image, Image.Image) and image.mode == "RGB") else image
    dlib = _dlib()
    arr = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    l, t, r, b = (int(round(v)) for v in box)
    shape = _shape_predictor()(arr, dlib.rectangle(l, t, r, b))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
# Geometry


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square `[4, 2]` (top-left, bottom-left, bottom-right, top-right) from 68 landmarks."""
    lm = _check_landmarks(landmarks)
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    # Oriented crop: x points along the eyes (tilted by the eye-mouth direction), y is x turned by 90 degrees.
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _check_landmarks(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise InputError(f"landmarks must have shape [68, 2] (iBUG 68-point layout), got {list(lm.shape)}")
    return lm


def quad_transform(quad: np.ndarray, size: int) -> np.ndarray:
    """3x3 matrix: aligned-crop pixel (u, v, 1) of a `size`-square crop -> photo pixel (x, y, 1)."""
    q = np.asarray(quad, dtype=np.float64)
    ex, ey = (q[3] - q[0]) / size, (q[1] - q[0]) / size
    origin = q[0] + 0.5 * (ex + ey)  # the quad's corner is the crop's pixel-edge, not pixel (0, 0)'s centre
    return np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]], [0.0, 0.0, 1.0]])


def resize_matrix(src: tuple[float, float], dst: tuple[float, float]) -> np.ndarray:
    """3x3 matrix: pixel of an image of size `src` (w, h) -> pixel of the same image resized to `dst`."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def apply_transform(matrix: np.ndarray, points) -> np.ndarray:
    """Apply a 3x3 (affine or projective) matrix to points `[..., 2]`."""
    p = np.asarray(points, dtype=np.float64)
    h = p @ matrix[:, :2].T + matrix[:, 2]
    return h[..., :2] / h[..., 2:3]


def _pil_affine(matrix: np.ndarray) -> tuple[float, ...]:
    """PIL's AFFINE data for an output->input pixel-centre matrix (PIL samples at pixel centres + 0.5)."""
    m = _translate(0.5, 0.5) @ matrix @ _translate(-0.5, -0.5)
    return tuple(float(v) for v in (*m[0], *m[1]))


def warp_to_quad(image: Image.Image, quad: np.ndarray, size: int) -> Image.Image:
    """Resample the oriented square `quad` of `image` to a `size` x `size` crop, FFHQ-style: crop, shrink
    large faces (anti-aliased), pad outside the photo by reflection + blur, then supersampled bilinear
    resampling. The geometry is exactly `quad_transform(quad, size)`."""
    quad = np.asarray(quad, dtype=np.float64)
    img = image if image.mode == "RGB" else image.convert("RGB")
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    to_work = np.eye(3)  # photo pixel -> working-image pixel

    # Crop (first, so a huge photo is never resized whole), with a border for the filters' support.
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0, y0 = (int(np.floor(quad[:, i].min())) - border for i in (0, 1))
    x1, y1 = (int(np.ceil(quad[:, i].max())) + border for i in (0, 1))
    crop = (max(x0, 0), max(y0, 0), min(x1 + 1, img.width), min(y1 + 1, img.height))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise InputError("the face's crop lies entirely outside the image")
    if crop != (0, 0, img.width, img.height):
        img = img.crop(crop)
        to_work = _translate(-crop[0], -crop[1]) @ to_work

    # Shrink: faces much larger than the output are first reduced with a proper anti-aliasing filter.
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (max(1, int(np.rint(img.width / shrink))), max(1, int(np.rint(img.height / shrink))))
        to_work = resize_matrix(img.size, rsize) @ to_work
        img = img.resize(rsize, Image.LANCZOS)
        qsize /= shrink
    wquad = apply_transform(to_work, quad)

    # Pad where the quad leaves the photo: reflect, blur towards the edges, fade to the median colour.
    pad = (max(-int(np.floor(wquad[:, 0].min())) + border, 0), max(-int(np.floor(wquad[:, 1].min())) + border, 0),
           max(int(np.ceil(wquad[:, 0].max())) - img.width + border, 0),
           max(int(np.ceil(wquad[:, 1].max())) - img.height + border, 0))
    if max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3)), 1) for p in pad)
        img = _pad_reflect_blur(img, pad, qsize)
        to_work = _translate(pad[0], pad[1]) @ to_work

    # Resample onto the quad, supersampled when the quad is larger than the output.
    k = int(min(4, max(1, math.ceil(qsize / size))))
    super_to_aligned = resize_matrix((size * k, size * k), (size, size))
    m = to_work @ quad_transform(quad, size) @ super_to_aligned
    out = img.transform((size * k, size * k), Image.AFFINE, _pil_affine(m), Image.BILINEAR)
    if k > 1:
        out = out.resize((size, size), Image.LANCZOS)
    return out


def _pad_reflect_blur(img: Image.Image, pad: tuple[int, int, int, int], qsize: float) -> Image.Image:
    a = np.asarray(img, dtype=np.float32)
    a = np.pad(a, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = a.shape
    y, x = np.ogrid[:h, :w]
    mask = np.maximum(1.0 - np.minimum(x.astype(np.float32) / pad[0], (w - 1 - x).astype(np.float32) / pad[2]),
                      1.0 - np.minimum(y.astype(np.float32) / pad[1], (h - 1 - y).astype(np.float32) / pad[3]))
    mask = mask[:, :, None]
    blurred = np.asarray(Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
                         .filter(ImageFilter.GaussianBlur(qsize * 0.02)), dtype=np.float32)
    a += (blurred - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")


# ----------------------------------------------------------------------------------------------------------
# Alignment


@dataclass
class AlignedFace:
    """An FFHQ-aligned face crop and where it came from.

    image: the aligned crop, RGB, `size` x `size`. landmarks: `[68, 2]` in photo pixels. quad: `[4, 2]` crop
    corners in photo pixels (top-left, bottom-left, bottom-right, top-right). transform: `[3, 3]`, aligned
    pixel (u, v, 1) -> photo pixel (x, y, 1). detector: 'hog', 'cnn' or 'given' (landmarks passed in).
    """

    image: Image.Image
    landmarks: np.ndarray
    quad: np.ndarray
    transform: np.ndarray
    size: int
    source_size: tuple[int, int]
    detector: str
    score: float = float("nan")
    box: tuple[float, float, float, float] | None = None
    face_index: int = 0
    num_faces: int = 1
    source: str = "<image>"
    original: Image.Image | None = field(default=None, repr=False)

    @property
    def inverse_transform(self) -> np.ndarray:
        """`[3, 3]`, photo pixel -> aligned pixel."""
        return np.linalg.inv(self.transform)

    def to_original(self, points) -> np.ndarray:
        """Aligned-crop points `[..., 2]` -> photo points."""
        return apply_transform(self.transform, points)

    def to_aligned(self, points) -> np.ndarray:
        """Photo points `[..., 2]` -> aligned-crop points."""
        return apply_transform(self.inverse_transform, points)

    @property
    def landmarks_aligned(self) -> np.ndarray:
        return self.to_aligned(self.landmarks)

    @property
    def eye_distance(self) -> float:
        """Distance between the eye centres, in photo pixels."""
        return float(np.hypot(*(self.landmarks[42:48].mean(0) - self.landmarks[36:42].mean(0))))

    def transform_for(self, resolution: int) -> np.ndarray:
        """`[3, 3]`: pixel of the crop rendered at `resolution` (e.g. the generator's) -> photo pixel."""
        return self.transform @ resize_matrix((resolution, resolution), (self.size, self.size))

    def resized(self, size: int) -> "AlignedFace":
        """The same face aligned at another crop size (re-sampled from the original photo when kept)."""
        if self.original is not None:
            image = warp_to_quad(self.original, self.quad, size)
        else:
            image = self.image.resize((size, size), Image.LANCZOS)
        return replace(self, image=image, size=size, transform=quad_transform(self.quad, size))


def align_face(image: ImageSource, size: int = 1024, face_index: int | None = None, detector: str = "auto", *,
               landmarks: np.ndarray | None = None, min_eye_distance: float = DEFAULT_MIN_EYE_DISTANCE,
               max_pixels: int | None = None) -> AlignedFace:
    """Detect a face in `image` and return its FFHQ-aligned `size` x `size` crop as an `AlignedFace`.

    image: a path, bytes, PIL image or array (see `micromotion.io.images.load_image`).
    face_index: which face, counting from the largest (default: the largest, 0).
    detector: 'auto' (HOG, then the CNN for faces HOG misses), 'hog' or 'cnn'.
    landmarks: `[68, 2]` landmarks in photo pixels, to skip detection.
    Raises `InputError` (one line naming the file) for an unreadable image, no face, a face index out of
    range, or a face whose eyes are closer than `min_eye_distance` photo pixels.
    """
    label = describe(image)
    size = int(size)
    if size < 8:
        raise InputError(f"the aligned size must be at least 8 pixels, got {size}")
    if face_index is not None and face_index < 0:
        raise InputError(f"face index must be 0 or more (0 is the largest face), got {face_index}")
    if detector not in DETECTORS:
        raise InputError(f"unknown detector {detector!r}; choose one of: {', '.join(DETECTORS)}")
    photo = load_image(image, max_pixels=max_pixels, name=label)
    index = face_index or 0
    if landmarks is not None:
        lm, found, det = _check_landmarks(landmarks), None, FaceDetection((np.nan,) * 4, float("nan"), "given")
        num_faces = 1
    else:
        faces = detect_faces(photo, detector, min_faces=index + 1)
        if not faces:
            tried = {"auto": "HOG and CNN detectors", "hog": "HOG detector", "cnn": "CNN detector"}[detector]
            raise InputError(f"{label}: no face found (tried the {tried}); use an image with a clearly visible "
                             f"face" + (", or try --detector auto" if detector != "auto" else ""))
        if index >= len(faces):
            raise InputError(f"{label}: face index {index} is out of range: {len(faces)} face(s) found "
                             f"(0 is the largest); choose 0..{len(faces) - 1}")
        det, num_faces = faces[index], len(faces)
        lm = face_landmarks(photo, det.box)
        found = det.box
    eye_dist = float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0))))
    if not eye_dist >= min_eye_distance:
        raise InputError(f"{label}: the face is too small (eyes {eye_dist:.0f} px apart, at least "
                         f"{min_eye_distance:.0f} needed); use a larger photo or one taken closer to the face")
    quad = ffhq_quad(lm)
    upscale = size / float(np.hypot(*(quad[3] - quad[0])))
    if upscale > 4:
        log.warning("%s: the face is small (eyes %.0f px apart): its %dx%d crop is upsampled %.0fx and will look "
                    "soft", label, eye_dist, size, size, upscale)
    crop = warp_to_quad(photo, quad, size)
    log.info("%s: face %d of %d (detector %s, score %.2f), eyes %.0f px apart -> %dx%d crop", label, index,
             num_faces, det.detector, det.score, eye_dist, size, size)
    return AlignedFace(image=crop, landmarks=lm, quad=quad, transform=quad_transform(quad, size), size=size,
                       source_size=photo.size, detector=det.detector, score=det.score, box=found,
                       face_index=index, num_faces=num_faces, source=label, original=photo)


# ----------------------------------------------------------------------------------------------------------
# Paste-back


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; points `[N, 2]` -> hull vertices, counter-clockwise."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) <= 2:
        return np.array(pts)

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return np.array(lower[:-1] + upper[:-1])


MASK_REGIONS = ("face", "full")


def face_mask(aligned: AlignedFace, size: int | None = None, *, region: str = "face", grow: float = 0.04,
              feather: float = 0.03) -> np.ndarray:
    """Soft blending mask `[size, size]` in [0, 1] over the aligned crop (default size: the crop's).

    region 'face': the landmarks' convex hull (jaw, brows, and the brows raised to cover the forehead), grown
    by `grow`, where the mask is ~1, then falling to 0 over ~3 `feather` (both fractions of the crop side);
    'full': the whole crop with feathered edges. Either way the mask reaches 0 before the crop's border.
    """
    if region not in MASK_REGIONS:
        raise InputError(f"unknown mask region {region!r}; choose one of: {', '.join(MASK_REGIONS)}")
    size = int(size or aligned.size)
    sigma = max(feather * size, 0.5)
    margin = 2.0 * sigma  # where the border fade ends
    idx = np.arange(size, dtype=np.float32)
    edge = np.minimum(idx, size - 1 - idx)
    ramp = np.clip(edge / margin, 0.0, 1.0)
    border = np.minimum(ramp[:, None], ramp[None, :])
    if region == "full":
        return border.astype(np.float32)
    lm = apply_transform(resize_matrix((aligned.size, aligned.size), (size, size)), aligned.landmarks_aligned)
    eye_avg = (lm[36:42].mean(0) + lm[42:48].mean(0)) * 0.5
    mouth = (lm[48] + lm[54]) * 0.5
    up = eye_avg - mouth
    forehead = lm[17:27] + up * 0.9  # brows moved up by ~0.9 eye-to-mouth: the hairline on most faces
    hull = _convex_hull(np.concatenate([lm[0:27], forehead]))
    centre = hull.mean(0)
    radial = hull - centre
    # Grown by `grow`, plus 1.5 sigma so that after blurring the mask is ~1 (>= 0.93) over the grown hull.
    radial *= 1.0 + (grow * size + 1.5 * sigma) / np.maximum(np.hypot(radial[:, 0], radial[:, 1]), 1e-6)[:, None]
    hull = centre + radial
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([(float(x) + 0.5, float(y) + 0.5) for x, y in hull], fill=255)
    soft = np.asarray(canvas.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255.0
    return (soft * border).astype(np.float32)


def paste_back(face: Image.Image | np.ndarray, aligned: AlignedFace, photo: ImageSource | None = None, *,
               mask: np.ndarray | str = "face", grow: float = 0.04, feather: float = 0.03) -> Image.Image:
    """Warp `face` (a square rendering of the aligned crop, any resolution) back into the photo.

    photo: the image to paste into (default: the photo `aligned` was cut from). A photo of another size
    (e.g. the full-resolution original of a downscaled one) is handled by scaling the transform.
    mask: 'face' / 'full' (see `face_mask`) or a precomputed `[S, S]` mask in aligned coordinates (pass one
    when pasting many frames). Returns the composite, RGB, at the photo's own resolution.
    """
    if photo is None:
        if aligned.original is None:
            raise InputError("paste_back needs the photo: this AlignedFace does not keep its original image")
        base = aligned.original
    else:
        base = load_image(photo)
    face_im = face if isinstance(face, Image.Image) else Image.fromarray(np.asarray(face, dtype=np.uint8))
    face_im = to_rgb(face_im, name="rendered face")
    if face_im.width != face_im.height:
        raise InputError(f"the rendered face must be square, got {face_im.width}x{face_im.height}")
    # Photo of another size than the one aligned: same content, so scale the geometry.
    to_photo = resize_matrix(aligned.source_size, base.size) @ aligned.transform  # aligned -> photo pixel
    corners = apply_transform(to_photo, [[-0.5, -0.5], [-0.5, aligned.size - 0.5], [aligned.size - 0.5] * 2,
                                         [aligned.size - 0.5, -0.5]])
    side = float(np.hypot(*(corners[3] - corners[0])))
    # A render larger than its footprint in the photo is warped at k times the photo's resolution and
    # then reduced with an anti-aliasing filter (one interpolation, no aliasing).
    k = int(min(4, max(1, math.ceil(face_im.width / max(side, 1.0) - 0.5))))
    x0 = max(int(np.floor(corners[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(corners[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 2, base.width)
    y1 = min(int(np.ceil(corners[:, 1].max())) + 2, base.height)
    out = base.copy()
    if x1 <= x0 or y1 <= y0:
        log.warning("%s: the face lies outside the photo; nothing pasted", aligned.source)
        return out
    box = (x1 - x0, y1 - y0)
    from_box = _translate(x0, y0)
    rendered_to_photo = to_photo @ resize_matrix(face_im.size, (aligned.size, aligned.size))
    from_super = from_box @ resize_matrix((box[0] * k, box[1] * k), box)
    warped = face_im.transform((box[0] * k, box[1] * k), Image.AFFINE,
                               _pil_affine(np.linalg.inv(rendered_to_photo) @ from_super), Image.BILINEAR)
    if k > 1:
        warped = warped.resize(box, Image.LANCZOS)
    if isinstance(mask, str):
        m = face_mask(aligned, region=mask, grow=grow, feather=feather)
    else:
        m = np.asarray(mask, dtype=np.float32)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise InputError(f"the paste-back mask must be a square [S, S] array, got shape {list(m.shape)}")
    mask_to_photo = to_photo @ resize_matrix((m.shape[1], m.shape[0]), (aligned.size, aligned.size))
    m_img = Image.fromarray(np.ascontiguousarray(m, dtype=np.float32), "F")
    alpha = np.asarray(m_img.transform(box, Image.AFFINE, _pil_affine(np.linalg.inv(mask_to_photo) @ from_box),
                                       Image.BILINEAR), dtype=np.float32)[:, :, None]
    region = np.asarray(out.crop((x0, y0, x1, y1)), dtype=np.float32)
    blended = region + (np.asarray(warped, dtype=np.float32) - region) * np.clip(alpha, 0.0, 1.0)
    out.paste(Image.fromarray(np.uint8(np.clip(np.rint(blended), 0, 255)), "RGB"), (x0, y0))
    return out
