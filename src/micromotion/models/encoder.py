"""ReStyle encoders (Alaluf et al. 2021): iterative refinement of W+ codes with an IR-SE50 backbone.

Follows yuval-alaluf/restyle-encoder: `models/encoders/restyle_psp_encoders.py` (`BackboneEncoder`, ReStyle-pSp),
`models/encoders/restyle_e4e_encoders.py` (`ProgressiveBackboneEncoder`, ReStyle-e4e), `map2style.py`
(`GradualStyleBlock`), `models/psp.py` / `models/e4e.py` `forward` and `utils/inference_utils.py`
(`get_average_image`, `run_on_batch`). Both encoders share one state-dict layout -- `input_layer.*` (6 input
channels: the image and the current reconstruction), TreB1eN IR-SE units `body.{i}.*` (as in
`micromotion.models.arcface`), one `styles.{i}` head per W+ layer (four stride-2 convs, 16² -> 1², and an
equalized linear layer); they differ only in `forward`, so the variant comes from the checkpoint's
`opts['encoder_type']`.

Refinement: w_0 = latent_avg, y_0 = the average image; w_{t+1} = w_t + E(concat(x, y_t)), y_{t+1} = G(w_{t+1}),
with x and y_t at 256² in [-1, 1] and G's constant noise (the reference's `randomize_noise=False`).

Our own encoders (the world encoder, `micromotion.world.encoder_train`) are written by `save_encoder` as
safetensors without their decoder and read back with `load_encoder(path, G)`, paired with the generator.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError
from ..io.files import (check_state_dict, config_from_dict, fingerprint, fingerprint_matches, read_safetensors,
                        save_safetensors)
from .arcface import ir_body, ir_units, numbered, tensor_shapes
from .stylegan2 import FullyConnected, Generator

log = logging.getLogger(__name__)

__all__ = ["EncoderConfig", "BackboneEncoder", "ProgressiveBackboneEncoder", "ReStyle", "Refinement",
           "ENCODER_TYPES", "build_encoder", "infer_config", "load_restyle", "save_encoder", "load_encoder",
           "generator_fingerprint"]

#: ReStyle's `opts['encoder_type']` -> our variant name. The ResNet34 encoders are not supported.
ENCODER_TYPES = {"BackboneEncoder": "psp", "ProgressiveBackboneEncoder": "e4e"}


@dataclass
class EncoderConfig:
    """Architecture of a ReStyle IR-SE encoder. Defaults: the FFHQ encoders (IR-SE50, 18 W+ layers of 1024²)."""

    variant: str = "psp"  # "psp" (BackboneEncoder: a delta per layer) or "e4e" (ProgressiveBackboneEncoder)
    n_styles: int = 18  # W+ layers of the decoder: 2 * log2(resolution) - 2
    w_dim: int = 512
    input_nc: int = 6  # image + current reconstruction
    input_size: int = 256
    units: tuple[int, ...] = (3, 4, 14, 3)  # IR-SE50
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    se: bool = True
    se_reduction: int = 16
    head_width: int = 0  # channels of the map2style heads' convs; 0: w_dim (pSp's)

    def __post_init__(self):
        self.units, self.widths = tuple(int(u) for u in self.units), tuple(int(w) for w in self.widths)
        if self.variant not in ENCODER_TYPES.values():
            raise ValueError(f"unknown encoder variant {self.variant!r}; choose one of: psp, e4e")
        if len(self.units) != len(self.widths) or not self.units or min(self.units) < 1:
            raise ValueError(f"units {self.units} and widths {self.widths} must be equally long and positive")
        if self.input_size % 2 ** len(self.units) or self.feature_size & (self.feature_size - 1):
            raise ValueError(f"input_size {self.input_size} / {2 ** len(self.units)} must be a power of two")
        if self.head_width < 0:
            raise ValueError(f"head_width must be >= 0 (0: w_dim), got {self.head_width}")

    @classmethod
    def tiny(cls, variant: str = "psp", n_styles: int = 6, w_dim: int = 16) -> "EncoderConfig":
        """A small network of the same layout (32² input, 2² features), for tests; pairs with
        `GeneratorConfig.tiny(16)` (6 W+ layers of 16 values)."""
        return cls(variant=variant, n_styles=n_styles, w_dim=w_dim, input_size=32, units=(1, 2, 1, 1),
                   widths=(8, 12, 16, 24), stem_width=8, se_reduction=4)

    @property
    def feature_size(self) -> int:
        """Side of the backbone's last feature map (16 for 256² inputs); the heads pool it to 1²."""
        return self.input_size // 2 ** len(self.units)

    @property
    def encoder_type(self) -> str:
        return {v: k for k, v in ENCODER_TYPES.items()}[self.variant]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return config_from_dict(cls, d, "encoder")


