"""Latent files: an inversion's ws (and noise maps, alignment, method) on disk.

`.safetensors`: tensor `ws` [N, num_ws, w_dim] (and `noise.{i}`) with JSON metadata (format
"micromotion-latent", version 1). `.pt`/`.pth`: the ws tensor alone, as the original repository's latent files.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..errors import InputError
from ..io.images import atomic_output
from .inversion import Inversion

log = logging.getLogger(__name__)

LATENT_FORMAT = "micromotion-latent"
LATENT_VERSION = 1
LATENT_SUFFIXES = (".safetensors", ".pt", ".pth")


def check_latent_path(path: str | os.PathLike) -> Path:
    """Validate an output latent path before any work is done: known extension, existing folder."""
    path = Path(path)
    if path.suffix.lower() not in LATENT_SUFFIXES:
        raise InputError(f"{path}: unknown latent file extension {path.suffix!r}; use .safetensors (ws plus "
                         f"metadata and noise) or .pt (a plain ws tensor, as the original repository's files)")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist; create it first")
    return path


def save_latent(inversion: Inversion | torch.Tensor, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ws atomically. `.safetensors`: tensor `ws` (and `noise.{i}`), metadata with the method, the
    transform, quad and landmarks (JSON). `.pt`/`.pth`: the ws tensor `[N, num_ws, w_dim]` alone (float32,
    CPU; `torch.load` gives it back, as the original repository's latent files)."""
    path = check_latent_path(path)
    inv = inversion if isinstance(inversion, Inversion) else None
    ws = (inv.ws if inv is not None else inversion).detach().to("cpu", torch.float32).contiguous()
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        tensors = {"ws": ws}
        meta = {"format": LATENT_FORMAT, "version": str(LATENT_VERSION)}
        if inv is not None:
            meta.update(method=inv.method, resolution=str(inv.reconstruction.shape[-1]),
                        details=json.dumps(inv.details))
            for i, n in enumerate(inv.noise or []):
                tensors[f"noise.{i}"] = n.detach().to("cpu", torch.float32).contiguous()
            if inv.aligned is not None:
                a = inv.aligned
                meta.update(source=a.source, source_size=json.dumps(list(a.source_size)), aligned_size=str(a.size),
                            detector=a.detector, transform=json.dumps(inv.transform.tolist()),
                            quad=json.dumps(a.quad.tolist()), landmarks=json.dumps(a.landmarks.tolist()))
        meta.update({k: str(v) for k, v in (metadata or {}).items()})
        with atomic_output(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    else:
        if inv is not None and inv.noise is not None:
            log.warning("%s: a .pt latent holds ws only; the optimized noise maps are not saved (use .safetensors)",
                        path)
        with atomic_output(path) as tmp:
            torch.save(ws, tmp)
    return path


def load_latent(path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Read a latent file: ws `[N, num_ws, w_dim]` (a `[num_ws, w_dim]` tensor gets N=1) and its metadata
    (safetensors; noise maps, if any, under `meta['noise']`). Accepts our files and plain tensor files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such latent file; check the path")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable safetensors file ({e})") from None
        if "ws" not in tensors:
            raise InputError(f"{path}: no 'ws' tensor in this safetensors file; expected a micromotion latent")
        ws = tensors["ws"]
        noise = [tensors[f"noise.{i}"] for i in range(len(tensors)) if f"noise.{i}" in tensors]
        if noise:
            meta["noise"] = noise
    else:
        try:
            ws = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- torch raises many types for a bad file; all mean "unreadable"
            raise InputError(f"{path}: not a readable torch tensor file ({' '.join(str(e).split())[:200]})") from None
        meta = {}
        if isinstance(ws, dict):
            ws = ws.get("ws", ws.get("latent"))
        if not isinstance(ws, torch.Tensor):
            raise InputError(f"{path}: holds no ws tensor; expected a tensor [N, num_ws, w_dim]")
    if ws.ndim == 2:
        ws = ws.unsqueeze(0)
    if ws.ndim != 3:
        raise InputError(f"{path}: ws has shape {list(ws.shape)}; expected [N, num_ws, w_dim]")
    return ws.float(), meta
