"""The weights registry: every pretrained model micromotion uses, where to get it, and how to prove it is right.

One dict, `REGISTRY`, maps a name to a `WeightSpec` (URLs tried in order, sha256, license, size, format), in
the manner of open_clip's `pretrained.py`. Files are cached under `<cache>/weights/`, where `<cache>` is the
`cache_dir` argument, else `$MICROMOTION_HOME`, else `~/.cache/micromotion`.

- Downloads resume with HTTP Range requests from a `.part` file, show a tqdm bar, are verified against the
  sha256 and published atomically (`os.replace`, as stylegan3's dnnlib does), under a per-entry file lock so
  concurrent processes or threads never corrupt the cache.
- A cache hit is re-verified (openai/CLIP `_download`); the full hash is skipped only while the file's
  size, mtime, ctime and inode still match the stamp written at its last verification.
- Where no checksum is published the sha256 is recorded at first download or import ("trust on first use",
  TOFU) in `<cache>/weights/sha256.json`, after a structural check that the file is the expected kind of
  model; it is verified against that record from then on.
- Google-Drive-only files are "manual": the error names the link, the expected path and the
  `micromotion weights import NAME FILE` command. `MICROMOTION_OFFLINE=1` forbids all network access.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from .errors import CheckpointError, WeightsError

log = logging.getLogger(__name__)

__all__ = [
    "WeightSpec",
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
]

KINDS = ("generator", "clip", "encoder", "arcface", "lpips", "backbone", "file", "bundled")
FORMATS = ("nvidia-pkl", "torchscript", "torch", "safetensors", "any")

CHUNK = 1 << 20
TIMEOUT_S = 60.0
MAX_RETRIES = 5  # consecutive attempts that make no progress before a URL is given up
USER_AGENT = "micromotion-weights/1 (+https://github.com/; python-urllib)"
_TRUE = ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained model.

    `urls` are tried in order and must all serve the same bytes. `sha256=None` means no checksum is
    published: it is recorded on first use (TOFU). `size` is in bytes, approximate unless `size_exact`.
    `manual=True` marks files only a person can fetch (Google Drive): `manual_url` is where to get them.
    `expect` holds kind-specific structural expectations, e.g. `{"resolution": 1024}` for a generator.
    """

    name: str
    purpose: str
    filename: str
    kind: str
    format: str
    license: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    size_exact: bool = False
    manual: bool = False
    manual_url: str | None = None
    note: str = ""
    source: str = ""
    sha256_prefix: str | None = None
    expect: Mapping = field(default_factory=dict)
    provides: str | None = None  # bundled files: the kind of model they are (generator, clip, encoder, ...)

    @property
    def model_kind(self) -> str:
        """The kind of model the file is: `kind`, or for a bundled file what it `provides`."""
        return (self.provides or "file") if self.kind == "bundled" else self.kind

    def __post_init__(self):
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise ValueError(f"weight name {self.name!r} must be lowercase letters, digits, '.', '_' or '-'")
        if self.kind not in KINDS:
            raise ValueError(f"weight {self.name!r}: unknown kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.format not in FORMATS:
            raise ValueError(f"weight {self.name!r}: unknown format {self.format!r}; "
                             f"choose one of: {', '.join(FORMATS)}")
        if not self.filename or Path(self.filename).name != self.filename or self.filename.startswith("."):
            raise ValueError(f"weight {self.name!r}: filename {self.filename!r} must be a plain file name")
        if isinstance(self.urls, (str, bytes)):
            raise ValueError(f"weight {self.name!r}: urls must be a list or tuple of URLs, not a string")
        object.__setattr__(self, "urls", tuple(self.urls))
        for url in self.urls:
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"weight {self.name!r}: only http(s) URLs can be downloaded, got {url!r}")
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())
            if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
                raise ValueError(f"weight {self.name!r}: sha256 must be 64 hex digits, got {self.sha256!r}")
        if self.sha256_prefix is not None and not re.fullmatch(r"[0-9a-f]{6,63}", self.sha256_prefix):
            raise ValueError(f"weight {self.name!r}: sha256_prefix must be 6-63 lowercase hex digits")
        if self.kind != "bundled" and not self.manual and not self.urls:
            raise ValueError(f"weight {self.name!r}: give at least one URL or mark it manual=True")
        if self.manual and not self.manual_url:
            raise ValueError(f"weight {self.name!r}: a manual entry needs manual_url (where a person gets the file)")

    @property
    def tofu(self) -> bool:
        """True when no checksum is published and the first file seen is trusted (bundled files excepted)."""
        return self.sha256 is None and self.kind != "bundled"

    @property
    def downloadable(self) -> bool:
        return bool(self.urls) and self.kind != "bundled"


