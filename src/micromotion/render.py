"""Batched synthesis -> frames -> video files.

Frames are rendered in batches (bf16 autocast on CUDA where faithful, fp32 elsewhere), clamped to [-1, 1]
(the original's per-frame min-max normalization makes brightness flicker), converted to uint8 and streamed
to the writer, so a long video never sits in memory. Writers are chosen by the output's extension:
`.mp4` (H.264, yuv420p, plays in browsers), `.gif`, `.webp`, or a folder of PNGs (no extension). Every writer
writes to a temporary name beside the target and renames it into place only when complete, so a failure
leaves no partial output.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .errors import InputError
from .io.files import atomic_output, pid_alive

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".gif", ".webp")
MAX_FRAMES = 10_000


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] (clamped) -> uint8 [N, H, W, 3]."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


# BT.601 limited range ("studio swing"), what swscale uses for rgb24 -> yuv420p by default
_YUV_MATRIX = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))


def to_yuv420(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] (clamped; H, W even) -> planar I420 uint8 [N, H * 3 // 2, W] (PyAV's yuv420p
    layout: the Y plane, then U and V at half resolution, each of H/4 rows of W). Computed where the images
    are (the GPU), so only half the bytes of RGB cross to the CPU and the encoder skips its colour conversion.
    Chroma is the 2x2 mean of the RGB pixels (the conversion is linear, so it equals subsampling U and V)."""
    n, _, h, w = images.shape
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs even sizes, got {h}x{w}")
    rgb = images.detach().float().clamp(-1, 1).add(1).mul(0.5)  # [0, 1]
    m = torch.tensor(_YUV_MATRIX, device=rgb.device, dtype=rgb.dtype)
    y = torch.einsum("ij,njhw->nihw", m[:1], rgb)[:, 0] + 16
    rgb2 = torch.nn.functional.avg_pool2d(rgb, 2)
    uv = torch.einsum("ij,njhw->nihw", m[1:], rgb2) + 128  # [N, 2, H/2, W/2]
    planes = torch.cat([y.reshape(n, h * w), uv.reshape(n, 2 * (h // 2) * (w // 2))], dim=1)
    return planes.round().clamp(0, 255).to(torch.uint8).reshape(n, h * 3 // 2, w).cpu().numpy()


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """bf16/fp16 autocast on CUDA when asked for; a no-op elsewhere (autocast only off-CPU)."""
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def synthesize_batches(G, ws: torch.Tensor, batch_size: int = 16, dtype: torch.dtype | None = None,
                       noise_mode: str = "const", synthesis: Callable | None = None,
                       progress: bool = False) -> Iterator[torch.Tensor]:
    """Yield images [b, 3, R, R] (float32, raw range) for ws [N, num_ws, w_dim], `batch_size` at a time."""
    from tqdm.auto import tqdm

    device = next(G.parameters()).device
    synth = synthesis or (lambda w: G.synthesis(w, noise_mode=noise_mode))
    chunks = ws.split(batch_size)
    for chunk in tqdm(chunks, desc="render", unit="batch", disable=not progress, leave=False):
        with torch.no_grad(), autocast_for(device, dtype):
            yield synth(chunk.to(device)).float()


def check_output_path(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work: extension, parent folder, existing file."""
    out = Path(out)
    ext = out.suffix.lower()
    if ext and ext not in VIDEO_EXTENSIONS:
        raise InputError(f"{out}: unsupported output extension '{ext}'; use .mp4, .gif, .webp, or a folder name "
                         f"(no extension) for PNG frames")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{out}: output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{out}: output folder {parent} is not writable")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError(f"{out}: already exists; pass --overwrite to replace it")
        _check_replaceable(out)
    return out


FRAMES_MARKER = ".micromotion-frames"  # written into every PNG-frame folder this tool makes


def _is_our_frames_folder(path: Path) -> bool:
    """A folder this tool wrote: its marker and nothing but frame PNGs (a user's added file keeps it)."""
    if not (path / FRAMES_MARKER).is_file():
        return False
    return all(p.name == FRAMES_MARKER or (p.name.startswith("frame_") and p.suffix == ".png" and p.is_file()
                                          and not p.is_symlink()) for p in path.iterdir())


def _check_replaceable(out: Path) -> None:
    """`--overwrite` replaces a regular file, or a PNG-frame folder this tool made; never anything else."""
    folder_out = out.suffix.lower() not in VIDEO_EXTENSIONS
    if out.is_symlink():
        raise InputError(f"{out}: is a symbolic link; --overwrite does not replace links: remove it or choose "
                         f"another name")
    if out.is_dir():
        if not folder_out:
            raise InputError(f"{out}: is a folder; --overwrite replaces only a file here: choose another name")
        if not _is_our_frames_folder(out):
            raise InputError(f"{out}: is a folder this tool did not write (no {FRAMES_MARKER} marker, or other "
                             f"files in it); --overwrite replaces only PNG-frame folders it made: choose another name")
        return
    if not out.is_file():
        raise InputError(f"{out}: is not a regular file (a device or pipe); write to a file path instead")
    if folder_out:
        raise InputError(f"{out}: is a file, and an output without extension is a folder of PNG frames: remove "
                         f"the file, choose another name, or add .mp4/.gif/.webp")


def clean_stale_parts(out: Path) -> list[Path]:
    """Remove the partial outputs `.NAME.partPID…` / `.NAME.oldPID` that a killed run (SIGKILL, power loss)
    left beside `out`; only those of processes that no longer run, and a folder only if it holds just what
    this tool writes there. Returns what was removed."""
    removed = []
    parent = out.parent if str(out.parent) else Path(".")
    for kind in ("part", "old"):
        for p in parent.glob(f".{glob_escape(out.name)}.{kind}*"):
            rest = p.name[len(out.name) + len(kind) + 2:]
            digits = rest[:len(rest) - len(out.suffix)] if out.suffix and rest.endswith(out.suffix) else rest
            if not digits.isdigit() or int(digits) == os.getpid() or pid_alive(int(digits)):
                continue
            try:
                if p.is_symlink():
                    continue
                if p.is_dir():
                    if not all(c.name == FRAMES_MARKER or (c.name.startswith("frame_") and c.suffix == ".png")
                               for c in p.iterdir()):
                        continue
                    shutil.rmtree(p)
                else:
                    p.unlink()
            except OSError:
                continue
            log.info("removed %s, left by an interrupted run (process %s)", p, digits)
            removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


class _Sink:
    """Base writer: frames in (uint8 [H, W, 3]), a finished file or folder out, atomically."""

    def __init__(self, out: Path, fps: float):
        self.out, self.fps, self.count = out, fps, 0
        self.tmp = out.with_name(f".{out.name}.part{os.getpid()}{out.suffix}")
        clean_stale_parts(out)

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp.exists():
            self.tmp.unlink()

    def _commit(self) -> None:
        old = None
        if self.out.exists() or self.out.is_symlink():
            _check_replaceable(self.out)  # again: the target may have changed while rendering
            if self.out.is_dir():
                # move our old frames folder aside, then delete it only once the new one is in place
                old = self.out.with_name(f".{self.out.name}.old{os.getpid()}")
                os.replace(self.out, old)
        try:
            os.replace(self.tmp, self.out)
        except BaseException:
            if old is not None:
                os.replace(old, self.out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


class _Mp4Sink(_Sink):
    def __init__(self, out, fps, crf: int = 18):
        super().__init__(out, fps)
        import av

        self._av = av
        self.container = av.open(str(self.tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        self.stream = None
        self.crf = crf

    def _open(self, w: int, h: int):
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.width, self.stream.height = w + (w % 2), h + (h % 2)  # yuv420p needs even sizes
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        elif (w + (w % 2), h + (h % 2)) != (self.stream.width, self.stream.height):
            raise InputError(f"frame size {w}x{h} differs from the video's {self.stream.width}x{self.stream.height}")

    def _encode(self, vf):
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.count += 1

    def write(self, frame):
        h, w = frame.shape[:2]
        self._open(w, h)
        if w % 2 or h % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._encode(self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))

    def write_yuv420(self, planes: np.ndarray):
        """One frame already in I420 (`to_yuv420`): [H * 3 // 2, W] uint8, H and W even."""
        self._open(planes.shape[1], planes.shape[0] * 2 // 3)
        self._encode(self._av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv420p"))

    def finish(self):
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        self._commit()

    def abort(self):
        with contextlib.suppress(Exception):
            self.container.close()
        super().abort()


class _PillowSink(_Sink):
    """GIF / animated WebP through Pillow (frames are small: these formats are for previews)."""

    def __init__(self, out, fps, fmt):
        super().__init__(out, fps)
        self.fmt, self.frames = fmt, []

    def write(self, frame):
        from PIL import Image

        self.frames.append(Image.fromarray(frame))
        self.count += 1

    def finish(self):
        duration = max(20, int(round(1000 / self.fps)))
        kw = dict(save_all=True, append_images=self.frames[1:], duration=duration, loop=0)
        if self.fmt == "WEBP":
            kw.update(quality=90, method=4)
        self.frames[0].save(self.tmp, format=self.fmt, **kw)
        self._commit()


class _PngSink(_Sink):
    def __init__(self, out, fps):
        super().__init__(out, fps)
        self.tmp.mkdir(parents=False, exist_ok=False)
        (self.tmp / FRAMES_MARKER).write_text("PNG frames written by micromotion; --overwrite may replace "
                                              "this folder while it holds only frame_*.png\n")

    def write(self, frame):
        from PIL import Image

        Image.fromarray(frame).save(self.tmp / f"frame_{self.count:05d}.png")
        self.count += 1

    def finish(self):
        self._commit()


def open_sink(out: Path, fps: float) -> _Sink:
    ext = out.suffix.lower()
    if ext == ".mp4":
        return _Mp4Sink(out, fps)
    if ext == ".gif":
        return _PillowSink(out, fps, "GIF")
    if ext == ".webp":
        return _PillowSink(out, fps, "WEBP")
    return _PngSink(out, fps)


def _check_fps(fps) -> None:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 240):
        raise InputError(f"fps must be a number in (0, 240], got {fps!r}")


@contextlib.contextmanager
def _committed(sink: _Sink):
    """Run the body writing into `sink`, then finish it (the file appears at once); on any error remove the
    partial output and re-raise."""
    try:
        yield sink
        sink.finish()
    except BaseException:
        sink.abort()
        raise
    log.info("wrote %s (%d frames, %.3g fps)", sink.out, sink.count, sink.fps)


def write_frames(frames: Iterable[np.ndarray], out: str | os.PathLike, fps: float = 25.0,
                 overwrite: bool = False) -> Path:
    """Stream uint8 frames [H, W, 3] (or batches [N, H, W, 3]) into `out`; atomic; returns the path."""
    _check_fps(fps)
    out = check_output_path(out, overwrite)
    with _committed(open_sink(out, fps)) as sink:
        for item in frames:
            batch = item if item.ndim == 4 else item[None]
            for frame in batch:
                sink.write(frame)
        if sink.count == 0:
            raise InputError(f"{out}: no frames to write")
    return out


def render_video(G, ws: torch.Tensor, out: str | os.PathLike, fps: float = 25.0, batch_size: int = 16,
                 dtype: torch.dtype | None = None, overwrite: bool = False,
                 postprocess: Callable[[np.ndarray], np.ndarray] | None = None, progress: bool = False) -> Path:
    """Render W+ codes [N, num_ws, w_dim] as a video/GIF/WebP/PNG folder, streaming batches to the writer.

    `postprocess` maps a uint8 batch [b, R, R, 3] to frames (e.g. paste-back into a photo, side-by-side).
    An .mp4 of the generator's own frames (no postprocess, even size) takes the fast path, `_render_mp4_yuv`.
    """
    if ws.ndim != 3:
        raise InputError(f"ws must have shape [N, num_ws, w_dim], got {list(ws.shape)}")
    if not 0 < ws.shape[0] <= MAX_FRAMES:
        raise InputError(f"frame count must be in 1..{MAX_FRAMES}, got {ws.shape[0]}")
    out = check_output_path(out, overwrite)
    if out.suffix.lower() == ".mp4" and postprocess is None and G.resolution % 2 == 0:
        return _render_mp4_yuv(G, ws, out, fps, batch_size, dtype, progress)

    def frames():
        for imgs in synthesize_batches(G, ws, batch_size, dtype, progress=progress):
            arr = to_uint8(imgs)
            yield postprocess(arr) if postprocess else arr

    return write_frames(frames(), out, fps, overwrite)


def _render_mp4_yuv(G, ws: torch.Tensor, out: Path, fps: float, batch_size: int, dtype, progress: bool) -> Path:
    """The fast .mp4 path: frames converted to I420 where they are rendered (`to_yuv420`), and H.264 encoding
    on a worker thread while the next batch renders (a queue of two batches bounds the memory). The file
    appears atomically, and an error on either side removes the partial file."""
    import queue
    import threading

    _check_fps(fps)
    todo: queue.Queue = queue.Queue(maxsize=2)
    failed: list[BaseException] = []
    with _committed(_Mp4Sink(out, fps)) as sink:

        def encode():
            while True:
                batch = todo.get()
                if batch is None:
                    return
                if failed:
                    continue  # keep draining so the producer never blocks
                try:
                    for planes in batch:
                        sink.write_yuv420(planes)
                except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
                    failed.append(e)

        worker = threading.Thread(target=encode, name="micromotion-encode", daemon=True)
        worker.start()
        try:
            for imgs in synthesize_batches(G, ws, batch_size, dtype, progress=progress):
                if failed:
                    break
                todo.put(to_yuv420(imgs))
        finally:
            todo.put(None)
            worker.join()
        if failed:
            raise failed[0]
    return out


def read_video_frames(path: str | os.PathLike, max_frames: int = 10) -> np.ndarray:
    """Decode up to `max_frames` frames of a video file to uint8 [N, H, W, 3] (used by tests and previews)."""
    import av

    frames = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= max_frames:
                break
    return np.stack(frames)


def contact_sheet(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, H, W, 3] -> one grid image (white padding)."""
    n, h, w, _ = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        sheet[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return sheet


def save_png(image: np.ndarray, out: str | os.PathLike) -> Path:
    """Write a uint8 image atomically."""
    from PIL import Image

    out = Path(out)
    with atomic_output(out) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return out
