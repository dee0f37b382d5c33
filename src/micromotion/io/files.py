"""Our file formats and the mechanisms every file goes through.

- One header convention: safetensors tensors + string metadata with `format` (our format name) and `version`
  (an integer). Files written before the convention used `format_version` (motions); `header_version` reads
  both, `header` writes `version` only.
- One atomic writer, `atomic_output`: a temporary file beside the target, `os.replace` on success, removed on
  failure, so a crash never leaves a half-written file; the result gets the permissions a plain `open()` would
  give (0o666 minus the umask), not the 0600 of a temp file.
- One fingerprint of a generator (or any module), `fingerprint`: 'sha256:<hex>' of its config and every weight;
  `fingerprint_matches` also accepts the three older forms stored in earlier files.
- One cache root, `home()`: argument > `$MICROMOTION_HOME` > `~/.cache/micromotion`, `~` and `$VARS` expanded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
import weakref
from pathlib import Path
from typing import Iterator

import torch

from ..errors import CheckpointError, InputError

__all__ = ["HOME_ENV", "atomic_output", "check_state_dict", "fingerprint", "fingerprint_matches", "header",
           "header_version", "home", "legacy_fingerprints", "read_safetensors", "save_safetensors",
           "tensor_fingerprint", "write_text"]

#: Environment variable naming the cache root.
HOME_ENV = "MICROMOTION_HOME"
DEFAULT_HOME = "~/.cache/micromotion"


# ----------------------------------------------------------------------------------------------------------
# The cache root


def home(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: `cache_dir` > `$MICROMOTION_HOME` > `~/.cache/micromotion`, with `~` and environment
    variables expanded, as an absolute path (not created)."""
    root = os.fspath(cache_dir) if cache_dir is not None and os.fspath(cache_dir) != "" else None
    if root is None:
        root = os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(os.path.expandvars(root)).expanduser().absolute()


# ----------------------------------------------------------------------------------------------------------
# Writing atomically


def _umask() -> int:
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, error: type[Exception] = InputError) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that go by the extension work); on
    success it replaces `path` (`os.replace`) with the permissions of a newly created file (0o666 & ~umask),
    on error it is removed, so readers never see a half-written file and a failed run leaves nothing behind.
    `error` (InputError) is raised, before anything is written, when `path` is a folder or its folder is
    missing."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder; give an output file name")
    parent = path.parent
    if not parent.is_dir():
        raise error(f"{path}: folder {parent} does not exist; create it first")
    tmp = parent / f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}"
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str, *, error: type[Exception] = InputError) -> Path:
    """Write a UTF-8 text file atomically."""
    with atomic_output(path, error=error) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# Safetensors with our header


def header(format_name: str, version: int, **extra) -> dict[str, str]:
    """The metadata of one of our files: `format`, `version`, and `extra` (values turned into strings)."""
    return {"format": format_name, "version": str(int(version)), **{k: str(v) for k, v in extra.items()}}


def header_version(meta: dict) -> int:
    """The format version in a header: `version`, or `format_version` in files written before the one
    convention (motions); 0 when absent. ValueError if it is not an integer."""
    return int(meta.get("version", meta.get("format_version", 0)))


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write `tensors` (moved to CPU, contiguous) with string `metadata` to `path`, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_output(path, error=CheckpointError) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    return path


def save_sharded(tensors: dict[str, torch.Tensor], folder: str | os.PathLike, stem: str, metadata: dict[str, str],
                 max_bytes: int = 15_000_000) -> int:
    """Write `tensors` as `folder/stem.NN.safetensors` shards of at most `max_bytes` of tensor data each (a
    tensor larger than that gets a shard of its own), each atomically, with `metadata` plus `shard` ('i/n') and
    `stem`; returns the number of shards, which the caller records (its state file, written last, is what makes
    the set current)."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        nbytes = v.numel() * v.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append({})
            size = 0
        groups[-1][k] = v
        size += nbytes
    for i, g in enumerate(groups):
        save_safetensors(g, Path(folder) / f"{stem}.{i:02d}.safetensors",
                         {**metadata, "stem": stem, "shard": f"{i}/{len(groups)}"})
    return len(groups)


def _read_file(path, error: type[Exception], what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata; `error` "PATH: WHAT (reason)" when it cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise error(f"{path}: {what} ({str(e).splitlines()[0][:160]})") from None


def load_sharded(folder: str | os.PathLike, stem: str, count: int,
                 expect: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors `save_sharded` wrote as `count` shards; CheckpointError naming the shard if one is missing,
    unreadable or of another set: another count, another stem, or metadata other than `expect` (e.g. the step
    the caller's state file records)."""
    out: dict[str, torch.Tensor] = {}
    for i in range(int(count)):
        path = Path(folder) / f"{stem}.{i:02d}.safetensors"
        tensors, meta = _read_file(path, CheckpointError, "missing or unreadable shard")
        want = {"shard": f"{i}/{count}", **({"stem": stem} if "stem" in meta else {}),
                **{k: str(v) for k, v in (expect or {}).items()}}
        for k, v in want.items():
            if meta.get(k) != v:
                raise CheckpointError(f"{path}: shard of another set ({k} {meta.get(k)!r}, expected {v!r}); the "
                                      f"checkpoint is incomplete or mixed")
        out.update(tensors)
    return out