_GDRIVE_NOTE = ("Google Drive only: large files show a 'cannot scan for viruses' page instead of the file, so "
                "open the link in a browser (or use gdown), then import the file.")

_BUILTIN = [
    WeightSpec(
        name="stylegan2-ffhq-1024",
        purpose="StyleGAN2 FFHQ 1024x1024 generator",
        filename="stylegan2-ffhq-1024x1024.pkl",
        kind="generator",
        format="nvidia-pkl",
        license="NVIDIA Source Code License-NC",
        urls=("https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
              "stylegan2-ffhq-1024x1024.pkl",),
        size=364_000_000,
        source="https://github.com/NVlabs/stylegan3#additional-material (NGC catalog nvidia:research:stylegan2)",
        note="No checksum is published; recorded on first download. Read without running pickled code.",
        expect={"resolution": 1024},
    ),
    WeightSpec(
        name="clip-vit-b-32",
        purpose="OpenAI CLIP ViT-B/32 (text-guided anchors)",
        filename="ViT-B-32.pt",
        kind="clip",
        format="torchscript",
        license="MIT",
        urls=("https://openaipublic.azureedge.net/clip/models/"
              "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",),
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        size=353_976_522,
        source="https://github.com/openai/CLIP/blob/main/clip/clip.py (_MODELS; the sha256 is in the URL)",
        note="TorchScript archive.",
    ),
    WeightSpec(
        name="restyle-psp-ffhq",
        purpose="ReStyle-pSp FFHQ encoder (image -> W+)",
        filename="restyle_psp_ffhq_encode.pt",
        kind="encoder",
        format="torch",
        license="MIT; decoder is NVIDIA StyleGAN2 (NC)",
        manual=True,
        manual_url="https://drive.google.com/file/d/1sw6I2lRIB0MpuJkpc8F5BJiSZrc0hjfE/view",
        size=1_200_000_000,
        source="https://github.com/yuval-alaluf/restyle-encoder#restyle-psp ('FFHQ - ReStyle + pSp')",
        note=_GDRIVE_NOTE,
        expect={"encoder_type": ("BackboneEncoder",)},
    ),
    WeightSpec(
        name="restyle-e4e-ffhq",
        purpose="ReStyle-e4e FFHQ encoder (image -> W+, editable)",
        filename="restyle_e4e_ffhq_encode.pt",
        kind="encoder",
        format="torch",
        license="MIT; decoder is NVIDIA StyleGAN2 (NC)",
        manual=True,
        manual_url="https://drive.google.com/file/d/1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e/view",
        size=1_200_000_000,
        source="https://github.com/yuval-alaluf/restyle-encoder#restyle-e4e ('FFHQ - ReStyle + e4e')",
        note=_GDRIVE_NOTE,
        expect={"encoder_type": ("ProgressiveBackboneEncoder",)},
    ),
    WeightSpec(
        name="e4e-ffhq",
        purpose="e4e FFHQ encoder (image -> W+, editable)",
        filename="e4e_ffhq_encode.pt",
        kind="encoder",
        format="torch",
        license="MIT; decoder is NVIDIA StyleGAN2 (NC)",
        manual=True,
        manual_url="https://drive.google.com/file/d/1cUv_reLE6k3604or78EranS7XzuVMWeO/view",
        size=1_200_000_000,
        source="https://github.com/omertov/encoder4editing#pretrained-models ('FFHQ Inversion')",
        note=_GDRIVE_NOTE,
        expect={"encoder_type": ("Encoder4Editing",)},
    ),
    WeightSpec(
        name="arcface-ir-se50",
        purpose="ArcFace IR-SE50 face identity network (ID loss/metric)",
        filename="model_ir_se50.pth",
        kind="arcface",
        format="torch",
        license="MIT; MS-Celeb-1M data (research)",
        manual=True,
        manual_url="https://drive.google.com/file/d/1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn/view",
        size=175_000_000,
        source="https://github.com/yuval-alaluf/restyle-encoder#auxiliary-models ('IR-SE50 Model'; "
               "also in the pSp and e4e READMEs)",
        note=_GDRIVE_NOTE + " Community mirrors exist on Hugging Face but are not official; whatever file you "
                            "import is checked to be an IR-SE50 state dict and its checksum recorded.",
    ),
    WeightSpec(
        name="lpips-vgg",
        purpose="LPIPS v0.1 linear layers for VGG16 (perceptual loss)",
        filename="lpips-v0.1-vgg.pth",
        kind="lpips",
        format="torch",
        license="BSD-2-Clause",
        urls=("https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/vgg.pth",),
        # Computed from the file in the repository (its only version, commit c33f89e).
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
        size=7289,
        size_exact=True,
        source="https://github.com/richzhang/PerceptualSimilarity/tree/master/lpips/weights/v0.1",
        note="Only the linear calibration layers; LPIPS also needs the ImageNet VGG16 backbone (vgg16-imagenet).",
    ),
    WeightSpec(
        name="vgg16-imagenet",
        purpose="torchvision VGG16 ImageNet backbone (needed by lpips-vgg)",
        filename="vgg16-397923af.pth",
        kind="backbone",
        format="torch",
        license="BSD-3-Clause; ImageNet data",
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        size=553_433_881,
        # torchvision publishes the first 8 hex digits of the sha256 in the file name (hash_prefix).
        sha256_prefix="397923af",
        source="torchvision.models.VGG16_Weights.IMAGENET1K_V1",
        note="Full checksum not published; the sha256 must start with the published prefix 397923af.",
    ),
    WeightSpec(
        name="world",
        purpose="micromotion's own face world (shipped with the package)",
        filename="world.safetensors",
        kind="bundled",
        format="safetensors",
        license="MIT",
        source="src/micromotion/data/world/",
        note="Installed with micromotion; nothing to download.",
        provides="generator",
    ),
    WeightSpec(
        name="world-clip",
        purpose="the face world's CLIP (text anchors offline; shipped with the package)",
        filename="world-clip.safetensors",
        kind="bundled",
        format="safetensors",
        license="MIT",
        source="src/micromotion/data/world/ (python -m micromotion.world.clip_train ... --export F --compact)",
        note="Installed with micromotion; knows the world captions' vocabulary only (docs/world.md).",
        provides="clip",
    ),
    WeightSpec(
        name="world-encoder",
        purpose="ReStyle-pSp encoder into the world generator's W+ (shipped with the package)",
        filename="world-encoder.safetensors",
        kind="bundled",
        format="safetensors",
        license="MIT",
        source="src/micromotion/data/world/ (python -m micromotion.world.encoder_train ... --export F)",
        note="Installed with micromotion; pairs with the 'world' generator.",
        provides="encoder",
    ),
]

