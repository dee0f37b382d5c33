"""The weights cache: where files live (`<home>/weights/`, `micromotion.io.files.home`), per-entry file
locks, checksum records trusted on first use (`sha256.json`), verification stamps, and verifying a cached file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..errors import WeightsError
from ..io.files import home, pid_alive, write_text
from .checks import _check_structure
from .registry import WeightSpec, get_spec

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")

# ----------------------------------------------------------------------------------------------------------
# Cache layout


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` > `$MICROMOTION_HOME` > `~/.cache/micromotion` (not created): `micromotion.io.files.home`."""
    return home(cache_dir)


def weights_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "weights"


def make_weights_dir(wdir: Path) -> None:
    """Create the cache folder; WeightsError saying how to choose another one when that fails."""
    try:
        wdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the cache folder {wdir} ({e.strerror}); pass --cache-dir or set "
                           f"MICROMOTION_HOME to a writable folder") from None


def _bundled_path(spec: WeightSpec) -> Path:
    return Path(__file__).resolve().parents[1] / "data" / spec.bundled_dir / spec.filename


def bundled_file(spec: WeightSpec) -> Path:
    """The installed file of a bundled entry; WeightsError when the installation lacks it."""
    path = _bundled_path(spec)
    if not path.is_file():
        raise WeightsError(f"'{spec.name}' ships with micromotion but {path} is missing from this installation; "
                           f"reinstall micromotion, or pass a file path instead of the name")
    return path


