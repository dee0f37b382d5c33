"""The web page: a photo and a motion (preset, text template or video clip) in, a micromotion video out (issue 11).

A thin shell over the public API. `WebService` holds one `Animator` for the process (one model load) and does
the work of a request, raising `InputError`s; `build_app` lays out the Gradio page and turns every error into
one line in the page (`gr.Error`), never a traceback. Requests go through Gradio's queue, `concurrency`
at a time. Limits (`Limits`) keep a public page from being made to decode a bomb or render for an hour.

Custom motions (text, video) are slow on a CPU (anchors are optimized: tens of seconds to minutes), so they
are computed once per (model, template) or (model, clip contents) and kept in memory.
"""
from __future__ import annotations

import contextvars
import ctypes
import hashlib
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import InputError, MicromotionError, MissingDependencyError

log = logging.getLogger(__name__)

KINDS = ("Preset", "Text template", "Video")
FACE_MODES = ("Auto (detect a face)", "An aligned face crop", "Detect and align")  # the "Face" radio
INSTALL_HINT = "the web app needs Gradio: pip install 'micromotion[web]'"


def require_gradio():
    """The `gradio` module, or a MissingDependencyError with the install hint."""
    try:
        import gradio as gr
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return gr


def one_line(message: str) -> str:
    return " ".join(str(message).split()) or "error"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Sizes of uploads are also enforced by Gradio before they are stored."""

    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_video_seconds: float = 10.0
    max_video_frames: int = 300
    max_frames: int = 120
    max_strength: float = 5.0
    max_template_chars: int = 200
    max_seconds: float = 600.0  # one request's time limit; past it its work is stopped

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)  # Gradio's "MB" (its refusal message) counts 1024 x 1024 bytes


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class WebService:
    """The work behind the page, callable without a browser (tests call `predict` directly).

    model, device: as for `Animator` ('auto' | registry name | generator file). animator: use this one instead
    (or `animator_factory()`, called once, on first use). invert_steps: projector steps per photo.
    text_steps, video_steps, video_anchors: anchor optimization for custom motions (kept moderate for CPUs).
    clip: CLIP for text templates (registry name or file; never downloaded by a request). aligned: the "Face"
    choice of requests that name none (None: auto, a detected face decides per input). workdir: where outputs go
    (default a fresh temp folder).
    """

    def __init__(self, model: str = "auto", device: str = "auto", *, animator=None,
                 animator_factory: Callable | None = None, invert_steps: int = 300, text_steps: int = 40,
                 video_steps: int = 150, video_anchors: int = 8, clip: str = "auto", fps: float = 25.0,
                 limits: Limits | None = None, aligned: bool | None = None, workdir: str | os.PathLike | None = None,
                 keep_outputs: int = 64, num_examples: int = 4, models: Sequence[str] = ()):
        self.model, self.device = model, device
        self._animator = animator
        self._other_models = [str(m) for m in models]  # the page's other model choices, loaded on first use
        self._animators: dict[str, object] = {}
        self._request_model: contextvars.ContextVar[str | None] = contextvars.ContextVar("model", default=None)
        self._factory = animator_factory
        self.invert_steps, self.text_steps, self.video_steps = invert_steps, text_steps, video_steps
        self.video_anchors = video_anchors
        self.clip_spec, self.fps = clip, fps
        self.limits = limits or Limits()
        self._aligned = aligned
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="micromotion-web-"))
        (self.workdir / "out").mkdir(parents=True, exist_ok=True)
        self.keep_outputs, self.num_examples = keep_outputs, num_examples
        self._load_lock = threading.Lock()
        self._motion_lock = threading.Lock()  # one anchor optimization at a time; the others wait for its result
        self._motions = _LRU(32)
        self._clips: dict = {}
        self._examples: list[Path] | None = None
        self._outputs: list[Path] = []
        self.last_stop_seconds: float | None = None  # how long the last stopped request took to stop

    # -- the model, loaded once --------------------------------------------------------------------------------

    @property
    def default_animator(self):
        """The served model's `Animator`, loaded once (the first model of the page's choice)."""
        if self._animator is None:
            with self._load_lock:
                if self._animator is None:
                    if self._factory is not None:
                        self._animator = self._factory()
                    else:
                        from ..animate import Animator

                        self._animator = Animator(model=self.model, device=self.device,
                                                  invert_steps=self.invert_steps)
        return self._animator

    @property
    def animator(self):
        """The `Animator` of the request's model (`run(model=...)`), else the served model's."""
        name = self._request_model.get()
        default = self.default_animator
        if name is None or name == default.model_name:
            return default
        if name not in self._animators:
            with self._load_lock:
                if name not in self._animators:
                    from ..animate import Animator

                    self._animators[name] = Animator(model=name, device=self.device, invert_steps=self.invert_steps)
        return self._animators[name]

    def models(self) -> list[str]:
        """The page's model choices: the served model, then the others (`models=`), without repeats."""
        names = [self.default_animator.model_name]
        return names + [m for m in self._other_models if m not in names]

    @property
    def profile(self):
        """The model's profile (`micromotion.profiles`): CLIP, text settings, whether photos are aligned."""
        a = self.animator
        if getattr(a, "profile", None) is None:
            from ..profiles import profile_for

            return profile_for(a.G)
        return a.profile

    @property
    def default_aligned(self) -> bool | None:
        """The "Face" choice a request gets when it names none: None (auto: a detected face decides, per
        input), unless the service was made with `aligned=True/False`."""
        return self._aligned

    def face_mode(self, image: Image.Image, aligned) -> tuple[bool, str]:
        """-> (align the photo?, a note for the status line). aligned: True (an aligned crop: no detection),
        False (detect and align), None or a `FACE_MODES` string.

        Auto: a detected face whose alignment square is about the photo itself (centred, 55-115% of its side:
        FFHQ crops and the world's) is recognised as an aligned crop and used as it is; another detected face
        is aligned; a photo without one is used as a crop only when it is square and the model's faces are
        crops (the world model), else refused in the page's terms.
        """
        mode = _face_mode(aligned)
        name = getattr(image, "filename", "") or "the photo"
        if mode is True:
            if abs(image.width - image.height) > 1:
                raise InputError(f"{name}: {image.width}x{image.height} is not square, so it is not an aligned face "
                                 f"crop; choose '{FACE_MODES[0]}' under Face")
            return False, "used as an aligned crop"
        if mode is False:
            return True, "face detected and aligned"
        from ..align import align_face

        try:
            quad = np.asarray(align_face(image, size=64).quad, dtype=np.float64)
        except MissingDependencyError:  # no detector installed: the model's default
            quad = None
            if self.profile.align:
                return True, "aligned (no face detector installed to check)"
        except InputError:  # no face found
            quad = None
        if quad is not None:
            side = float(max(image.size))
            span = float(np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2 / side
            off = float(np.abs(quad.mean(0) - np.array(image.size) / 2).max()) / side
            if abs(image.width - image.height) <= 1 and 0.55 <= span <= 1.15 and off <= 0.08:
                return False, "recognised as an aligned crop"
            return True, "face detected and aligned"
        if not self.profile.align and abs(image.width - image.height) <= 1:
            return False, "no face detected: used as an aligned crop"
        raise InputError(f"{name}: no face found; upload a photo where a face is clearly visible, or choose "
                         f"'{FACE_MODES[1]}' under Face if it is one")

    def examples(self) -> list[Path]:
        """Example faces of the served model, rendered once into the work folder: for a model of photos, seeded
        samples (ψ = 0.7) and scikit-image's astronaut photo (when installed); for the world, its faces."""
        if self._examples is None:
            folder = self.workdir / "examples"
            folder.mkdir(exist_ok=True)
            a = self.default_animator
            photo_model = getattr(getattr(a, "profile", None), "align", False)
            size = max(64, min(256, int(a.G.resolution)))
            if photo_model:
                with torch.no_grad():
                    z = torch.randn(self.num_examples, a.G.z_dim, generator=torch.Generator().manual_seed(11))
                    ws = a.G.mapping(z.to(a.G.w_avg.device), truncation_psi=0.7)
                    faces = torch.cat([torch.nn.functional.interpolate(a.G.synthesis(w[None]).float(), size=size,
                                                                       mode="area") for w in ws])
                arrays, stem = list(_to_uint8(faces)), "sample"
            else:
                from ..world.faces import render, sample_factors

                faces = render(sample_factors(self.num_examples, torch.Generator().manual_seed(11),
                                              motion="neutral"), size=size)
                arrays, stem = list(_to_uint8(faces)), "world-face"
            paths = []
            for i, arr in enumerate(arrays):
                p = folder / f"{stem}-{i + 1}.png"
                Image.fromarray(arr).save(p)
                paths.append(p)
            if photo_model:
                try:
                    from skimage import data

                    p = folder / "astronaut.png"
                    Image.fromarray(np.ascontiguousarray(data.astronaut()[..., :3])).save(p)
                    paths.append(p)
                except ImportError:
                    pass
            self._examples = paths
        return self._examples

    # -- checks ------------------------------------------------------------------------------------------------

    def _upload(self, path, what: str, hint: str) -> Path:
        if path is None or (isinstance(path, str) and not path.strip()):
            raise InputError(f"no {what} given; {hint}")
        p = Path(getattr(path, "name", path))  # gradio gives a path (type="filepath"); tempfile wrappers too
        if not p.is_file():
            raise InputError(f"{p.name}: the uploaded {what} is gone from the server; upload it again")
        size = p.stat().st_size
        if size > self.limits.max_upload_bytes:
            raise InputError(f"{p.name}: {size / 2**20:.1f} MB is above the upload limit of "
                             f"{self.limits.max_upload_mb:g} MB; use a smaller file")
        return p

    def load_photo(self, photo) -> Image.Image:
        from ..io.images import check_face_size, load_image

        p = self._upload(photo, "photo", "upload a photo of a face or pick an example")
        try:
            im = load_image(p, max_pixels=self.limits.max_pixels, name=p.name)
        except InputError as e:  # the library's advice names an environment variable; the page has its own limit
            if "megapixels is above the limit" in str(e):
                raise InputError(f"{p.name}: {str(e).split(': ', 1)[1].split(' (')[0]} megapixels of this page; "
                                 f"downscale the photo") from None
            raise
        check_face_size(im, p.name)
        im.filename = p.name  # later errors (no face, ...) name the upload, not "<image>"
        return im

    def preview(self, photo, size: int = 256) -> Image.Image | None:
        """The uploaded photo, checked and shrunk, for the page (None when the box was cleared)."""
        if photo is None:
            return None
        im = self.load_photo(photo)
        im.thumbnail((size, size))
        return im

    def _options(self, strength, frames) -> tuple[float, int]:
        try:
            s = float(strength)
        except (TypeError, ValueError):
            raise InputError(f"strength must be a number, got {strength!r}") from None
        lim = self.limits.max_strength
        if not math.isfinite(s) or abs(s) > lim:
            raise InputError(f"strength must be a finite number in [-{lim:g}, {lim:g}], got {strength!r}")
        try:
            f = float(frames)
        except (TypeError, ValueError):
            raise InputError(f"frames must be a whole number, got {frames!r}") from None
        if not math.isfinite(f) or f != int(f) or not 2 <= f <= self.limits.max_frames:
            raise InputError(f"frames must be a whole number in 2..{self.limits.max_frames}, got {frames!r}")
        return s, int(f)

    # -- motions -----------------------------------------------------------------------------------------------

    def motion(self, kind: str, preset: str | None, template: str | None, video, aligned: bool, progress=None):
        """-> (Motion, anchors preview image or None, motion file or None)."""
        if kind == "Preset":
            from ..presets import canonical

            name = canonical(preset or "")
            _say(progress, 0.02, f"motion: {name}")
            with self._motion_lock:
                return self.animator.motion(name), None, None
        if kind == "Text template":
            return self._text_motion(template, progress)
        if kind == "Video":
            return self._video_motion(video, aligned, progress)
        raise InputError(f"unknown motion source {kind!r}; choose one of: {', '.join(KINDS)}")

    def _text_motion(self, template, progress):
        from ..anchors.text import validate_template
        from ..text_motion import motion_from_text_anchors, text_motion_anchors

        template = (template or "").strip()
        if len(template) > self.limits.max_template_chars:
            raise InputError(f"the text template is {len(template)} characters long; keep it under "
                             f"{self.limits.max_template_chars}")
        validate_template(template)
        a = self.animator
        key = ("text", a.model_name, template, self.clip_spec, self.text_steps)
        with self._motion_lock:
            if key not in self._motions:
                _say(progress, 0.02, "loading CLIP")
                clip = self._load_clip()
                _say(progress, 0.05, f"text anchors for '{template}' ({self.text_steps} steps)")
                profile = self.profile  # its settings, start face and re-inversion (e.g. world/settings.py)
                anchors = text_motion_anchors(a.G, template, clip=clip, profile=profile, default_seed=1,
                                              settings=profile.text_settings(template, steps=self.text_steps),
                                              progress=progress is not None, generator_name=a.model_name)
                m = motion_from_text_anchors(a.G, anchors, profile=profile, name=template)
                preview = self._anchor_strip(anchors.latents, [str(x) for x in anchors.labels])
                self._motions.put(key, (m, preview, self._save_motion(m, "text")))
            return self._motions[key]

    def _video_motion(self, video, aligned, progress):
        from ..anchors.video import probe_video, video_anchors
        from ..decompose import Motion

        p = self._upload(video, "video", "upload a short clip of a face doing the motion")
        info = probe_video(p)
        lim = self.limits
        if info.duration > lim.max_video_seconds or info.num_frames > lim.max_video_frames:
            raise InputError(f"{p.name}: {info.duration:.1f} s, {info.num_frames} frames is longer than the limit of "
                             f"{lim.max_video_seconds:g} s / {lim.max_video_frames} frames; trim the clip")
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        a = self.animator
        align = self._video_align(info, aligned)
        key = ("video", a.model_name, digest, align, self.video_steps, self.video_anchors)
        with self._motion_lock:
            if key not in self._motions:
                _say(progress, 0.05, f"video anchors from {p.name} ({self.video_anchors} frames)")
                va = video_anchors(a.G, p, max_frames=self.video_anchors, align=align, steps=self.video_steps,
                                   progress=progress is not None, generator_name=a.model_name)
                m = Motion.from_anchors(va.anchors, generator=a.G, name=p.stem)
                self._motions.put(key, (m, va.preview(size=96), self._save_motion(m, "video")))
            return self._motions[key]

    def _video_align(self, info, aligned) -> bool:
        """Align the clip's frames? The same choice as the photo's, made on the clip's first frame."""
        from ..anchors.video import iter_frames

        mode = _face_mode(aligned)
        if mode is not None:
            return not mode
        first = next(iter_frames(info, [0]))[1]
        im = Image.fromarray(first, "RGB")
        im.filename = Path(info.path).name
        try:
            return self.face_mode(im, None)[0]
        except InputError:
            raise InputError(f"{im.filename}: no face found in the clip's first frame; upload a clip where a face "
                             f"is clearly visible, or choose '{FACE_MODES[1]}' under Face") from None

    def _load_clip(self):
        from ..models.clip import Clip

        spec = self.profile.clip if self.clip_spec == "auto" else self.clip_spec
        if spec not in self._clips:  # one per CLIP: the world's and the photo models' differ
            self._clips[spec] = Clip.load(spec, device=self.animator.device, download=False)
        return self._clips[spec]

    def _save_motion(self, m, kind: str) -> Path:
        folder = self.workdir / "motions" / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return m.save(folder / f"{kind}-motion.safetensors")

    def _anchor_strip(self, latents: torch.Tensor, labels: list[str], size: int = 96) -> Image.Image:
        G = self.animator.G
        with torch.no_grad():
            imgs = _to_uint8(torch.cat([G.synthesis(w.to(G.w_avg.device)) for w in latents.split(4)]))
        pad, text_h = 4, 14
        sheet = Image.new("RGB", (len(imgs) * (size + pad) + pad, size + 2 * pad + text_h), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        for i, (arr, lab) in enumerate(zip(imgs, labels)):
            x = pad + i * (size + pad)
            sheet.paste(Image.fromarray(arr).resize((size, size), Image.LANCZOS), (x, pad))
            draw.text((x + 2, pad + size + 2), lab, fill=(0, 0, 0))
        return sheet

    # -- a request ---------------------------------------------------------------------------------------------

    def run(self, photo, kind: str = "Preset", preset: str | None = "smile", template: str | None = "", video=None,
            strength: float = 1.0, frames: int = 48, loop: bool = False, aligned: bool | None = None,
            model: str | None = None, progress=None):
        """One request -> (video path, motion file or None, anchors preview or None, status line).

        model: one of `models()` (default: the served model). Raises `InputError` (and other
        `MicromotionError`s) for anything the user can fix.
        """
        if model and model not in self.models():
            raise InputError(f"unknown model {model!r} on this page; choose one of: {', '.join(self.models())}")
        token = self._request_model.set(model or None)
        try:
            return self._run(photo, kind, preset, template, video, strength, frames, loop, aligned, progress)
        finally:
            self._request_model.reset(token)

    def _run(self, photo, kind, preset, template, video, strength, frames, loop, aligned, progress):
        t0 = time.perf_counter()
        strength, frames = self._options(strength, frames)
        aligned = self.default_aligned if aligned is None else aligned
        image = self.load_photo(photo)  # before the slow motion work
        align, note = self.face_mode(image, aligned)
        m, preview, motion_file = self.motion(kind, preset, template, video, aligned, progress)
        _say(progress, 0.1, "inverting the photo, then rendering")
        out = self._new_output()
        res = self.animator.animate(image, m, out, strength=strength, frames=frames, fps=self.fps, loop=loop,
                                    align=align, progress=progress is not None)
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items())
        psnr = res.inversion.get("psnr")
        quality = f"; inversion PSNR {psnr:.1f} dB" if isinstance(psnr, float) else ""
        model = Path(self.animator.model_name).name
        status = (f"**{res.motion}**, {frames} frames at {self.fps:g} fps, strength {strength:g}, model {model}; "
                  f"photo: {note}{quality}; {time.perf_counter() - t0:.1f} s ({secs})")
        return str(res.out), (str(motion_file) if motion_file else None), preview, status

    def predict(self, *args, cancelled: Callable[[], bool] | None = None, **kw):
        """`run`, with every error turned into one line for the page (`gr.Error`), never a traceback.

        The work runs in its own thread, stopped (between two Python steps, so within about a second) when
        `cancelled()` turns true (the visitor pressed Stop or closed the tab) or after `limits.max_seconds`.
        """
        gr = require_gradio()
        try:
            return self._guarded(cancelled, *args, **kw)
        except MicromotionError as e:
            raise gr.Error(one_line(e), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as e:  # a bug or an exhausted machine: log it, tell the user in one line
            log.exception("request failed")
            raise gr.Error(f"internal error ({type(e).__name__}) while making the video; it was logged on the "
                           f"server; try again, or another photo", print_exception=False) from None

    def _guarded(self, cancelled, *args, **kw):
        box: dict = {}
        ctx = contextvars.copy_context()  # Gradio's progress reads its request from context variables

        def work():
            try:
                box["result"] = ctx.run(self.run, *args, **kw)
            except _Stop:
                pass
            except BaseException as e:  # noqa: BLE001 -- handed to the request's thread
                box["error"] = e

        t = threading.Thread(target=work, name="micromotion-request", daemon=True)
        t0 = time.monotonic()
        t.start()
        reason, stopped_at = None, None
        while t.is_alive():
            t.join(0.1)
            if reason is None and t.is_alive():
                if cancelled is not None and cancelled():
                    reason = "cancelled"
                elif time.monotonic() - t0 > self.limits.max_seconds:
                    reason = "time"
            if reason is not None and t.is_alive() and (stopped_at is None or time.monotonic() - stopped_at > 1):
                stopped_at = stopped_at or time.monotonic()
                _raise_in(t, _Stop)  # again each second, in case it landed where it was caught
        if reason is not None:
            self.last_stop_seconds = time.monotonic() - (stopped_at or time.monotonic())
            log.info("request %s; its work stopped %.2f s later", reason, self.last_stop_seconds)
            if reason == "time":
                raise InputError(f"the request took longer than this page's limit of {self.limits.max_seconds:g} s "
                                 f"and was stopped; try fewer frames or a preset motion")
            raise InputError("the request was cancelled")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _new_output(self) -> Path:
        folder = self.workdir / "out" / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        self._outputs.append(folder)
        while len(self._outputs) > self.keep_outputs:  # Gradio has copied older results into its own cache
            shutil.rmtree(self._outputs.pop(0), ignore_errors=True)
        return folder / "micromotion.mp4"


class _Stop(BaseException):
    """Raised inside a request's thread to stop its work (a BaseException: `except Exception` lets it through)."""


def _raise_in(thread: threading.Thread, exc: type[BaseException]) -> None:
    # CPython delivers it at the thread's next bytecode: between two torch ops, never inside one
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))