REGISTRY: dict[str, WeightSpec] = {s.name: s for s in _BUILTIN}
_REGISTRY_LOCK = threading.Lock()


def register(spec: WeightSpec, *, replace: bool = False) -> WeightSpec:
    """Add `spec` to the registry (e.g. a mirror of your own, or a local test server). Returns it."""
    if not isinstance(spec, WeightSpec):
        raise TypeError(f"register() takes a WeightSpec, got {type(spec).__name__}")
    with _REGISTRY_LOCK:
        if spec.name in REGISTRY and not replace:
            raise WeightsError(f"weight '{spec.name}' is already registered; pass replace=True to override it")
        REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove `name` from the registry (the cache is not touched)."""
    with _REGISTRY_LOCK:
        if REGISTRY.pop(name, None) is None:
            raise WeightsError(f"weight '{name}' is not registered")


def names() -> list[str]:
    return list(REGISTRY)


def get_spec(name: str) -> WeightSpec:
    spec = REGISTRY.get(name)
    if spec is None:
        raise WeightsError(f"unknown model '{name}'; choose one of: {', '.join(REGISTRY)} "
                           f"(see `micromotion weights list`), or give a file path")
    return spec


# ----------------------------------------------------------------------------------------------------------
# Cache layout


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` > `$MICROMOTION_HOME` > `~/.cache/micromotion` (not created)."""
    if cache_dir is None or str(cache_dir) == "":
        cache_dir = os.environ.get("MICROMOTION_HOME") or "~/.cache/micromotion"
    return Path(os.path.expandvars(os.fspath(cache_dir))).expanduser().absolute()


