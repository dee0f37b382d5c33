"""The one device resolver every shell uses: `auto | cpu | cuda | cuda:N | mps` -> `torch.device`.

Library code follows `x.device`; "auto" is resolved once, here, by the CLI, the web page and `Animator`.
"""
from __future__ import annotations

import re

import torch

from .errors import InputError

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda, else mps, else cpu. An explicit device must exist here; anything else is an
    `InputError` naming the accepted values."""
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m:
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available (is CUDA torch installed?); "
                             f"use --device cpu")
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise InputError("--device mps: no Apple GPU is available; use --device cpu")
        return torch.device("mps")
    raise InputError(f"unknown device '{device}'; choose {CHOICES}")