class GradualStyleBlock(nn.Module):
    """pSp's map2style head: log2(s) stride-2 3x3 convs with LeakyReLU(0.01), s² -> 1², then an equalized
    linear layer: [N, C, s, s] -> [N, w_dim]. The convs are `width` wide (pSp: w_dim); a narrower head keeps an
    encoder of 23 layers small (each pSp head from a 16² map is 9.4M parameters)."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int, width: int = 0):
        super().__init__()
        width = width or out_ch
        layers: list[nn.Module] = []
        for i in range(max(1, spatial.bit_length() - 1)):
            layers += [nn.Conv2d(in_ch if i == 0 else width, width, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = FullyConnected(width, out_ch)  # rosinality EqualLinear(lr_mul=1), no activation
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.width))


class BackboneEncoder(nn.Module):
    """ReStyle-pSp encoder: inputs [N, input_nc, S, S] -> W+ deltas [N, n_styles, w_dim], one head per layer.

    Always in eval mode (BatchNorm on its running statistics, so batch items stay independent).
    """

    def __init__(self, cfg: EncoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or EncoderConfig()
        self.input_layer = nn.Sequential(nn.Conv2d(cfg.input_nc, cfg.stem_width, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(cfg.stem_width), nn.PReLU(cfg.stem_width))
        self.body = ir_units(cfg)
        in_ch = cfg.widths[-1]
        self.styles = nn.ModuleList([GradualStyleBlock(in_ch, cfg.w_dim, cfg.feature_size, cfg.head_width)
                                     for _ in range(cfg.n_styles)])
        self.eval()

    def train(self, mode: bool = True) -> "BackboneEncoder":
        return super().train(False)  # inference only: train-mode BatchNorm would couple the batch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, input_nc, S, S] -> backbone features [N, C, S/16, S/16]."""
        s, c = self.cfg.input_size, self.cfg.input_nc
        if x.ndim != 4 or x.shape[1:] != (c, s, s):
            raise ValueError(f"encoder input must have shape [N, {c}, {s}, {s}], got {list(x.shape)}")
        return self.body(self.input_layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, input_nc, S, S] -> [N, n_styles, w_dim], each layer's code from its own head."""
        f = self.features(x)
        return torch.stack([head(f) for head in self.styles], dim=1)


