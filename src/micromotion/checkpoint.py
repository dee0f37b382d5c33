"""The names `micromotion.checkpoint` always exported, kept for users' imports.

The code lives lower: key maps and our generator format in `micromotion.models.stylegan2_convert`, the
restricted unpicklers in `micromotion.io.pickle`, loading by name or file in `micromotion.generators`.
"""
from __future__ import annotations

from .generators import load_generator
from .io.pickle import PersistentObject, read_torch_file, safe_unpickle
from .models.stylegan2_convert import (FORMAT_NAME, FORMAT_VERSION, from_nvidia, from_rosinality,
                                       read_generator_file, save_generator)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PersistentObject", "from_nvidia", "from_rosinality", "load_generator",
           "read_generator_file", "read_torch_file", "safe_unpickle", "save_generator"]
