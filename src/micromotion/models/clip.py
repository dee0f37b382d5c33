"""CLIP (Radford et al. 2021) image and text encoders for text-guided anchors: an adapter over open_clip models
or, when open_clip (which needs torchvision) is not installed, our pure-PyTorch `clip_native.NativeClip`.

`Clip` wraps any open_clip-style model (`encode_image`, `encode_text`, `logit_scale`) and its tokenizer, so
OpenAI's ViT-B/32 (what StyleCLIP and the paper use) and small custom CLIPs (the face world's) go through the
same code. It adds what the optimization needs:

- `encode_image(images, preprocess)` on generator output (`[N, 3, H, W]` in [-1, 1], any size), with
  gradients. `preprocess="correct"` does what open_clip's own eval transform does to an image: antialiased
  bicubic resize of the shorter side to the model's input size, center crop, CLIP mean/std.
  `preprocess="paper"` is what StyleCLIP's `criteria/clip_loss.py` (and so the paper's code) does: nearest
  upsampling x7 then average pooling by `stylegan_size // 32` to 224, *without* mean/std normalization; here
  computed as the equal separable linear map (no 7168² intermediate).
- `encode_text(list[str])`, unit-length features.
- Loading without network and without running code: OpenAI's `ViT-B-32.pt` is a TorchScript archive, which
  open_clip (`load_openai_model`) opens with `torch.jit.load`, compiling the archive's TorchScript code and
  running its `__setstate__` methods. `read_torchscript_weights` reads only its tensors, through a restricted
  unpickler (like `torch.load(weights_only=True)`, which refuses TorchScript archives).
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, MicromotionError
from ..io.files import check_state_dict, config_from_dict, header_version
# _IGNORED_KEYS: tensors of OpenAI's files that are not weights (hyper-parameters kept as tensors, the causal mask)
from .clip_native import _IGNORED_KEYS, HEAD_WIDTH, NativeClip, NativeClipConfig

log = logging.getLogger(__name__)

__all__ = ["ClipConfig", "Clip", "ClipUnavailableError", "PREPROCESS_MODES", "OPENAI_MEAN", "OPENAI_STD",
           "read_torchscript_weights", "paper_resize_matrix", "load_native_clip"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS_MODES = ("correct", "paper")
FORMAT_NAME = "micromotion-clip"
FORMAT_VERSION = 1



class ClipUnavailableError(MicromotionError, ImportError):
    """open_clip (or the torchvision it imports) is not installed or cannot be imported."""


def _open_clip():
    try:
        import open_clip
    except ImportError as e:
        raise ClipUnavailableError(f"CLIP needs the open_clip_torch package (and torchvision), which could not be "
                                   f"imported ({e}); install it with `pip install open_clip_torch`") from e
    return open_clip


@dataclass
class ClipConfig:
    """An open_clip CLIP: `vision_cfg` / `text_cfg` hold `open_clip.CLIPVisionCfg` / `CLIPTextCfg` fields, as
    in open_clip's model config JSON files. Defaults: OpenAI ViT-B/32 (QuickGELU), open_clip `ViT-B-32-quickgelu`.
    """

    embed_dim: int = 512
    vision_cfg: dict = field(default_factory=lambda: {"image_size": 224, "layers": 12, "width": 768,
                                                      "patch_size": 32, "head_width": 64})
    text_cfg: dict = field(default_factory=lambda: {"context_length": 77, "vocab_size": 49408, "width": 512,
                                                    "heads": 8, "layers": 12})
    quick_gelu: bool = True
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD

    def __post_init__(self):
        self.vision_cfg, self.text_cfg = dict(self.vision_cfg), dict(self.text_cfg)
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if self.text_cfg.get("hf_model_name") or self.text_cfg.get("hf_tokenizer_name"):
            raise ValueError("Hugging Face text towers are not supported by ClipConfig; wrap such a model with "
                             "Clip.from_open_clip(model, tokenizer)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std must be 3 values (std > 0), got {self.mean}, {self.std}")

    @classmethod
    def vit_b_32(cls) -> "ClipConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "ClipConfig":
        """A small CLIP of the same layout for tests: 32² input, one layer per tower, 64 wide (one head each,
        as OpenAI-layout inference assumes 64-wide heads)."""
        return cls(embed_dim=32,
                   vision_cfg={"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 64},
                   text_cfg={"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1})

    @property
    def image_size(self) -> int:
        s = self.vision_cfg.get("image_size", 224)
        return int(s if isinstance(s, int) else s[0])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClipConfig":
        return config_from_dict(cls, d, "CLIP")

    @classmethod
    def from_openai_state_dict(cls, sd: dict, path: str | os.PathLike = "state dict") -> "ClipConfig":
        """Infer the architecture of an OpenAI-layout ViT CLIP from tensor shapes (as openai/CLIP's
        `build_model` does: 64-wide attention heads)."""
        def shape(key: str) -> tuple[int, ...]:
            t = sd.get(key)
            if not isinstance(t, torch.Tensor):
                if key.startswith("visual.") and "visual.layer1.0.conv1.weight" in sd:
                    raise CheckpointError(f"{path}: a ResNet CLIP; only ViT CLIPs can be read from OpenAI-layout "
                                          f"files (wrap others with Clip.from_open_clip)")
                raise CheckpointError(f"{path}: no tensor '{key}'; not an OpenAI-layout CLIP such as ViT-B-32.pt")
            return tuple(t.shape)

        width, _, patch, _ = shape("visual.conv1.weight")
        grid = round((shape("visual.positional_embedding")[0] - 1) ** 0.5)
        v_layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
        t_width = shape("ln_final.weight")[0]
        t_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
        if v_layers == 0 or t_layers == 0:
            raise CheckpointError(f"{path}: no transformer blocks found; not an OpenAI-layout ViT CLIP")
        return cls(embed_dim=shape("text_projection")[1],
                   vision_cfg={"image_size": patch * grid, "layers": v_layers, "width": width, "patch_size": patch,
                               "head_width": 64},
                   text_cfg={"context_length": shape("positional_embedding")[0],
                             "vocab_size": shape("token_embedding.weight")[0], "width": t_width,
                             "heads": max(1, t_width // 64), "layers": t_layers})

    def native_config(self):
        """This architecture as a `NativeClipConfig` (our pure-PyTorch CLIP), or None if it cannot be one."""
        v, t = self.vision_cfg, self.text_cfg
        if not self.quick_gelu or v.get("head_width", 64) != HEAD_WIDTH or t.get("heads", 0) * HEAD_WIDTH != t["width"]:
            return None
        return NativeClipConfig(embed_dim=self.embed_dim, image_size=self.image_size, patch_size=v["patch_size"],
                                vision_width=v["width"], vision_layers=v["layers"],
                                context_length=t.get("context_length", 77), vocab_size=t.get("vocab_size", 49408),
                                text_width=t["width"], text_layers=t["layers"])

    def build(self, seed: int = 0) -> nn.Module:
        """A CLIP of this architecture with random weights drawn from `seed` (the global RNG is left as it was):
        open_clip's `CLIP` when open_clip is installed, else our `NativeClip` (same state-dict layout)."""
        try:
            open_clip = _open_clip()
        except ClipUnavailableError:
            ncfg = self.native_config()
            if ncfg is None:
                raise
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return NativeClip(ncfg).eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.CLIP(self.embed_dim, vision_cfg=open_clip.CLIPVisionCfg(**self.vision_cfg),
                                   text_cfg=open_clip.CLIPTextCfg(**self.text_cfg), quick_gelu=self.quick_gelu)
        return model.eval()

    def tokenizer(self) -> Callable:
        return _default_tokenizer(int(self.text_cfg.get("context_length", 77)))


