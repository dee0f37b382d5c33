"""Loading and saving generators by file or registry name.

The readers live below the weights registry so that it can check downloaded files with them without an import
cycle: key maps and our generator format in `micromotion.models.stylegan2_convert`, the restricted unpicklers
in `micromotion.io.pickle`. This module adds name resolution (`load_generator('world')`) on top and keeps the
names it always exported.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .io.pickle import PersistentObject, read_torch_file, safe_unpickle
from .models.stylegan2 import Generator
from .models.stylegan2_convert import (FORMAT_NAME, FORMAT_VERSION, from_nvidia, from_rosinality,
                                       read_generator_file, save_generator)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PersistentObject", "from_nvidia", "from_rosinality", "load_generator",
           "read_generator_file", "read_torch_file", "safe_unpickle", "save_generator"]


def load_generator(path_or_name: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from a file or a weights-registry name.

    Files: rosinality `.pt` (dict with `g_ema`), NVIDIA `.pkl` (with `G_ema`, read without running pickled
    code), or our `.safetensors`. Returns an eval-mode `Generator` on `device` with gradients off.
    """
    p = Path(path_or_name)
    if not p.exists() and not any(s in str(path_or_name) for s in ("/", os.sep)) and p.suffix == "":
        from .weights import resolve

        p = resolve(str(path_or_name))
    G = read_generator_file(p)
    return G.to(device)