def cache_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the file for `name` lives (or will live) once cached; bundled files live in the package."""
    spec = get_spec(name)
    if spec.kind == "bundled":
        return _bundled_path(spec)
    return weights_dir(cache_dir) / spec.filename


def _part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _lock(wdir: Path, name: str) -> FileLock:
    (wdir / ".locks").mkdir(parents=True, exist_ok=True)
    return FileLock(str(wdir / ".locks" / f"{name}.lock"))


@contextlib.contextmanager
def _locked(wdir: Path, name: str) -> Iterator[None]:
    lock = _lock(wdir, name)
    try:
        lock.acquire(timeout=0.2)
    except Timeout:
        log.info("waiting for another process working on '%s' (lock %s)", name, lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def is_offline() -> bool:
    return os.environ.get("MICROMOTION_OFFLINE", "").strip().lower() in _TRUE


# ----------------------------------------------------------------------------------------------------------
# Records: checksums trusted on first use, and verification stamps


_RECORDS = "sha256.json"  # TOFU checksums: precious, never silently discarded
_STAMPS = ".verified.json"  # a cache of completed verifications: losing it only costs a re-hash


def _read_json(path: Path, precious: bool) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        return data
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        if precious:
            raise WeightsError(f"{path}: unreadable checksum records ({e}); fix the file, or delete it to forget "
                               f"the checksums recorded on first use") from None
        log.debug("ignoring unreadable %s (%s)", path, e)
        return {}


def _write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", error=WeightsError)


def _update_json(wdir: Path, fname: str, key: str, value: dict | None, precious: bool) -> None:
    with _locked(wdir, "_records"):
        path = wdir / fname
        data = _read_json(path, precious)
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        _write_json(path, data)


def _recorded_sha256(spec: WeightSpec, wdir: Path) -> str | None:
    rec = _read_json(wdir / _RECORDS, precious=True).get(spec.name)
    if isinstance(rec, dict) and rec.get("filename") == spec.filename and isinstance(rec.get("sha256"), str):
        return rec["sha256"]
    return None


def _record_sha256(spec: WeightSpec, wdir: Path, digest: str, size: int, origin: str) -> None:
    log.info("recorded sha256 %s for '%s' (trust on first use, from %s)", digest, spec.name, origin)
    _update_json(wdir, _RECORDS, spec.name, {
        "filename": spec.filename, "sha256": digest, "size": size, "origin": origin,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")}, precious=True)


def _expected_sha256(spec: WeightSpec, wdir: Path) -> str | None:
    return spec.sha256 or _recorded_sha256(spec, wdir)


def expected_sha256(name: str, cache_dir: str | os.PathLike | None = None) -> str | None:
    """The sha256 `name` is verified against: published, or recorded on first use; None if neither yet."""
    spec = get_spec(name)
    return None if spec.kind == "bundled" else _expected_sha256(spec, weights_dir(cache_dir))


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    # ctime cannot be set by os.utime, so any write to the file invalidates the stamp
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _stamp_ok(spec: WeightSpec, wdir: Path, path: Path, expected: str) -> bool:
    rec = _read_json(wdir / _STAMPS, precious=False).get(spec.name)
    try:
        return (isinstance(rec, dict) and rec.get("sha256") == expected and rec.get("filename") == spec.filename
                and rec.get("stat") == _stat_key(path))
    except OSError:
        return False


def _write_stamp(spec: WeightSpec, wdir: Path, path: Path, digest: str) -> None:
    try:
        _update_json(wdir, _STAMPS, spec.name, {"filename": spec.filename, "sha256": digest,
                                                "stat": _stat_key(path)}, precious=False)
    except OSError as e:  # only a cache of work done
        log.debug("could not write verification stamp for %s: %s", spec.name, e)


def sha256_file(path: str | os.PathLike, progress: bool = False, desc: str | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (with a tqdm bar when `progress`)."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=desc or f"sha256 {path.name}", disable=None if progress else True,
                                     leave=False) as bar:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()



# ----------------------------------------------------------------------------------------------------------
# Verify, download, import


def _verify_cached(spec: WeightSpec, wdir: Path, target: Path, progress: bool) -> str | None:
    """Checks the cached file. Returns None if good, else a reason. Records TOFU checksums of new files."""
    expected = _expected_sha256(spec, wdir)
    if expected and _stamp_ok(spec, wdir, target, expected):
        return None
    digest = sha256_file(target, progress=progress, desc=f"verify {spec.name}")
    if expected is None:  # a file placed by hand for a TOFU entry: check what it is before trusting it
        try:
            _check_tofu(target, spec, digest)
        except WeightsError as e:
            return f"{target} is not a valid '{spec.name}' file: {e}"
        _record_sha256(spec, wdir, digest, target.stat().st_size, f"file found at {target}")
    elif digest != expected:
        return f"{target} does not match its sha256: got {digest}, expected {_describe(spec, expected)}"
    _write_stamp(spec, wdir, target, digest)
    return None


def _check_tofu(path: Path, spec: WeightSpec, digest: str) -> None:
    if spec.sha256_prefix and not digest.startswith(spec.sha256_prefix):
        raise WeightsError(f"its sha256 {digest} does not start with the published prefix {spec.sha256_prefix}")
    _check_structure(path, spec)


def _describe(spec: WeightSpec, expected: str) -> str:
    return f"published sha256 {expected}" if spec.sha256 else f"sha256 recorded on first use {expected}"


def _clean_stale(wdir: Path, spec: WeightSpec) -> None:
    """Remove staging files left by a crashed process (call with the entry's lock held)."""
    for p in wdir.glob(f".*-*-{spec.filename}"):
        log.debug("removing stale %s", p)
        _discard(p)


def clean_dead_stages(wdir: Path) -> list[Path]:
    """Remove the staging files `.PID-TID-NAME` that processes which no longer run (SIGKILL, power loss) left in
    the weights folder; a running process's are kept, and so are `.part` files (a later download resumes them).
    Needs no lock: a dead process's files have no owner. Returns what was removed."""
    removed = []
    if not wdir.is_dir():
        return removed
    for p in wdir.glob(".*-*-*"):
        pid, _, rest = p.name[1:].partition("-")
        tid, _, _name = rest.partition("-")
        if not (pid.isdigit() and tid.isdigit()) or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        if p.is_file() and not p.is_symlink():
            log.info("removing %s, left by an interrupted process %s", p, pid)
            _discard(p)
            removed.append(p)
    return removed


def _stage_name(target: Path) -> Path:
    # keeps the real suffix: format sniffing (.pkl vs .pt) relies on it
    return target.with_name(f".{os.getpid()}-{threading.get_ident()}-{target.name}")



def _discard(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