class ProgressiveBackboneEncoder(BackboneEncoder):
    """ReStyle-e4e encoder: head 0 gives a w shared by all layers, heads 1.. add per-layer deltas to it
    (e4e's progressive scheme at its final, `Inference`, stage)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        w0 = self.styles[0](f)
        deltas = [torch.zeros_like(w0)] + [head(f) for head in self.styles[1:]]
        return w0.unsqueeze(1) + torch.stack(deltas, dim=1)


def build_encoder(cfg: EncoderConfig) -> BackboneEncoder:
    return (ProgressiveBackboneEncoder if cfg.variant == "e4e" else BackboneEncoder)(cfg)


def _describe(cfg: EncoderConfig) -> str:
    return f"ReStyle-{cfg.variant} {cfg.encoder_type} (IR{'-SE' if cfg.se else ''}, {sum(cfg.units)} units)"


def infer_config(sd: dict, variant: str = "psp", path: str | os.PathLike = "state dict") -> EncoderConfig:
    """The `EncoderConfig` of a ReStyle IR-SE encoder state dict (keys without the `encoder.` prefix)."""
    shape = tensor_shapes(sd, lambda key: f"{path}: missing key 'encoder.{key}'; not a ReStyle IR-SE encoder "
                                          f"(BackboneEncoder / ProgressiveBackboneEncoder)")

    stem = shape("input_layer.0.weight")
    if len(stem) != 4 or stem[2:] != (3, 3):
        raise CheckpointError(f"{path}: 'encoder.input_layer.0.weight' has shape {list(stem)}, expected [C, 6, 3, 3]")
    if stem[1] != 6:
        raise CheckpointError(f"{path}: the encoder takes {stem[1]} input channels, not 6 (image + reconstruction); "
                              f"not a ReStyle encoder")

    def indices(prefix: str) -> list[int]:
        idx = numbered(sd, prefix)
        if not idx:
            raise CheckpointError(f"{path}: the 'encoder.{prefix}.*' modules are missing or not numbered 0..n-1; "
                                  f"not a ReStyle IR-SE encoder")
        return idx

    body = ir_body(sd, shape, indices("body"))
    n_styles = len(indices("styles"))
    w_dim, width = shape("styles.0.linear.weight")[:2]
    n_convs = len({k.split(".")[3] for k in sd if isinstance(k, str) and k.startswith("styles.0.convs.")})
    # the heads pool the backbone's s x s map to 1x1 with log2(s) stride-2 convs
    input_size = 2 ** max(1, n_convs) * 2 ** len(body["units"])
    return EncoderConfig(variant=variant, n_styles=n_styles, w_dim=w_dim, input_nc=stem[1], input_size=input_size,
                         stem_width=stem[0], head_width=0 if width == w_dim else width, **body)


def encoder_from_state_dict(sd: dict[str, torch.Tensor], variant: str = "psp",
                            path: str | os.PathLike = "state dict") -> BackboneEncoder:
    """Build and fill the encoder that `sd` describes; every tensor must be used and match in shape
    (BatchNorm's `num_batches_tracked` counters, unused in eval mode, may be absent)."""
    cfg = infer_config(sd, variant, path)
    with torch.device("meta"):  # no random initialization of ~180M parameters that are overwritten anyway
        net = build_encoder(cfg)
    net = net.to_empty(device="cpu")
    own = net.state_dict()
    check_state_dict(own, sd, path, f"a {_describe(cfg)} state dict", prefix="encoder.",
                     optional=lambda k: k.endswith("num_batches_tracked"))
    for k in own:
        if k.endswith("num_batches_tracked"):
            own[k].zero_()
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=False)
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise CheckpointError(f"{path}: the encoder weights contain NaN or inf")
    return net.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------
# Encoder + decoder: iterative refinement


@dataclass
class Refinement:
    """Result of `ReStyle.invert`: the final ws `[N, num_ws, w_dim]` and reconstruction `[N, 3, R, R]`
    (raw generator output, at the decoder's resolution), and the ws after each iteration `[n_iters, N, ...]`."""

    ws: torch.Tensor
    images: torch.Tensor
    steps: torch.Tensor