def read_safetensors(path: str | os.PathLike, format_name: str, version: int, what: str, *,
                     error: type[Exception] = CheckpointError, minimum: int = 0
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read one of our safetensors files; `error` (CheckpointError, naming the file) if it is unreadable, of
    another format (`metadata['format'] != format_name`), older than `minimum` or newer than `version`."""
    tensors, meta = _read_file(path, error, "not a readable safetensors file")
    check_header(meta, path, format_name, version, what, error=error, minimum=minimum)
    return tensors, meta


def check_header(meta: dict, path, format_name: str, version: int, what: str, *,
                 error: type[Exception] = CheckpointError, minimum: int = 0) -> int:
    """The version of header `meta` of file `path`; `error` (naming the file) if it is of another format
    (`meta['format'] != format_name`), older than `minimum` or newer than `version`."""
    if meta.get("format") != format_name:
        raise error(f"{path}: safetensors file is not a micromotion {what} (format={meta.get('format')!r})")
    try:
        v = header_version(meta)
    except ValueError:
        raise error(f"{path}: bad format version {meta.get('version', meta.get('format_version'))!r}") from None
    if v > version:
        raise error(f"{path}: {what} format version {v} is newer than this micromotion supports "
                    f"({version}); upgrade micromotion")
    if v < minimum:
        raise error(f"{path}: bad {what} format version {v} (this micromotion reads {minimum}..{version})")
    return v


def config_from_dict(cls, d: dict, what: str, error: type[Exception] = ValueError):
    """`cls(**d)` for a config dataclass read back from a file's metadata or a state.json; `error` naming the keys
    `cls` does not have (a file of a newer or another program)."""
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise error(f"unknown {what} config keys {sorted(unknown)}")
    return cls(**d)


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


# ----------------------------------------------------------------------------------------------------------
# Fingerprints

_MEMO: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> (stamp, {form: hash})


def _remembered(module: torch.nn.Module, form: str, compute) -> str:
    """compute(module), remembered while no tensor of the module changes (tensor version counters)."""
    stamp = _stamp(module)
    hit = _MEMO.get(module)
    if hit is None or hit[0] != stamp:
        hit = (stamp, {})
        with contextlib.suppress(TypeError):  # a module that cannot be weakly referenced is just not remembered
            _MEMO[module] = hit
    if form not in hit[1]:
        hit[1][form] = compute(module)
    return hit[1][form]


def _stamp(module: torch.nn.Module) -> tuple:
    cfg = getattr(module, "cfg", None)
    return (repr(cfg), tuple((k, v.data_ptr(), v._version, v.dtype) for k, v in module.state_dict().items()))


def fingerprint(module: torch.nn.Module) -> str:
    """'sha256:<hex>' of a module's config (`module.cfg.to_dict()`, if any) and every weight and buffer (as
    float32, in state-dict order).

    Two generators share a fingerprint only if they compute the same function, so a motion stamped with one is
    never silently applied to another. Hashes all weights (0.1 s for a 1024² generator); the result is
    remembered while no tensor of the module changes."""
    return _remembered(module, "sha256", _sha256)


def _sha256(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    cfg = getattr(module, "cfg", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for key, t in module.state_dict().items():
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}:{list(t.shape)};".encode())
        h.update(t.numpy().data)
    return "sha256:" + h.hexdigest()


def _sha256_weights16(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _blake2b(module: torch.nn.Module) -> str:
    b = hashlib.blake2b(digest_size=16)
    for k, v in sorted(module.state_dict().items()):
        b.update(k.encode())
        _hash_tensor(b, v)
    return b.hexdigest()


def legacy_blake2b(module: torch.nn.Module) -> str:
    """blake2b-128 of keys, dtypes, shapes and raw bytes: the fingerprint anchor sources and text-anchor cache
    keys used before `fingerprint` (still how old cache entries are found)."""
    return _remembered(module, "blake2b", _blake2b)


def legacy_fingerprints(module: torch.nn.Module) -> set[str]:
    """Every form earlier versions stored in files: `fingerprint` (motions), its first 16 hex digits (preset
    cache folders), sha256 of keys and float32 weights without config cut to 16 hex (encoder files), and
    `legacy_blake2b` (anchor sources, text-anchor cache keys)."""
    fp = fingerprint(module)
    return {fp, fp[7:23], _remembered(module, "sha256-16", _sha256_weights16), legacy_blake2b(module)}


def fingerprint_matches(stored: str | None, module: torch.nn.Module) -> bool:
    """Whether a fingerprint read from a file names `module`: today's form, or any older one (computed only
    when the stored one has that older form's length)."""
    if not stored:
        return False
    fp = fingerprint(module)
    if stored == fp or stored.startswith("sha256:"):
        return stored == fp
    if len(stored) == 16:
        return stored == fp[7:23] or stored == _remembered(module, "sha256-16", _sha256_weights16)
    return len(stored) == 32 and stored == legacy_blake2b(module)


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """A content hash (hex) of tensors: dtype, shape and bytes (names a start latent in cache keys)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        _hash_tensor(h, t)
    return h.hexdigest()


def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        flat = t.to("cpu").contiguous().reshape(-1)
        flat = flat.to(torch.uint8) if flat.dtype == torch.bool else flat.view(torch.uint8)
        h.update(flat.numpy())


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (on this machine); unknown (no permission to ask) counts as running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