def _default_tokenizer(context_length: int) -> Callable:
    """CLIP's BPE tokenizer: open_clip's when installed, else ours (identical ids, see tokenizer.py)."""
    try:
        return _open_clip().SimpleTokenizer(context_length=context_length)
    except ClipUnavailableError:
        from ..tokenizer import ClipTokenizer

        return ClipTokenizer(context_length)


def paper_resize_matrix(src: int, dst: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[dst, src] matrix A with A x A^T == AvgPool(k=src/g)(Upsample(scale=dst/g, nearest)(x)), g = gcd(src, dst).

    For a 1024² generator and 224² CLIP this is StyleCLIP's `Upsample(scale_factor=7)` +
    `AvgPool2d(1024 // 32)`, exactly (up to float summation order), at any pair of sizes.
    """
    g = math.gcd(src, dst)
    up, pool = dst // g, src // g
    source = torch.arange(dst * pool, device=device) // up  # source pixel of each upsampled pixel
    a = F.one_hot(source.reshape(dst, pool), src).sum(1).to(dtype)
    return a / pool


class Clip(nn.Module):
    """A CLIP-like model and its tokenizer, frozen, with the preprocessing the optimization needs.

    model: has `encode_image(x) -> [N, D]`, `encode_text(tokens) -> [T, D]` and `logit_scale` (log of the
    logit scale, as in CLIP). tokenizer: `list[str] -> LongTensor [T, context_length]`.
    """

    def __init__(self, model: nn.Module, tokenizer: Callable, *, image_size: int, mean: Sequence[float] = OPENAI_MEAN,
                 std: Sequence[float] = OPENAI_STD, name: str = "clip", config: ClipConfig | None = None):
        super().__init__()
        for attr in ("encode_image", "encode_text"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(f"a CLIP model needs an {attr}() method; {type(model).__name__} has none")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.name = name
        self.config = config
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self._paper_mats: dict = {}

    def train(self, mode: bool = True) -> "Clip":
        return super().train(False)  # frozen: an encoder for losses only

    # ------------------------------------------------------------------------------------------------------
    # Construction

    @classmethod
    def from_open_clip(cls, model: nn.Module, tokenizer: Callable | None = None, *, name: str = "open_clip",
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                       config: ClipConfig | None = None) -> "Clip":
        """Wrap an open_clip model (e.g. from `open_clip.create_model`) and its tokenizer (default: CLIP's BPE
        tokenizer at the model's context length)."""
        visual = getattr(model, "visual", None)
        size = getattr(visual, "image_size", None)
        if size is None:
            raise TypeError(f"cannot tell the input size of {type(model).__name__}: no visual.image_size")
        if not isinstance(size, int):
            if len(set(size)) != 1:
                raise ValueError(f"non-square CLIP input sizes are not supported, got {tuple(size)}")
            size = size[0]
        mean = mean or getattr(visual, "image_mean", None) or OPENAI_MEAN
        std = std or getattr(visual, "image_std", None) or OPENAI_STD
        if tokenizer is None:
            tokenizer = _default_tokenizer(int(getattr(model, "context_length", 77)))
        return cls(model, tokenizer, image_size=size, mean=mean, std=std, name=name, config=config)

    @classmethod
    def from_config(cls, cfg: ClipConfig, seed: int = 0, *, name: str | None = None) -> "Clip":
        """Random weights from `seed` (tests, benchmarks, or the start of training a CLIP)."""
        return cls.from_open_clip(cfg.build(seed), cfg.tokenizer(), name=name or f"random(seed={seed})",
                                  mean=cfg.mean, std=cfg.std, config=cfg)

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], config: ClipConfig | None = None, *, name: str = "clip",
                        path: str | os.PathLike = "state dict") -> "Clip":
        """Build from an OpenAI-layout state dict (OpenAI's files, open_clip's CLIP); the architecture is
        inferred from tensor shapes unless `config` is given. Every tensor must be used and fit."""
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        cfg = config or ClipConfig.from_openai_state_dict(sd, path)
        model = cfg.build()
        own = model.state_dict()
        check_state_dict(own, sd, path, "a complete CLIP of OpenAI's layout",
                         ignored=lambda k: k.rsplit(".", 1)[-1] in _IGNORED_KEYS)
        model.load_state_dict({k: sd[k].to(torch.float32) for k in own})  # OpenAI's files are partly fp16
        return cls.from_open_clip(model, cfg.tokenizer(), name=name, mean=cfg.mean, std=cfg.std, config=cfg)

    @classmethod
    def load(cls, path_or_name: str | os.PathLike = "clip-vit-b-32", device: str | torch.device = "cpu", *,
             download: bool = True, config: ClipConfig | None = None) -> "Clip":
        """Load a CLIP from a file or a weights-registry name (default OpenAI ViT-B/32), without network
        unless the registry must download it, and without running code from the file.

        Files: OpenAI TorchScript archives (`ViT-B-32.pt`), torch state dicts (also open_clip training
        checkpoints with `state_dict`), safetensors state dicts, and our own `Clip.save` files.
        """
        p = Path(path_or_name).expanduser()
        if not p.is_file():
            from ..weights import resolve_model

            p = resolve_model(str(path_or_name), kind="clip", download=download)
        name = p.name if p == Path(path_or_name).expanduser() else str(path_or_name)
        with open(p, "rb") as f:
            head = f.read(16)
        if head.startswith(b"PK\x03\x04") and _is_torchscript(p):
            sd, cfg_meta = read_torchscript_weights(p), None
        elif head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
            from ..io.pickle import read_torch_file

            obj, cfg_meta = read_torch_file(p), None
            if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
                obj = obj["state_dict"]
            if not isinstance(obj, dict):
                raise CheckpointError(f"{p}: holds a {type(obj).__name__}, expected a CLIP state dict")
            sd = obj
        else:
            sd, cfg_meta = _read_safetensors(p)
        if config is None and cfg_meta is not None:
            config = cfg_meta
        clip = cls.from_state_dict(sd, config, name=name, path=p)
        log.info("loaded CLIP %s from %s (%d px input, %s)", name, p, clip.image_size,
                 "config from file" if cfg_meta else "architecture from tensor shapes")
        return clip.to(device)

    def save(self, path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
             vocab_ids: Sequence[int] | torch.Tensor | None = None) -> Path:
        """Write the weights and config as .safetensors, atomically. Needs a `config`.

        dtype: storage type of floating tensors (float16 halves the file; `load` computes in float32).
        vocab_ids: keep only these rows of the token embedding (a compact file for a model trained on a known
        vocabulary, such as the world CLIP); `load` gives every other token a zero embedding.
        """
        if self.config is None:
            raise ValueError("this CLIP has no ClipConfig (it was wrapped with from_open_clip); pass config= "
                             "when wrapping it to be able to save it")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        path = Path(path)
        meta = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION), "config": json.dumps(self.config.to_dict()),
                "name": self.name}
        from ..io.files import save_safetensors

        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in self.model.state_dict().items()}
        if vocab_ids is not None:
            emb = sd.pop("token_embedding.weight")
            ids = torch.unique(torch.as_tensor(vocab_ids, dtype=torch.long))
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= emb.shape[0]):
                raise ValueError(f"vocab_ids must lie in [0, {emb.shape[0]})")
            sd[COMPACT_IDS] = ids.to(torch.int32)
            sd[COMPACT_ROWS] = emb[ids].contiguous()
            sd[COMPACT_SIZE] = torch.tensor([emb.shape[0]], dtype=torch.int64)
        return save_safetensors(sd, path, meta)

    # ------------------------------------------------------------------------------------------------------
    # Encoders

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp(model.logit_scale), a float32 scalar (100 for OpenAI's CLIPs)."""
        s = getattr(self.model, "logit_scale", None)
        if s is None:
            return torch.tensor(100.0, device=self.device)
        return torch.as_tensor(s, dtype=torch.float32, device=self.device).exp().reshape(())

    def preprocess(self, images: torch.Tensor, mode: str = "correct") -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> the model's input [N, 3, S, S] (differentiable)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [N, 3, H, W], got {list(images.shape)}")
        s = self.image_size
        if mode == "correct":
            return ((self._resize_center_crop(images, s) + 1) / 2 - self.mean) / self.std
        if mode == "paper":
            h, w = images.shape[-2:]
            if h != w:
                raise ValueError(f"preprocess='paper' needs square images (StyleCLIP's), got {h}x{w}")
            key = (h, s, images.device)
            a = self._paper_mats.get(key)
            if a is None:
                a = self._paper_mats[key] = paper_resize_matrix(h, s, device=images.device)
            x = _at_least_fp32(images)
            a = a.to(x.dtype)
            return torch.einsum("ih,nchw,jw->ncij", a, x, a)
        raise ValueError(f"unknown CLIP preprocessing {mode!r}; choose one of: {', '.join(PREPROCESS_MODES)}")

    @staticmethod
    def _resize_center_crop(x: torch.Tensor, s: int) -> torch.Tensor:
        # torchvision's Resize(s) (shorter side to s, longer side truncated) + CenterCrop(s), as open_clip's
        # eval transform; antialiased bicubic is PIL's filter (a = -0.5), which that transform applies to images.
        h, w = x.shape[-2:]
        if min(h, w) != s:
            if h <= w:
                size = (s, int(s * w / h))
            else:
                size = (int(s * h / w), s)
            x = F.interpolate(_at_least_fp32(x), size=size, mode="bicubic", align_corners=False, antialias=True)
            h, w = size
        if (h, w) != (s, s):
            top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
            x = x[..., top:top + s, left:left + s]
        return _at_least_fp32(x)

    def encode_image(self, images: torch.Tensor, preprocess: str = "correct") -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] (any size) -> unit-length image features [N, D] (float32)."""
        feats = self.model.encode_image(self.preprocess(images, preprocess))
        return F.normalize(_at_least_fp32(feats), dim=-1)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or len(texts) == 0:
            raise ValueError("texts must be a non-empty list of strings")
        ctx = getattr(self.tokenizer, "context_length", None)
        encode = getattr(self.tokenizer, "encode", None)
        if ctx and callable(encode):
            long = [(t, n) for t in texts if (n := len(encode(t)) + 2) > ctx]
            if long:  # one line, the text cut short: a long template must not flood the log
                t, n = long[0]
                log.warning("%d of %d texts are longer than CLIP's %d tokens (e.g. %r, %d tokens); only the first %d "
                            "count", len(long), len(texts), ctx, t[:60] + ("…" if len(t) > 60 else ""), n, ctx)
        return torch.as_tensor(self.tokenizer(list(texts))).to(self.device)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """list of T strings -> unit-length text features [T, D] (float32)."""
        return F.normalize(_at_least_fp32(self.model.encode_text(self.tokenize(texts))), dim=-1)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    # fp16/bf16 (autocast) -> fp32; fp32 and fp64 kept
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# ----------------------------------------------------------------------------------------------------------
# Reading files


def _read_safetensors(path: Path) -> tuple[dict, ClipConfig | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a TorchScript, torch or safetensors CLIP file "
                              f"({str(e).splitlines()[0][:160]})") from None
    cfg = None
    if COMPACT_IDS in sd or COMPACT_ROWS in sd:
        sd = _expand_compact_vocab(sd, path)
    if meta.get("format") == FORMAT_NAME:
        if header_version(meta) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: CLIP format version {header_version(meta)} is newer than this "
                                  f"micromotion reads ({FORMAT_VERSION}); upgrade micromotion")
        try:
            cfg = ClipConfig.from_dict(json.loads(meta["config"]))
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: bad CLIP config in metadata ({e})") from None
    return sd, cfg


#: Compact files (`Clip.save(..., vocab_ids=...)`) keep only the token-embedding rows of a known vocabulary.
COMPACT_IDS, COMPACT_ROWS, COMPACT_SIZE = "token_embedding.ids", "token_embedding.rows", "token_embedding.vocab_size"


def _expand_compact_vocab(sd: dict, path: Path) -> dict:
    """Rebuild `token_embedding.weight` from a compact file: the kept rows, zeros for every other token (a
    token the model never saw in training carries no meaning, and zero adds nothing to the text feature)."""
    try:
        ids, rows, size = sd.pop(COMPACT_IDS), sd.pop(COMPACT_ROWS), sd.pop(COMPACT_SIZE)
    except KeyError as e:
        raise CheckpointError(f"{path}: compact CLIP file lacks '{e.args[0]}'") from None
    n = int(size.reshape(-1)[0]) if size.numel() else -1
    if (ids.ndim != 1 or rows.ndim != 2 or ids.shape[0] != rows.shape[0] or n < 1 or ids.is_floating_point()
            or (ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n))):
        raise CheckpointError(f"{path}: inconsistent compact token embedding (ids {list(ids.shape)}, rows "
                              f"{list(rows.shape)}, vocabulary {n})")
    weight = torch.zeros(n, rows.shape[1], dtype=torch.float32)
    weight[ids.long()] = rows.float()
    sd["token_embedding.weight"] = weight
    return sd


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Inert record of a TorchScript object (a module): its attributes, as pickled."""

    def __setstate__(self, state):
        self.state = state


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _identity(x, *args):
    return x


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *args):
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


