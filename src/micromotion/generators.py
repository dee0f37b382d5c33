"""The generator interface every architecture implements, and the one place a generator is loaded.

A generator maps z to W+ codes and W+ codes to images (NVlabs stylegan3's `G.mapping` / `G.synthesis`); align,
invert, anchors, decompose, render, animate, evaluate and the web page use nothing else of it:

    G.mapping(z [N, z_dim], truncation_psi=1.0) -> ws [N, num_ws, w_dim]
    G.synthesis(ws [N, num_ws, w_dim], noise_mode="const") -> images [N, 3, resolution, resolution], about [-1, 1]
    G.z_dim, G.w_dim, G.num_ws, G.resolution: ints;  G.w_avg: [w_dim] (the truncation centre)

`models.stylegan2.Generator` (the FFHQ checkpoints and the world model) and `models.mobilestylegan.Generator`
(the `mobilestylegan-ffhq-1024` entry, converted once from the random-face package) implement it. A generator's identity
(which CLIP, which encoder, which presets belong to it) is not part of the interface: `profiles.profile_for(G)`
looks it up by the registry name it was loaded from or by its weights' fingerprint.

To add an architecture: a reader `(path) -> generator` with a test `(path) -> bool` saying the file is its
format, registered in `READERS` ahead of StyleGAN2's (which takes every other file).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import torch

from .errors import InputError, MicromotionError


@runtime_checkable
class GeneratorLike(Protocol):
    """What every generator architecture provides (see the module docstring for shapes)."""

    z_dim: int
    w_dim: int
    num_ws: int
    resolution: int
    w_avg: torch.Tensor

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor: ...

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor: ...


def check_generator(G) -> None:
    """TypeError naming what is missing when `G` does not implement `GeneratorLike`; ValueError when its sizes
    disagree (w_avg not [w_dim], a non-positive size)."""
    missing = [a for a in ("mapping", "synthesis", "z_dim", "w_dim", "num_ws", "resolution", "w_avg")
               if not hasattr(G, a)]
    if missing:
        raise TypeError(f"{type(G).__name__} is not a generator: it lacks {', '.join(missing)} "
                        f"(see micromotion.generators.GeneratorLike)")
    for a in ("z_dim", "w_dim", "num_ws", "resolution"):
        v = getattr(G, a)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{type(G).__name__}.{a} must be a positive int, got {v!r}")
    if tuple(G.w_avg.shape) != (G.w_dim,):
        raise ValueError(f"{type(G).__name__}.w_avg must have shape [{G.w_dim}], got {list(G.w_avg.shape)}")


def check_ws(G, ws: torch.Tensor, what: str = "ws") -> torch.Tensor:
    """`ws` unchanged if it is [N, num_ws, w_dim] for `G`; else an InputError naming both shapes."""
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        rows = f"{ws.shape[1]} W+ rows, " if ws.ndim == 3 and ws.shape[1] != G.num_ws else ""
        raise InputError(f"{what} of shape {list(ws.shape)} does not fit this generator: {rows}it takes "
                         f"[N, {G.num_ws}, {G.w_dim}] ({G.num_ws} W+ rows of {G.w_dim})")
    return ws


def _read_stylegan2(path: Path):
    from .models.stylegan2_convert import read_generator_file

    return read_generator_file(path)


def _is_mobilestylegan(path: Path) -> bool:
    from .models.mobilestylegan_convert import is_generator_file

    return is_generator_file(path)


def _read_mobilestylegan(path: Path):
    from .models.mobilestylegan_convert import read_generator_file

    return read_generator_file(path)


#: (name, accepts(path) -> bool, read(path) -> generator), tried in order; StyleGAN2 reads every other file.
READERS: list[tuple[str, Callable[[Path], bool], Callable[[Path], torch.nn.Module]]] = [
    ("mobilestylegan", _is_mobilestylegan, _read_mobilestylegan),  # our safetensors marked architecture=...
    ("stylegan2", lambda path: True, _read_stylegan2),
]


def _registry_name(path: Path) -> str | None:
    """The weights-registry name whose file `path` is (e.g. the world generator given by its path), else None.
    Compares file identity only: nothing is hashed or downloaded."""
    from .weights import REGISTRY, cache_path

    for name, entry in REGISTRY.items():
        if entry.model_kind != "generator":
            continue
        try:
            known = cache_path(name)
            if known.is_file() and os.path.samefile(known, path):
                return name
        except (OSError, MicromotionError):
            continue
    return None


def load_generator(spec: str | os.PathLike, device: str | torch.device = "cpu"):
    """A generator from a weights-registry name or a file, eval mode, gradients off, on `device`.

    Files: rosinality `.pt`, NVIDIA `.pkl` (read without running pickled code), our `.safetensors` of either
    architecture (see `READERS`). The generator remembers the registry name it came from (`G.registry_name`, None for other
    files), which `profiles.profile_for` reads.
    """
    from .weights import resolve

    s = os.fspath(spec)
    path = Path(s).expanduser()
    name = None
    if not path.exists() and not any(c in s for c in ("/", os.sep)) and path.suffix == "":
        name, path = s, resolve(s)  # an unknown name: one line listing the registry's names
    G = next(read(path) for _, accepts, read in READERS if accepts(path))
    check_generator(G)
    G.registry_name = name or _registry_name(path)
    return G.to(device)