class ReStyle(nn.Module):
    """A ReStyle encoder with its decoder: images -> W+ codes of that decoder by iterative refinement.

    encoder: `BackboneEncoder` / `ProgressiveBackboneEncoder`; G: our `Generator` (the checkpoint's
    `decoder.*`); latent_avg: `[num_ws, w_dim]`, the first estimate (the checkpoint's `latent_avg`).
    """

    def __init__(self, encoder: BackboneEncoder, G: Generator, latent_avg: torch.Tensor, opts: dict | None = None):
        super().__init__()
        if encoder.cfg.n_styles != G.num_ws or encoder.cfg.w_dim != G.w_dim:
            raise ValueError(f"the encoder gives {encoder.cfg.n_styles} x {encoder.cfg.w_dim} codes, the generator "
                             f"takes {G.num_ws} x {G.w_dim}")
        self.encoder, self.G = encoder, G
        avg = latent_avg.detach().float().reshape(-1, G.w_dim)  # [num_ws, w_dim], or [1, w_dim] for all layers
        self.register_buffer("latent_avg", avg.expand(G.num_ws, -1).clone())
        self.opts = dict(opts or {})
        self.eval().requires_grad_(False)

    @property
    def variant(self) -> str:
        return self.encoder.cfg.variant

    @property
    def input_size(self) -> int:
        return self.encoder.cfg.input_size

    def _pool(self, images: torch.Tensor) -> torch.Tensor:
        # psp.py `face_pool`: AdaptiveAvgPool2d((256, 256)) on the decoder's output
        s = self.input_size
        return images if images.shape[-1] == s else F.adaptive_avg_pool2d(images, (s, s))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images `[N, 3, H, W]` in [-1, 1] -> `[N, 3, 256, 256]`: ReStyle's `transform_inference` resizes with
        PIL bilinear (antialiased) before normalizing to [-1, 1]; this is its tensor equivalent."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [N, 3, H, W], got {list(images.shape)}")
        s = self.input_size
        x = images.to(self.latent_avg.device, torch.float32)
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x

    @torch.no_grad()
    def average_image(self) -> torch.Tensor:
        """`get_average_image`: G(latent_avg) pooled to 256², `[1, 3, 256, 256]`."""
        return self._pool(self.G.synthesis(self.latent_avg.unsqueeze(0), noise_mode="const"))

    @torch.no_grad()
    def invert(self, images: torch.Tensor, n_iters: int = 5) -> Refinement:
        """`run_on_batch`: images `[N, 3, H, W]` in [-1, 1] (aligned faces) -> `Refinement` after `n_iters`
        refinement steps from the average image."""
        if n_iters < 1:
            raise ValueError(f"n_iters must be at least 1, got {n_iters}")
        x = self.prepare(images)
        n = x.shape[0]
        latent = self.latent_avg.unsqueeze(0).expand(n, -1, -1)
        y = self.average_image().expand(n, -1, -1, -1)
        steps, full = [], None
        for _ in range(n_iters):
            latent = latent + self.encoder(torch.cat([x, y], dim=1))
            full = self.G.synthesis(latent, noise_mode="const")
            y = self._pool(full)
            steps.append(latent)
        return Refinement(ws=latent, images=full, steps=torch.stack(steps))

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: str | os.PathLike = "checkpoint") -> "ReStyle":
        """An official-layout ReStyle checkpoint dict (`state_dict` with `encoder.*` and `decoder.*`,
        `latent_avg`, `opts` with `encoder_type`) -> `ReStyle` on the CPU."""
        from .stylegan2_convert import _build, from_rosinality

        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
            raise CheckpointError(f"{path}: no 'state_dict' entry; not a ReStyle checkpoint such as "
                                  f"restyle_psp_ffhq_encode.pt or restyle_e4e_ffhq_encode.pt")
        opts = ckpt.get("opts")
        opts = vars(opts) if hasattr(opts, "__dict__") and not isinstance(opts, dict) else opts
        if not isinstance(opts, dict) or "encoder_type" not in opts:
            raise CheckpointError(f"{path}: no 'opts' with an 'encoder_type'; not a ReStyle checkpoint")
        etype = opts["encoder_type"]
        if etype not in ENCODER_TYPES:
            raise CheckpointError(f"{path}: encoder_type {etype!r} is not supported; choose a checkpoint with one of: "
                                  f"{', '.join(f'{k} (ReStyle-{v})' for k, v in ENCODER_TYPES.items())}")
        sd = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
        enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
        dec = {k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")}
        other = [k for k in sd if not k.startswith(("encoder.", "decoder."))]
        if other:
            raise CheckpointError(f"{path}: unexpected key '{other[0]}' in state_dict ({len(other)} unexpected); a "
                                  f"ReStyle checkpoint holds only encoder.* and decoder.*")
        if not enc:
            raise CheckpointError(f"{path}: missing key 'encoder.input_layer.0.weight' (no encoder.* tensors); not "
                                  f"a ReStyle checkpoint")
        if not dec:
            raise CheckpointError(f"{path}: missing key 'decoder.style.1.weight' (no decoder.* tensors); not a "
                                  f"ReStyle checkpoint")
        latent_avg = ckpt.get("latent_avg")
        if not isinstance(latent_avg, torch.Tensor):
            raise CheckpointError(f"{path}: no 'latent_avg' tensor, where ReStyle starts its refinement")
        encoder = encoder_from_state_dict(enc, ENCODER_TYPES[etype], path)
        gcfg, gsd = from_rosinality(dec, f"{path} (decoder.*)", latent_avg)
        G = _build(gcfg, gsd, path, "checkpoint latent_avg")
        if "output_size" in opts and int(opts["output_size"]) != G.resolution:
            raise CheckpointError(f"{path}: opts output_size {opts['output_size']} but the decoder is "
                                  f"{G.resolution}x{G.resolution}")
        if encoder.cfg.n_styles != G.num_ws or encoder.cfg.w_dim != G.w_dim:
            raise CheckpointError(f"{path}: the encoder has {encoder.cfg.n_styles} heads of {encoder.cfg.w_dim}, the "
                                  f"decoder takes {G.num_ws} x {G.w_dim} codes")
        if latent_avg.numel() not in (G.w_dim, G.w_dim * G.num_ws):
            raise CheckpointError(f"{path}: 'latent_avg' has shape {list(latent_avg.shape)}, expected "
                                  f"[{G.num_ws}, {G.w_dim}] or [{G.w_dim}]")
        plain = {k: v for k, v in opts.items() if isinstance(v, (str, int, float, bool, type(None)))}
        return cls(encoder, G, latent_avg, plain)


def load_restyle(path_or_name: str | os.PathLike = "restyle-psp-ffhq", device: str | torch.device = "cpu",
                 download: bool = True, G: Generator | None = None) -> ReStyle:
    """Load an official ReStyle checkpoint (`restyle_psp_ffhq_encode.pt`, `restyle_e4e_ffhq_encode.pt`) from a
    file or registry name (`restyle-psp-ffhq`, `restyle-e4e-ffhq`), or one of our `.safetensors` encoder files
    (`save_encoder`; they hold no decoder, so `G` must be given: see `load_encoder`).

    Read with `torch.load(weights_only=True)`; no pickled code runs. Returns an eval-mode `ReStyle` on `device`.
    """
    from ..io.pickle import read_torch_file

    p = Path(path_or_name).expanduser()
    if p.is_file() and p.suffix == ".safetensors":
        if G is None:
            raise CheckpointError(f"{p}: a micromotion encoder file holds no decoder; load it with "
                                  f"load_encoder(path, G) and the generator it was trained for")
        return load_encoder(p, G, device)
    if not p.is_file():
        from ..weights import resolve_model

        p = resolve_model(str(path_or_name), kind="encoder", download=download)
    net = ReStyle.from_checkpoint(read_torch_file(p), p)
    log.info("loaded %s with a %d² decoder from %s", _describe(net.encoder.cfg), net.G.resolution, p)
    return net.to(device)


# ----------------------------------------------------------------------------------------------------------
# Our encoder files: safetensors, the decoder kept apart


ENCODER_FORMAT = "micromotion-restyle-encoder"
ENCODER_FORMAT_VERSION = 1


def generator_fingerprint(G: Generator) -> str:
    """The fingerprint an encoder file stores for its decoder: `micromotion.io.files.fingerprint`."""
    return fingerprint(G)


def save_encoder(net: ReStyle, path: str | os.PathLike, metadata: dict | None = None,
                 dtype: torch.dtype = torch.float32) -> Path:
    """Write a `ReStyle`'s encoder and `latent_avg` (safetensors of `dtype`, fp32 by default, float16 for the
    shipped file; no decoder) with its `EncoderConfig` and its decoder's shape and fingerprint in the metadata;
    `load_encoder(path, G)` pairs it with G again."""
    G = net.G
    tensors = {f"encoder.{k}": v.detach().to(dtype) if v.is_floating_point() else v.detach()
               for k, v in net.encoder.state_dict().items()}
    tensors["latent_avg"] = net.latent_avg.detach().to(dtype)
    meta = {"format": ENCODER_FORMAT, "version": str(ENCODER_FORMAT_VERSION),
            "config": json.dumps(net.encoder.cfg.to_dict()),
            "generator": json.dumps({"resolution": G.resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
                                     "fingerprint": generator_fingerprint(G)}),
            **{k: str(v) for k, v in (metadata or {}).items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_safetensors(tensors, path, meta)


def load_encoder(path: str | os.PathLike, G: Generator, device: str | torch.device | None = None) -> ReStyle:
    """Read a `save_encoder` file (safetensors + JSON metadata, no pickle) and pair it with `G`, the generator it
    was trained for (not stored in the file). Returns an eval-mode `ReStyle` on `device` (default: G's device).

    CheckpointError if the file is unreadable, not an encoder file, or made for a generator of another
    resolution / number or width of W+ codes; a generator with other weights only logs a warning.
    """
    sd, meta = read_safetensors(path, ENCODER_FORMAT, ENCODER_FORMAT_VERSION, "encoder")
    try:
        cfg = EncoderConfig.from_dict(json.loads(meta["config"]))
        gmeta = json.loads(meta.get("generator", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad encoder config in metadata ({e})") from None
    if (cfg.n_styles, cfg.w_dim) != (G.num_ws, G.w_dim):
        raise CheckpointError(f"{path}: the encoder gives {cfg.n_styles} x {cfg.w_dim} W+ codes (trained for a "
                              f"{gmeta.get('resolution', '?')}² generator), this generator takes {G.num_ws} x "
                              f"{G.w_dim} ({G.resolution}²); pass the generator the encoder was trained for")
    if gmeta.get("resolution") not in (None, G.resolution):
        raise CheckpointError(f"{path}: the encoder was trained for a {gmeta['resolution']}² generator, this one "
                              f"is {G.resolution}²")
    if gmeta.get("fingerprint") and not fingerprint_matches(gmeta["fingerprint"], G):
        log.warning("%s: trained for a generator with other weights (fingerprint %s, this one %s); its "
                    "reconstructions will be off", path, gmeta["fingerprint"], generator_fingerprint(G))
    enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    other = [k for k in sd if not k.startswith("encoder.") and k != "latent_avg"]
    if other:
        raise CheckpointError(f"{path}: unexpected key '{other[0]}' ({len(other)} unexpected); not {_describe(cfg)}")
    latent_avg = sd.get("latent_avg")
    if latent_avg is None or tuple(latent_avg.shape) != (G.num_ws, G.w_dim):
        got = list(latent_avg.shape) if latent_avg is not None else "missing"
        raise CheckpointError(f"{path}: 'latent_avg' is {got}, expected [{G.num_ws}, {G.w_dim}]")
    net = build_encoder(cfg)
    own = net.state_dict()
    check_state_dict(own, enc, path, f"a {_describe(cfg)} of the config in its metadata", prefix="encoder.")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in enc.items()})
    if not all(torch.isfinite(p).all() for p in net.parameters()) or not torch.isfinite(latent_avg).all():
        raise CheckpointError(f"{path}: the encoder weights contain NaN or inf")
    device = torch.device(device) if device is not None else G.w_avg.device
    opts = {"encoder_type": cfg.encoder_type, "output_size": G.resolution, "source": str(path)}
    for k in ("trained_by", "step"):
        if k in meta:
            opts[k] = meta[k]
    out = ReStyle(net.requires_grad_(False), G, latent_avg, opts).to(device)
    log.info("loaded %s for a %d² generator from %s", _describe(cfg), G.resolution, path)
    return out
