"""Reading motions and anchors from files micromotion did not write: the paper's published directions and
anchor stacks, and the one `load_motion` that tells them from our motion files.

The authors publish directions as torch files (`pregen_latents/<name>/d_latent`, one tensor [1, 18, 512]
saved on cuda:0) and the original code saves anchors as a torch list of [num_ws, w_dim] latents
(`latent/<text>_s<seed>_pre_pca`). Both are read without unpickling code (`checkpoint.read_torch_file`).
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import torch

from ..errors import InputError
from .motion import Motion, _check_anchors


def read_paper_direction(path: str | os.PathLike) -> torch.Tensor:
    """One of the authors' published directions (`pregen_latents/<name>/d_latent`): a torch file holding one
    tensor [1, 18, 512], saved on cuda:0. Read onto the CPU without unpickling code; returns [18, 512]."""
    from ..io.pickle import read_torch_file
    from ..errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such direction file")
    try:
        obj = read_torch_file(path)
    except CheckpointError as e:
        raise InputError(str(e)) from None
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a direction tensor [1, num_ws, w_dim]")
    d = obj.detach()
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2 or 0 in d.shape or not d.is_floating_point():
        raise InputError(f"{path}: direction tensor has shape {list(obj.shape)} ({obj.dtype}); expected float "
                         f"[1, num_ws, w_dim] like the authors' [1, 18, 512]")
    if not torch.isfinite(d).all():
        raise InputError(f"{path}: direction contains NaN or inf")
    return d.to(torch.float32).contiguous()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _paper_name(path: Path) -> str:
    # the authors' layout is pregen_latents/<motion>/d_latent
    return path.parent.name if path.stem == "d_latent" and path.parent.name else path.stem


def load_motion(path: str | os.PathLike, generator: torch.nn.Module | None = None, name: str | None = None) -> Motion:
    """Read a motion: our `.safetensors` motion file, or one of the authors' direction torch files.

    With `generator`, a motion file made for another generator is refused (InputError naming both); an
    authors' direction, which records no generator, is checked for shape and stamped with `generator`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such motion file")
    if not zipfile.is_zipfile(path):
        motion = Motion.load(path, generator=generator)
        if name:
            motion.meta.name = name
        return motion
    d = read_paper_direction(path)
    source = {"kind": "paper", "file": path.name, "sha256": _file_sha256(path)}
    try:
        return Motion.from_direction(d, name=name or _paper_name(path), generator=generator, source=source)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def load_anchors(path: str | os.PathLike) -> torch.Tensor:
    """Anchor latents [K, num_ws, w_dim] from a file: a torch file holding a tensor or a list of [num_ws, w_dim]
    tensors (as the original code saves `latent/<text>_s<seed>_pre_pca`), or a `.safetensors` file with one
    tensor or a tensor named 'anchors'."""
    from ..io.pickle import read_torch_file
    from ..errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such anchors file")
    if zipfile.is_zipfile(path):
        try:
            obj = read_torch_file(path)
        except CheckpointError as e:
            raise InputError(str(e)) from None
    else:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise InputError(f"{path}: not a torch or safetensors anchors file ({str(e).splitlines()[0][:160]})") from None
        if "anchors" in tensors:
            obj = tensors["anchors"]
        elif len(tensors) == 1:
            obj = next(iter(tensors.values()))
        else:
            raise InputError(f"{path}: holds tensors {sorted(tensors)[:5]}; name the anchor stack 'anchors'")
    if isinstance(obj, dict) and "anchors" in obj:
        obj = obj["anchors"]
    try:
        return _check_anchors(obj if isinstance(obj, torch.Tensor) else list(obj) if isinstance(obj, (list, tuple)) else obj)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