def weights_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "weights"


def _bundled_path(spec: WeightSpec) -> Path:
    return Path(__file__).resolve().parent / "data" / "world" / spec.filename


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


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
# Structural checks: is this file the kind of model the entry says? (used where no checksum is known)


def _looks_like_html(head: bytes) -> bool:
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return s.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        s.startswith(b"<") and (b"<html" in s[:4096] or b"<!doctype html" in s[:4096]))


def _sniff(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


_FORMAT_OK = {
    "nvidia-pkl": ("pickle",),
    "torchscript": ("zip",),
    "torch": ("zip", "pickle"),
    "safetensors": ("safetensors",),
    "any": ("zip", "pickle", "safetensors", "unknown"),
}
_FORMAT_DESC = {
    "nvidia-pkl": "an NVIDIA network pickle",
    "torchscript": "a TorchScript archive",
    "torch": "a torch checkpoint (zip or legacy pickle)",
    "safetensors": "a safetensors file",
    "any": "a model file",
}


def _check_basic(path: Path, spec: WeightSpec) -> None:
    size = path.stat().st_size
    if size == 0:
        raise WeightsError("the file is empty")
    with open(path, "rb") as f:
        head = f.read(4096)
    if _looks_like_html(head):
        raise WeightsError("the file is a web page (HTML), not a model: typically a sign-in, quota or "
                           "'virus scan' page saved instead of the file")
    found = _sniff(head)
    if found not in _FORMAT_OK[spec.format]:
        raise WeightsError(f"the file is not {_FORMAT_DESC[spec.format]} (it starts with {head[:8]!r})")
    if spec.size_exact and spec.size is not None and size != spec.size:
        raise WeightsError(f"the file has {size} bytes, the published file has {spec.size}")


def _tensor_shape(sd: Mapping, key: str, what: str) -> tuple[int, ...]:
    import torch

    t = sd.get(key)
    if not isinstance(t, torch.Tensor):
        raise WeightsError(f"no tensor '{key}'; not {what}")
    return tuple(t.shape)


def _torch_object(path: Path):
    try:
        from .checkpoint import read_torch_file

        return read_torch_file(path)
    except CheckpointError as e:
        raise WeightsError(str(e).removeprefix(f"{path}: ")) from None


def _check_generator(path: Path, spec: WeightSpec) -> None:
    from .checkpoint import read_generator_file

    try:
        G = read_generator_file(path)
    except CheckpointError as e:
        raise WeightsError(str(e).removeprefix(f"{path}: ")) from None
    want = spec.expect.get("resolution")
    if want is not None and G.cfg.resolution != want:
        raise WeightsError(f"the generator is {G.cfg.resolution}x{G.cfg.resolution}, expected {want}x{want}")


def _check_clip(path: Path, spec: WeightSpec) -> None:
    # Inspect the archive without running its TorchScript code.
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.namelist()
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"not a readable TorchScript archive ({e})") from None
    if bad is not None:
        raise WeightsError(f"the archive is corrupted (bad CRC in '{bad}')")
    if not any(n.endswith("/data.pkl") for n in entries) or not any("/code/" in n for n in entries):
        raise WeightsError("a zip file without TorchScript 'data.pkl' and 'code/'; not a CLIP TorchScript model "
                           "such as OpenAI's ViT-B-32.pt")


