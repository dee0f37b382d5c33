"""Reading foreign checkpoints without running their code.

- `safe_unpickle`: a restricted unpickler for NVIDIA's network pickles (stylegan2-ada-pytorch, stylegan3).
  Those pickles carry Python source and would `exec` it on load; here persistent objects come back as inert
  `PersistentObject(class_name, state)` records, tensors are rebuilt from bytes, and any other callable
  is refused with an error naming it.
- `read_torch_file`: torch zip / legacy files through `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import argparse
import io
import os
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict

import torch

from ..errors import CheckpointError

__all__ = ["PersistentObject", "persistent_state_dict", "read_torch_file", "safe_unpickle"]



class PersistentObject:
    """Inert stand-in for an NVIDIA `persistent_class` instance: its class name and pickled `__dict__`."""

    def __init__(self, meta: dict):
        self.class_name = meta.get("class_name", "?")
        self.state = meta.get("state") or {}

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"

    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict: a plain dict."""

    def __setstate__(self, state):  # EasyDict pickles an empty __dict__
        pass


def _load_storage_bytes(b: bytes):
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _numpy_allowed() -> dict:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return {}
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    out = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = multiarray._reconstruct
        out[(mod, "scalar")] = multiarray.scalar
    return out


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentObject,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, path):
        super().__init__(f)
        self._path = path
        self._allowed = {**_ALLOWED, **_numpy_allowed()}

    def find_class(self, module, name):
        fn = self._allowed.get((module, name))
        if fn is None:
            raise CheckpointError(
                f"{self._path}: refusing to load: the pickle asks for '{module}.{name}', which is not tensor data "
                f"(only NVIDIA StyleGAN2 network pickles are read, and no pickled code is ever run)")
        return fn

    def persistent_load(self, pid):
        raise CheckpointError(f"{self._path}: unexpected persistent id in pickle; not an NVIDIA network pickle")


def safe_unpickle(path: str | os.PathLike):
    """Unpickle `path` allowing only tensors, plain containers and NVIDIA persistent-object records."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, UnicodeDecodeError, MemoryError) as e:
        raise CheckpointError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); the file may be "
                              f"truncated or not a network pickle") from None


def read_torch_file(path: str | os.PathLike):
    """torch.load with weights_only=True (argparse.Namespace allowed, as rosinality's training saves it)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            # torch warns when a file was pickled with a protocol other than its default; harmless here
            warnings.filterwarnings("ignore", message=".*pickle protocol.*", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's text goes on to suggest weights_only=False, which would run the file's code: keep only what it
        # found ("Unsupported global: GLOBAL posix.system ...")
        found = re.search(r"Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+", str(e))
        msg = found.group(0) if found else "unsupported content"
        raise CheckpointError(f"{path}: refusing to load: the torch file holds more than tensors ({msg}); no code "
                              f"in it was run") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable torch file ({type(e).__name__}: {str(e)[:200]}); "
                              f"the file may be truncated") from None


def persistent_state_dict(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a pickled module tree (`_parameters`, `_buffers`, `_modules`) into a state dict."""
    out: dict[str, torch.Tensor] = {}
    st = obj.state
    for kind in ("_parameters", "_buffers"):
        for k, v in (st.get(kind) or {}).items():
            if v is not None:
                out[prefix + k] = v.detach() if isinstance(v, torch.Tensor) else torch.as_tensor(v)
    for k, child in (st.get("_modules") or {}).items():
        if isinstance(child, PersistentObject):
            out.update(persistent_state_dict(child, prefix + k + "."))
    return out
