"""The weights registry, data only: name -> `WeightSpec` (URLs, sha256, license, size, format), in the
manner of open_clip's `pretrained.py`. `register` adds a mirror of your own or a test server."""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WeightsError

KINDS = ("generator", "clip", "encoder", "arcface", "lpips", "backbone", "file", "bundled")
FORMATS = ("nvidia-pkl", "torchscript", "torch", "safetensors", "any")

# ----------------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class PackageSource:
    """Model files shipped inside a PyPI package, converted once into our format (the entry's `filename`).

    `files` maps each file name (in `data_dir` of the installed distribution or the wheel) to its sha256;
    `converter` is `module:function`, called as `function(files: dict[name, Path], out: Path)` to write the
    converted file (a dotted name, like a packaging entry point, so this module stays data only).
    """

    distribution: str  # the name pip knows, e.g. "random-face"
    version: str  # the one release whose files are known
    wheel: str  # its wheel's file name
    data_dir: str  # folder of the files inside the wheel / the installed distribution
    files: Mapping[str, str]  # file name -> sha256
    sizes: Mapping[str, int]  # file name -> bytes
    converter: str  # "module:function" (see above)
    how_to_get: str  # one sentence for messages

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


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
    package: PackageSource | None = None  # files shipped in a PyPI package, converted into `filename`
    bundled_dir: str = "world"  # bundled files: their folder under micromotion/data/

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
        if self.kind != "bundled" and not self.manual and not self.urls and self.package is None:
            raise ValueError(f"weight {self.name!r}: give at least one URL or mark it manual=True")
        if self.manual and not self.manual_url:
            raise ValueError(f"weight {self.name!r}: a manual entry needs manual_url (where a person gets the file)")

    @property
    def tofu(self) -> bool:
        """True when no checksum is published and the first file seen is trusted (bundled files excepted)."""
        return self.sha256 is None and self.kind != "bundled"

    @property
    def downloadable(self) -> bool:
        """Fetched over HTTP from `urls` (package entries are fetched with pip instead: see `package`)."""
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
    # The FFHQ-1024 generator that ships on PyPI: MobileStyleGAN (Belousov 2021) as OpenVINO IR inside the
    # random-face wheel; its four files are checked by sha256 and converted once into our safetensors format.
    # (The values are those of micromotion.models.mobilestylegan_convert, which tests keep in sync.)
    WeightSpec(
        name="mobilestylegan-ffhq-1024",
        purpose="MobileStyleGAN FFHQ 1024x1024 generator (inside random-face on PyPI)",
        filename="mobilestylegan-ffhq-1024.safetensors",
        kind="generator",
        format="safetensors",
        license="Apache-2.0 package; model derived from NVIDIA StyleGAN2 FFHQ, NVIDIA Source Code License-NC, "
                "non-commercial",
        size=40_443_692,
        source="https://pypi.org/project/random-face/2021.7.21.1/ (random_face/data/*Network.{xml,bin}); "
               "architecture: https://github.com/bes-dev/MobileStyleGAN.pytorch (Apache-2.0)",
        note="Converted once from the installed random-face, else `weights download` fetches its wheel with pip "
             "(--no-deps), else `weights import NAME WHEEL_OR_FOLDER`. Its W space is StyleGAN2 FFHQ's.",
        expect={"resolution": 1024},
        package=PackageSource(
            distribution="random-face",
            version="2021.7.21.1",
            wheel="random_face-2021.7.21.1-py3-none-any.whl",
            data_dir="random_face/data",
            files={
                "MappingNetwork.xml": "73e2096cad6e696e4af47df2477e048ab4c42c0e0dec83c7c66604822689e55b",
                "MappingNetwork.bin": "212dd716bdb556e18db603ea97300d4fa3c872b878c726b2402fea80820e7305",
                "SynthesisNetwork.xml": "7918fce515243954d3e06628cb39a23902d6b1d5d02932cc0c2faee7a2aeeedd",
                "SynthesisNetwork.bin": "c7da15fa22d508c82e1c30dd6b4cdf67fe3ccdddaf85b310ee764dbf0c289645",
            },
            sizes={"MappingNetwork.xml": 59865, "MappingNetwork.bin": 8405040,
                   "SynthesisNetwork.xml": 425183, "SynthesisNetwork.bin": 32025440},
            converter="micromotion.models.mobilestylegan_convert:convert_files",
            how_to_get="`pip install --no-deps random-face==2021.7.21.1` or "
                       "`micromotion weights download mobilestylegan-ffhq-1024`",
        ),
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
    WeightSpec(
        name="mobilestylegan-ffhq-1024-encoder",
        purpose="ReStyle-pSp encoder into mobilestylegan-ffhq-1024's W+ (shipped with the package)",
        filename="face-encoder.safetensors",
        kind="bundled",
        format="safetensors",
        license="MIT (trained by micromotion on the generator's samples; the generator's own licence applies to "
                "what it renders)",
        source="src/micromotion/data/mobilestylegan/ (micromotion encoder train --model mobilestylegan-ffhq-1024 "
               "... --export F; docs/results.md)",
        note="Installed with micromotion; pairs with 'mobilestylegan-ffhq-1024' (fingerprint checked).",
        provides="encoder",
        bundled_dir="mobilestylegan",
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