def _cancel_check() -> Callable[[], bool] | None:
    """In a Gradio request: a function telling whether the request was cancelled (Stop, a closed tab)."""
    try:
        from gradio.context import LocalContext

        blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
        events = blocks._queue.event_ids_to_events  # the queue drops an event when its task ends or is cancelled
    except (ImportError, AttributeError):
        return None
    if not event_id:
        return None
    event = events.get(event_id)

    def cancelled() -> bool:
        # Stop drops the event from the queue; a closed tab ends its event stream, and the queue then marks the
        # session's running jobs dead (`alive`), which Gradio itself never acts on while a job runs
        return event_id not in events or (event is not None and not getattr(event, "alive", True))

    return cancelled


def _face_mode(aligned) -> bool | None:
    """True (an aligned crop), False (detect and align) or None (auto) from a bool, None or a FACE_MODES label."""
    if aligned is None or isinstance(aligned, bool):
        return aligned
    if aligned in FACE_MODES:
        return (None, True, False)[FACE_MODES.index(aligned)]
    raise InputError(f"unknown Face choice {aligned!r}; choose one of: {', '.join(FACE_MODES)}")


def _say(progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, desc=text)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    from ..render import to_uint8

    return to_uint8(images)


# ----------------------------------------------------------------------------------------------------------
# The page


