"""Reading user images robustly and writing images atomically (`micromotion.io.files.atomic_output`).

Every image that enters micromotion goes through `load_image`: EXIF orientation applied, any mode (L, LA, P,
RGBA, CMYK, I;16, I, F, ...) turned into 8-bit RGB, transparent pixels composited onto white, and anything
that is not an image, is truncated, or is larger than a pixel limit (a decompression bomb) refused with one
`InputError` line that names the file and says what to do.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import IO, Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import InputError
from .files import atomic_output

log = logging.getLogger(__name__)

#: Default refusal limit in pixels (width * height): 100 megapixels, about 300 MB once decoded to RGB.
DEFAULT_MAX_PIXELS = 100_000_000
#: Environment variable overriding `DEFAULT_MAX_PIXELS` (an integer pixel count).
MAX_PIXELS_ENV = "MICROMOTION_MAX_PIXELS"

ImageSource = Union[str, os.PathLike, bytes, IO[bytes], Image.Image, np.ndarray]

_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as image viewers show them


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: the argument, else `$MICROMOTION_MAX_PIXELS`, else `DEFAULT_MAX_PIXELS`."""
    if max_pixels is not None:
        limit = int(max_pixels)
    else:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if env:
            try:
                limit = int(float(env))
            except ValueError:
                raise InputError(f"${MAX_PIXELS_ENV}={env!r} is not a number; set it to a pixel count such as "
                                 f"{DEFAULT_MAX_PIXELS}") from None
        else:
            limit = DEFAULT_MAX_PIXELS
    if limit <= 0:
        raise InputError(f"the pixel limit must be positive, got {limit}")
    return limit


def describe(source) -> str:
    """A short name for `source` in error messages: the path, or what kind of object it is."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return str(getattr(source, "filename", "") or "<image>")
    if isinstance(source, np.ndarray):
        return f"<array {list(source.shape)} {source.dtype}>"
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>"
    return str(getattr(source, "name", "") or f"<{type(source).__name__}>")


#: Below this side (pixels) no detector finds a face and no crop shows one.
MIN_FACE_SIDE = 32


def check_face_size(im: Image.Image, label: str, minimum: int = MIN_FACE_SIDE) -> Image.Image:
    """Refuse (one line naming `label`) an image too small to show a face: below `minimum` pixels a side
    (`MIN_FACE_SIDE`; a smaller generator's own crops pass `min(MIN_FACE_SIDE, its resolution)`)."""
    if min(im.size) < minimum:
        raise InputError(f"{label}: {im.width}x{im.height} pixels is too small to show a face; give a photo of at "
                         f"least {minimum}x{minimum} pixels")
    return im


def load_image(source: ImageSource, *, max_pixels: int | None = None, name: str | None = None) -> Image.Image:
    """Open `source` as an 8-bit RGB PIL image with its EXIF orientation applied.

    source: a path, bytes, a binary file object, a PIL image, or an array (`[H, W]`, `[H, W, 1|3|4]`; uint8,
    uint16, or float in [0, 1]). max_pixels: refuse larger images (default `max_pixels_limit()`).
    name: how to call the source in error messages (default: its path).
    Raises `InputError` (one line naming the file) for a missing file, a non-image, a truncated or corrupt
    file, or an image above the pixel limit.
    """
    label = name or describe(source)
    limit = max_pixels_limit(max_pixels)
    if isinstance(source, np.ndarray):
        return _check_size(array_to_image(source, name=label), limit, label)
    if isinstance(source, Image.Image):
        _check_size(source, limit, label)
        return to_rgb(source, name=label)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{label}: no such file; check the path")
        if path.is_dir():
            raise InputError(f"{label}: is a folder, not an image file; give the path of an image")
    with warnings.catch_warnings():
        # We enforce our own limit below; PIL's warning would only repeat it (and its error is translated).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(source)
        except UnidentifiedImageError:
            raise InputError(f"{label}: not an image (or a format Pillow cannot read); give a JPEG, PNG, "
                             f"WebP, TIFF or BMP file") from None
        except Image.DecompressionBombError:
            raise InputError(f"{label}: refused as a possible decompression bomb (more pixels than Pillow's "
                             f"limit); downscale the image first") from None
        except PermissionError:
            raise InputError(f"{label}: permission denied; check the file's permissions") from None
        except OSError as e:
            raise InputError(f"{label}: cannot be read ({_one_line(e)}); check that it is an image file") from None
        try:
            _check_size(im, limit, label)
            try:
                im.load()
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise InputError(f"{label}: truncated or corrupt image ({_one_line(e)}); re-export or "
                                 f"re-download it") from None
            frames = getattr(im, "n_frames", 1)
            if frames > 1:  # an animation (GIF, APNG, WebP) or a multi-page TIFF: say which frame is the photo
                log.warning("%s: has %d frames; using frame 1 as the photo", label, frames)
            out = to_rgb(im, name=label)
            return im.copy() if out is im else out  # closing `im` below destroys its pixels
        finally:
            im.close()


def _check_size(im: Image.Image, limit: int, label: str) -> Image.Image:
    w, h = im.size
    if w * h > limit:
        raise InputError(f"{label}: {w}x{h} = {w * h / 1e6:.1f} megapixels is above the limit of "
                         f"{limit / 1e6:g} (a possible decompression bomb); downscale it, or raise the limit "
                         f"with max_pixels / ${MAX_PIXELS_ENV}")
    if w < 1 or h < 1:
        raise InputError(f"{label}: empty image ({w}x{h})")
    return im


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def to_rgb(im: Image.Image, *, name: str | None = None) -> Image.Image:
    """Any PIL image -> 8-bit RGB: EXIF orientation applied, ICC profile converted to sRGB when present,
    alpha composited onto white, 16/32-bit and float greyscale scaled (not clipped) to 8 bits."""
    label = name or describe(im)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 -- malformed EXIF must not make a readable image unusable
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", label, _one_line(e))
    mode = im.mode
    if mode == "RGB":
        return _from_icc(im, label)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(im), mode), "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode == "CMYK":
        return _from_icc(im, label)
    if mode == "1" or mode == "L":
        return im.convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(f"{label}: image mode {mode!r} cannot be converted to RGB ({_one_line(e)}); save it "
                         f"as an RGB PNG or JPEG") from None