class _TorchScriptUnpickler(pickle.Unpickler):
    """Tensors and plain containers only; `__torch__.*` objects become inert `_ScriptObject`s."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.path = archive, prefix, path
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module, name):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): lambda data, requires_grad=False, hooks=None: data,
            ("collections", "OrderedDict"): dict,
            ("torch.jit._pickle", "restore_type_tag"): _identity,
            ("torch.jit._pickle", "build_intlist"): _identity,
            ("torch.jit._pickle", "build_doublelist"): _identity,
            ("torch.jit._pickle", "build_boollist"): _identity,
            ("torch.jit._pickle", "build_tensorlist"): _identity,
            ("torch.jit._pickle", "build_tensor_from_id"): self._constant_unsupported,
        }
        fn = allowed.get((module, name))
        if fn is None:
            raise CheckpointError(f"{self.path}: refusing to load: the TorchScript archive asks for "
                                  f"'{module}.{name}', which is not tensor data")
        return fn

    def _constant_unsupported(self, *args):
        raise CheckpointError(f"{self.path}: TorchScript tensor constants in module attributes are not supported")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"{self.path}: unexpected persistent id {str(pid)[:80]} in the TorchScript archive")
        _, stype, key, _location, numel = pid
        t = self.storages.get(key)
        if t is None:
            try:
                raw = self.archive.read(f"{self.prefix}/data/{key}")
            except KeyError:
                raise CheckpointError(f"{self.path}: storage '{key}' is missing from the archive") from None
            t = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            t = t.view(stype.dtype) if stype.dtype != torch.bool else t.to(torch.bool)
            if t.numel() != numel:
                raise CheckpointError(f"{self.path}: storage '{key}' holds {t.numel()} elements, expected {numel}")
            self.storages[key] = t
        return t


def read_torchscript_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript module archive, by dotted name (like `state_dict()`), read
    without compiling or running any of the archive's code."""
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable TorchScript archive ({e})") from None
    with z:
        pkls = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise CheckpointError(f"{path}: no TorchScript 'data.pkl' at the top of the archive; an archive from "
                                  f"a TorchScript format older than torch 1.4 is not supported")
        prefix = pkls[0].split("/")[0]
        try:
            root = _TorchScriptUnpickler(z.read(pkls[0]), z, prefix, path).load()
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                RuntimeError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{path}: corrupt TorchScript archive ({type(e).__name__}: {str(e)[:160]})") from None
    if not isinstance(root, _ScriptObject):
        raise CheckpointError(f"{path}: the archive does not hold a TorchScript module")
    out: dict[str, torch.Tensor] = {}

    def walk(obj: _ScriptObject, prefix: str) -> None:
        state = getattr(obj, "state", None)
        if not isinstance(state, dict):
            return
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                out[prefix + k] = v
            elif isinstance(v, _ScriptObject):
                walk(v, prefix + k + ".")

    walk(root, "")
    if not out:
        raise CheckpointError(f"{path}: the TorchScript archive holds no tensors")
    return out


def load_native_clip(sd: dict[str, torch.Tensor], *, context_length: int | None = None,
                     path: str | os.PathLike = "state dict"):
    """An OpenAI-layout state dict -> `micromotion.models.clip.Clip` over a `NativeClip` and CLIP's tokenizer
    (no open_clip needed)."""
    from ..tokenizer import ClipTokenizer

    model = NativeClip.from_state_dict(sd, path=path)
    return Clip.from_open_clip(model, ClipTokenizer(context_length or model.context_length), name="native_clip")