def build_app(service: WebService | None = None, *, concurrency: int = 1, max_queue: int = 64, **service_kw):
    """The Gradio page (a `gr.Blocks`) over `service` (default: `WebService(**service_kw)`).

    concurrency: requests rendered at once (Gradio's `default_concurrency_limit`); max_queue: waiting requests
    beyond which new ones are refused. Loads the model (once) to render the example faces.
    """
    gr = require_gradio()
    from ..presets import PRESETS

    svc = service or WebService(**service_kw)
    lim = svc.limits
    examples = [str(p) for p in svc.examples()]
    svc_on_cpu = str(getattr(svc.animator, "device", "cpu")).startswith("cpu")

    def show(kind):
        return (gr.update(visible=kind == "Preset"), gr.update(visible=kind == "Text template"),
                gr.update(visible=kind == "Video"))

    def preview(photo):  # checked on upload: a bad file is named at once, in a line that stays on the page
        try:
            return svc.preview(photo), ""
        except MicromotionError as e:
            gr.Warning(one_line(e))
            return None, f"**{one_line(e)}**"

    def pick(evt):
        return examples[evt.index]

    pick.__annotations__["evt"] = gr.SelectData  # a real class: Gradio reads it to pass the event

    def animate(photo, kind, preset, template, video, strength, frames, loop, aligned, model=None,
                progress=gr.Progress(track_tqdm=True)):
        return svc.predict(photo, kind, preset, template, video, strength, frames, loop, aligned, model=model,
                           progress=progress, cancelled=_cancel_check())

    with gr.Blocks(title="micromotion", analytics_enabled=False, delete_cache=(3600, 7200)) as demo:
        gr.Markdown("## micromotion\nA photo of a face in, a short video of it smiling, frowning, ageing, closing "
                    f"its eyes or turning its head out. Model: `{Path(svc.default_animator.model_name).name}`. "
                    f"Each request may run up to {lim.max_seconds:g} s; Stop ends it.")
        with gr.Row():
            with gr.Column():
                photo = gr.File(label=f"Photo (JPEG, PNG, WebP; up to {lim.max_upload_mb:g} MB, "
                                      f"{lim.max_pixels / 1e6:g} megapixels)", type="filepath", elem_id="photo")
                shown = gr.Image(label="Face", interactive=False, height=200, elem_id="photo-preview")
                photo_error = gr.Markdown(elem_id="photo-error")
                gallery = gr.Gallery(value=examples, label="…or pick an example face", columns=len(examples),
                                     height=140, allow_preview=False, elem_id="examples")
                kind = gr.Radio(list(KINDS), value="Preset", label="Motion from", elem_id="kind")
                preset = gr.Radio(list(PRESETS), value="smile", label="Preset", elem_id="preset")
                budget = f"{svc.text_steps} optimization steps" + (" (a CPU budget)" if svc_on_cpu else "")
                template = gr.Textbox(label=f"Text template (slow on a CPU: anchors are optimized once, {budget}; "
                                            f"up to {lim.max_template_chars} characters)",
                                      placeholder="a person with {degree} smile", visible=False, elem_id="template")
                video = gr.File(label=f"Clip of a face doing the motion (up to {lim.max_video_seconds:g} s; slow on "
                                      f"a CPU)", type="filepath", visible=False, elem_id="video")
                strength = gr.Slider(-lim.max_strength, lim.max_strength, value=1.0, step=0.1, label="Strength",
                                     elem_id="strength")
                frames = gr.Slider(2, lim.max_frames, value=min(48, lim.max_frames), step=1, label="Frames",
                                   elem_id="frames")
                loop = gr.Checkbox(False, label="Loop (there and back)")
                default_face = {None: FACE_MODES[0], True: FACE_MODES[1], False: FACE_MODES[2]}[svc.default_aligned]
                aligned = gr.Radio(list(FACE_MODES), value=default_face, label="Face", elem_id="aligned")
                choices = svc.models()
                model = gr.Dropdown(choices, value=choices[0], label="Model (others load on first use)",
                                    visible=len(choices) > 1, elem_id="model")
                with gr.Row():
                    button = gr.Button("Animate", variant="primary", elem_id="animate")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column():
                result = gr.Video(label="Result", autoplay=True, loop=True, buttons=["download"], elem_id="result")
                status = gr.Markdown(elem_id="status")
                strip = gr.Image(label="Anchors (custom motions)", interactive=False, elem_id="anchors")
                motion_file = gr.File(label="Motion file (custom motions)", interactive=False, elem_id="motion-file")
        kind.change(show, kind, [preset, template, video], queue=False)
        photo.change(preview, photo, [shown, photo_error], queue=False)
        gallery.select(pick, None, photo, queue=False)
        run = button.click(animate, [photo, kind, preset, template, video, strength, frames, loop, aligned, model],
                           [result, motion_file, strip, status], api_name="animate")
        stop.click(None, None, None, cancels=[run], queue=False)
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    demo.micromotion = svc  # for launch() and tests
    return demo


def launch(demo, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True, quiet: bool = False):
    """Serve `demo` (from `build_app`) on host:port (loopback unless told otherwise); offline-safe theme."""
    gr = require_gradio()
    svc = demo.micromotion
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    return demo.launch(server_name=host, server_port=port, max_file_size=svc.limits.max_upload_bytes,
                       allowed_paths=[str(svc.workdir)], show_error=False, ssr_mode=False, pwa=False,
                       mcp_server=False, quiet=quiet, prevent_thread_lock=not block, theme=theme,
                       footer_links=["api"])