def _check_encoder(path: Path, spec: WeightSpec) -> None:
    import torch

    what = "a pSp/e4e/ReStyle encoder checkpoint (dict with 'state_dict', 'opts', 'latent_avg')"
    obj = _torch_object(path)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"the checkpoint holds a {type(obj).__name__}; expected {what}")
    missing = [k for k in ("state_dict", "opts", "latent_avg") if k not in obj]
    if missing:
        raise WeightsError(f"no '{missing[0]}' entry; expected {what}")
    sd, opts = obj["state_dict"], obj["opts"]
    if not isinstance(sd, Mapping) or not isinstance(opts, Mapping) or not isinstance(obj["latent_avg"], torch.Tensor):
        raise WeightsError(f"'state_dict', 'opts' or 'latent_avg' has the wrong type; expected {what}")
    for prefix in ("encoder.", "decoder."):
        if not any(isinstance(k, str) and k.startswith(prefix) for k in sd):
            raise WeightsError(f"the state dict has no '{prefix}*' weights; expected {what}")
    allowed = spec.expect.get("encoder_type")
    found = opts.get("encoder_type")
    if allowed and found is not None and found not in allowed:
        raise WeightsError(f"this checkpoint's encoder_type is '{found}', '{spec.name}' is a "
                           f"'{' or '.join(allowed)}' checkpoint; is it another model's file?")


def _check_arcface(path: Path, spec: WeightSpec) -> None:
    what = "an IR-SE50 (TreB1eN InsightFace_Pytorch) state dict"
    sd = _torch_object(path)
    if not isinstance(sd, Mapping):
        raise WeightsError(f"the file holds a {type(sd).__name__}; expected {what}")
    if _tensor_shape(sd, "input_layer.0.weight", what) != (64, 3, 3, 3):
        raise WeightsError(f"'input_layer.0.weight' has the wrong shape; expected {what}")
    if _tensor_shape(sd, "output_layer.3.weight", what) != (512, 512 * 7 * 7):
        raise WeightsError(f"'output_layer.3.weight' is not [512, 25088] (112x112 input); expected {what}")
    n_blocks = len({k.split(".")[1] for k in sd if isinstance(k, str) and k.startswith("body.")})
    if n_blocks != 24:  # IR-50: 3 + 4 + 14 + 3 bottleneck units
        raise WeightsError(f"the body has {n_blocks} units, IR-SE50 has 24; expected {what}")


def _check_lpips(path: Path, spec: WeightSpec) -> None:
    what = "LPIPS VGG linear layers (lin0..lin4)"
    sd = _torch_object(path)
    if not isinstance(sd, Mapping):
        raise WeightsError(f"the file holds a {type(sd).__name__}; expected {what}")
    for i, ch in enumerate((64, 128, 256, 512, 512)):
        if _tensor_shape(sd, f"lin{i}.model.1.weight", what) != (1, ch, 1, 1):
            raise WeightsError(f"'lin{i}.model.1.weight' is not [1, {ch}, 1, 1]; expected {what}")


def _check_backbone(path: Path, spec: WeightSpec) -> None:
    what = "a torchvision VGG16 state dict"
    sd = _torch_object(path)
    if not isinstance(sd, Mapping):
        raise WeightsError(f"the file holds a {type(sd).__name__}; expected {what}")
    if _tensor_shape(sd, "features.0.weight", what) != (64, 3, 3, 3):
        raise WeightsError(f"'features.0.weight' is not [64, 3, 3, 3]; expected {what}")
    if _tensor_shape(sd, "classifier.6.weight", what) != (1000, 4096):
        raise WeightsError(f"'classifier.6.weight' is not [1000, 4096]; expected {what}")


