"""Our file formats: safetensors tensors + JSON-able string metadata, written atomically, read with checks.

Every file micromotion writes (generators, CLIP, oracle, motions, anchors) goes through `save_safetensors`
(temp file beside the target + `os.replace`, so a crash never leaves a half-written file) and is read back by
`read_safetensors`, which checks the format name and version and turns any read failure into one line.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import CheckpointError


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write `tensors` (moved to CPU, contiguous) with string `metadata` to `path`, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_safetensors(path: str | os.PathLike, format_name: str, version: int, what: str
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read one of our safetensors files; CheckpointError (naming the file) if it is unreadable, of another
    format (`metadata['format'] != format_name`), or newer than `version`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:160]})") from None
    if meta.get("format") != format_name:
        raise CheckpointError(f"{path}: safetensors file is not a micromotion {what} (format={meta.get('format')!r})")
    try:
        v = int(meta.get("version", meta.get("format_version", 0)))
    except ValueError:
        raise CheckpointError(f"{path}: bad format version {meta.get('version')!r}") from None
    if v > version:
        raise CheckpointError(f"{path}: {what} format version {v} is newer than this micromotion supports "
                              f"({version}); upgrade micromotion")
    return tensors, meta


def check_state_dict(own: dict[str, torch.Tensor], sd: dict, path, what: str, *, prefix: str = "",
                     optional=lambda k: False, ignored=lambda k: False) -> None:
    """A foreign state dict `sd` must fit a module's own `own` exactly: no key missing (unless `optional(k)`), none
    unexpected (unless `ignored(k)`), every shape equal. CheckpointError naming the file and the first misfit;
    `prefix` is how the keys are spelled in the file (e.g. 'encoder.')."""
    missing = [k for k in own if k not in sd and not optional(k)]
    if missing:
        raise CheckpointError(f"{path}: missing key '{prefix}{missing[0]}' ({len(missing)} missing); not {what}")
    extra = [k for k in sd if k not in own and not ignored(k)]
    if extra:
        raise CheckpointError(f"{path}: unexpected key '{prefix}{extra[0]}' ({len(extra)} unexpected); not {what}")
    for k, v in own.items():
        if k not in sd:
            continue
        t = sd[k]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(v.shape):
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(f"{path}: '{prefix}{k}' has shape {got}, expected {list(v.shape)}")