def _from_icc(im: Image.Image, label: str) -> Image.Image:
    """Convert through the embedded ICC profile to sRGB when there is one (CMYK print files, wide-gamut
    photos); otherwise Pillow's plain conversion."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if out is not None:
                return out
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
            log.debug("%s: ICC profile ignored (%s)", label, _one_line(e))
    return im if im.mode == "RGB" else im.convert("RGB")


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    a = a.astype(np.float64)
    if mode == "F":
        hi = 1.0 if np.nanmax(a, initial=0.0) <= 1.0 else 255.0
        return np.clip(np.rint(np.nan_to_num(a) / hi * 255.0), 0, 255).astype(np.uint8)
    # 16-bit data (I;16*, and 16-bit PNGs that Pillow opens as mode "I"): full range is 0..65535.
    hi = 65535.0 if a.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
    return np.clip(np.rint(a / hi * 255.0), 0, 255).astype(np.uint8)


def array_to_image(a: np.ndarray, *, name: str | None = None) -> Image.Image:
    """An array `[H, W]` or `[H, W, 1|3|4]` (uint8; uint16; bool; float in [0, 1]) -> 8-bit RGB PIL image."""
    label = name or describe(a)
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InputError(f"{label}: an image array must be [H, W] or [H, W, 1|3|4], got shape {list(a.shape)}")
    if a.dtype == np.uint8:
        u8 = a
    elif a.dtype == bool:
        u8 = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        u8 = np.rint(a.astype(np.float64) / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        u8 = np.clip(np.rint(np.nan_to_num(a.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        u8 = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise InputError(f"{label}: unsupported image array dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    u8 = np.ascontiguousarray(u8)
    if u8.ndim == 2:
        return Image.fromarray(u8, "L").convert("RGB")
    if u8.shape[2] == 4:
        return to_rgb(Image.fromarray(u8, "RGBA"), name=label)
    return Image.fromarray(u8, "RGB")


# ----------------------------------------------------------------------------------------------------------
# Writing


#: Image file extensions `save_image` writes, and their Pillow format names.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF"}


def check_image_output(path: str | os.PathLike) -> Path:
    """Validate an output image path before any work is done: known extension, existing folder."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise InputError(f"{path}: unknown image extension {path.suffix!r}; use one of {', '.join(IMAGE_FORMATS)}")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist; create it first")
    return path


def save_image(image: Image.Image | np.ndarray, path: str | os.PathLike, **params) -> Path:
    """Write an image atomically; the format follows the extension (.png .jpg .jpeg .webp .bmp .tif .tiff)."""
    path = check_image_output(path)
    fmt = IMAGE_FORMATS[path.suffix.lower()]
    im = image if isinstance(image, Image.Image) else array_to_image(image)
    if fmt == "JPEG":
        params.setdefault("quality", 95)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
    with atomic_output(path) as tmp:
        im.save(tmp, format=fmt, **params)
    return path