_CHECKS = {
    "generator": _check_generator,
    "clip": _check_clip,
    "encoder": _check_encoder,
    "arcface": _check_arcface,
    "lpips": _check_lpips,
    "backbone": _check_backbone,
    "file": lambda path, spec: None,
}


def _check_structure(path: Path, spec: WeightSpec) -> None:
    """Raise WeightsError(reason) unless `path` is plausibly the model `spec` describes."""
    _check_basic(path, spec)
    _CHECKS[spec.kind](path, spec)


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


def _missing_bundled(spec: WeightSpec, path: Path) -> WeightsError:
    return WeightsError(f"'{spec.name}' ships with micromotion but {path} is missing from this installation; "
                        f"reinstall micromotion, or pass a file path instead of the name")


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


def _stage_name(target: Path) -> Path:
    # keeps the real suffix: format sniffing (.pkl vs .pt) relies on it
    return target.with_name(f".{os.getpid()}-{threading.get_ident()}-{target.name}")


def download(name: str, cache_dir: str | os.PathLike | None = None, *, force: bool = False,
             progress: bool = True, timeout: float = TIMEOUT_S) -> Path:
    """Download, verify and cache `name`; returns the cached path. A verified cached file is kept unless `force`.

    Resumes a previous `.part` file with HTTP Range; tries each URL in order; refuses HTML pages; verifies
    the sha256 (or, for entries without a published checksum, checks the file's structure and records its
    sha256); removes the partial file on a mismatch. Raises WeightsError with a one-line message.
    """
    spec = get_spec(name)
    if spec.kind == "bundled":
        return resolve(name, cache_dir)
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
    try:
        wdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the cache folder {wdir} ({e.strerror}); pass --cache-dir or set "
                           f"MICROMOTION_HOME to a writable folder") from None
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


_download = download  # `resolve` has a parameter named `download`


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


def _discard(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def import_file(name: str, file: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *,
                progress: bool = True) -> Path:
    """Verify `file` as the model `name` and copy it into the cache; returns the cached path.

    With a known sha256 (published, or recorded on first use) the file must match it. Otherwise the file
    must pass a structural check (loads as the expected architecture) and its sha256 is recorded.
    """
    spec = get_spec(name)
    src = Path(file).expanduser()
    if spec.kind == "bundled":
        raise WeightsError(f"'{spec.name}' ships with micromotion and cannot be imported; pass {src} as a file "
                           f"path where a model is asked for instead")
    if not src.is_file():
        raise WeightsError(f"{src}: no such file; give the path of the downloaded {spec.filename}")
    wdir = weights_dir(cache_dir)
    target = wdir / spec.filename
    try:
        wdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the cache folder {wdir} ({e.strerror}); pass --cache-dir or set "
                           f"MICROMOTION_HOME to a writable folder") from None
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
        path = _bundled_path(spec)
        if not path.is_file():
            raise _missing_bundled(spec, path)
        return path
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
    with _locked(wdir, spec.name):
        existed = target.exists()
        part = _part_path(target)
        _discard(target, part, part.with_name(part.name + ".json"))
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
    out = []
    for spec in list(REGISTRY.values()):
        if spec.kind == "bundled":
            path = _bundled_path(spec)
            out.append(WeightStatus(spec, path, path.is_file(), path.is_file(), None, "bundled"))
            continue
        path = wdir / spec.filename
        expected = _expected_sha256(spec, wdir)
        check = "sha256" if spec.sha256 else ("TOFU" if expected else "TOFU (not yet recorded)")
        cached = path.is_file()
        verified = cached and expected is not None and _stamp_ok(spec, wdir, path, expected)
        part = _part_path(path)
        partial = part.stat().st_size if part.is_file() else 0
        out.append(WeightStatus(spec, path, cached, verified, expected, check, partial))
    return out
