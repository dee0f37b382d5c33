"""StyleGAN2 generator (Karras et al. 2020, config-f and smaller), pure PyTorch.

Parameters are stored raw with equalized-learning-rate gains applied at run time, exactly as in both
reference implementations (NVIDIA stylegan2-ada-pytorch `training/networks.py`, rosinality
`model.py`), so their checkpoints map onto this module key by key (see `micromotion.checkpoint`).

Public surface: `G.mapping(z, truncation_psi)` -> ws `[N, num_ws, w_dim]`;
`G.synthesis(ws, noise_mode)` -> images `[N, 3, R, R]` in the generator's raw range.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from .. import ops
from ..io.files import config_from_dict


def _default_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    return {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, int(math.log2(resolution)) + 1)}


def config_dict(cfg) -> dict:
    """`asdict(cfg)` of a config with `channels` and `resample_filter`, as JSON (string keys, a list)."""
    d = asdict(cfg)
    d["channels"] = {str(k): v for k, v in cfg.channels.items()}
    d["resample_filter"] = list(cfg.resample_filter)
    return d


def layer_noise(layer: nn.Module, x: torch.Tensor, noise_mode: str, generator: torch.Generator | None) -> torch.Tensor:
    """The noise a synthesis layer adds to its output `x` [N, C, R, R]: its `noise_const` [R, R] ("const") or
    fresh N(0, 1) per sample [N, 1, R, R] ("random"), times its `noise_strength`, in `x`'s dtype."""
    if noise_mode == "const":
        noise = layer.noise_const.to(x.dtype)
    else:
        noise = torch.randn(x.shape[0], 1, layer.resolution, layer.resolution, device=x.device,
                            generator=generator).to(x.dtype)
    return noise * layer.noise_strength.to(x.dtype)


def check_channels(resolution: int, channels: dict) -> dict[int, int]:
    """`channels` (resolution -> channels; empty: the config-f rule) of a network at `resolution`, with int keys,
    checked to cover every resolution 4..`resolution` (a power of two); ValueError otherwise."""
    r = resolution
    if r < 4 or r & (r - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {r}")
    channels = {int(k): int(v) for k, v in (channels or _default_channels(r)).items()}
    missing = [2 ** i for i in range(2, int(math.log2(r)) + 1) if 2 ** i not in channels]
    if missing:
        raise ValueError(f"channels missing for resolutions {missing}")
    return channels


@dataclass
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator. Defaults are config-f at 1024² (FFHQ)."""

    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channels: dict[int, int] = field(default_factory=dict)  # resolution -> channels; empty = config-f rule
    img_channels: int = 3
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    use_noise: bool = True

    def __post_init__(self):
        self.channels = check_channels(self.resolution, self.channels)
        self.resample_filter = tuple(float(t) for t in self.resample_filter)

    @classmethod
    def config_f(cls, resolution: int = 1024, channel_multiplier: int = 2, **kw) -> "GeneratorConfig":
        """rosinality's `Generator(size, 512, 8, channel_multiplier)`."""
        return cls(resolution=resolution, channels=_default_channels(resolution, 16384 * channel_multiplier), **kw)

    @classmethod
    def tiny(cls, resolution: int = 32) -> "GeneratorConfig":
        """A few-thousand-parameter generator for tests."""
        return cls(resolution=resolution, z_dim=16, w_dim=16, mapping_layers=2,
                   channels={2 ** i: max(8, 32 >> (i - 2)) for i in range(2, int(math.log2(resolution)) + 1)})

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    def to_dict(self) -> dict:
        return config_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return config_from_dict(cls, d, "generator")


class FullyConnected(nn.Module):
    """Equalized-lr linear layer: y = x @ (W * lr/sqrt(in))^T + b * lr."""

    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0, bias_init: float = 0.0,
                 activation: str = "linear"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "lrelu":
            return ops.bias_lrelu(x.matmul(w.t()), b)
        return torch.addmm(b.unsqueeze(0), x, w.t())


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]: 2nd-moment normalization, then an MLP of lrelu layers."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.z_dim, self.w_dim, self.num_layers = cfg.z_dim, cfg.w_dim, cfg.mapping_layers
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", FullyConnected(dims[i], dims[i + 1], cfg.mapping_lr_multiplier, activation="lrelu"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling), noise, bias, lrelu."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: int, cfg: GeneratorConfig):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, cfg.conv_clamp
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.use_noise = cfg.use_noise
        if cfg.use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", ops.setup_filter(cfg.resample_filter), persistent=False)
        self.weight_gain = 1.0 / math.sqrt(in_ch * 9)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused: bool = False,
                generator: torch.Generator | None = None, upconv: str | None = None) -> torch.Tensor:
        styles = self.affine(w)
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                                 resample_filter=self.resample_filter, fused=fused, upconv=upconv)
        if self.use_noise and noise_mode != "none":
            x = x + layer_noise(self, x, noise_mode, generator)
        return ops.bias_lrelu(x, self.bias, clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, without demodulation."""

    def __init__(self, in_ch: int, img_channels: int, w_dim: int, cfg: GeneratorConfig):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_ch)
        self.conv_clamp = cfg.conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = False) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] (skip architecture)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.resolution, self.w_dim, self.num_ws = cfg.resolution, cfg.w_dim, cfg.num_ws
        ch = cfg.channels
        self.const = nn.Parameter(torch.randn(ch[4], 4, 4))
        layers, torgbs = [SynthesisLayer(ch[4], ch[4], cfg.w_dim, 4, 1, cfg)], [ToRGB(ch[4], cfg.img_channels, cfg.w_dim, cfg)]
        for i in range(3, int(math.log2(cfg.resolution)) + 1):
            r = 2 ** i
            layers.append(SynthesisLayer(ch[r // 2], ch[r], cfg.w_dim, r, 2, cfg))
            layers.append(SynthesisLayer(ch[r], ch[r], cfg.w_dim, r, 1, cfg))
            torgbs.append(ToRGB(ch[r], cfg.img_channels, cfg.w_dim, cfg))
        self.layers = nn.ModuleList(layers)
        self.torgbs = nn.ModuleList(torgbs)
        self.register_buffer("resample_filter", ops.setup_filter(cfg.resample_filter), persistent=False)

    #: Activation layout: "nchw" (default) or "nhwc" (channels_last from the constant input on; for measuring
    #: GPU layouts, `benchmarks/bench_generator.py --layouts`). Both give the same frames (tests).
    memory_format: str = "nchw"
    #: How the batched path upsamples (`ops.UPCONVS`; None: the device's default). All give the same frames
    #: (tests); for measuring, `benchmarks/bench_generator.py --upconvs`.
    upconv: str | None = None

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if self.memory_format not in ("nchw", "nhwc"):
            raise ValueError(f"memory_format must be 'nchw' or 'nhwc', got {self.memory_format!r}")
        dtype = torch.get_autocast_dtype("cuda") if ws.is_cuda and torch.is_autocast_enabled("cuda") else torch.float32
        ws = ws.to(torch.float32)
        x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        if self.memory_format == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        kw = dict(noise_mode=noise_mode, fused=fused, generator=generator, upconv=self.upconv)
        x = self.layers[0](x, ws[:, 0], **kw)
        img = self.torgbs[0](x, ws[:, 1], fused=fused).float()
        for j in range(1, len(self.torgbs)):
            x = self.layers[2 * j - 1](x, ws[:, 2 * j - 1], **kw)
            x = self.layers[2 * j](x, ws[:, 2 * j], **kw)
            img = ops.upsample2d(img, self.resample_filter) + self.torgbs[j](x, ws[:, 2 * j + 1], fused=fused).float()
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: `mapping` (z -> w) and `synthesis` (ws -> image).

    Attributes: `z_dim, w_dim, num_ws, resolution, cfg`, buffer `w_avg` [w_dim].
    """

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        self.cfg = cfg or GeneratorConfig()
        self.z_dim, self.w_dim, self.num_ws, self.resolution = self.cfg.z_dim, self.cfg.w_dim, self.cfg.num_ws, self.cfg.resolution
        self.mapping_net = MappingNetwork(self.cfg)
        self.synthesis_net = SynthesisNetwork(self.cfg)
        self.register_buffer("w_avg", torch.zeros(self.cfg.w_dim))
        self.w_avg_source = "unset"

    @torch.no_grad()
    def compute_w_avg(self, n: int = 10000, seed: int = 0) -> torch.Tensor:
        """Deterministic mean of w over `n` z samples from `seed` (used when a checkpoint stores none)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=g).to(self.w_avg.device)
        ws = torch.cat([self.mapping_net(chunk) for chunk in z.split(2048)])
        self.w_avg.copy_(ws.mean(0))
        self.w_avg_source = f"computed({n}, seed={seed})"
        return self.w_avg

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
        """z [N, z_dim] -> ws [N, num_ws, w_dim], truncated toward `w_avg` by `truncation_psi`."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        w = self.mapping_net(z)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            avg = self.w_avg.to(ws.dtype)
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cut] = avg.lerp(ws[:, :cut], truncation_psi)
        return ws

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const", fused: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, 3, R, R], raw range (about [-1, 1]; no clamp).

        noise_mode: 'const' (noise stored in the checkpoint), 'random' (fresh, from `generator`), 'none'.
        """
        return self.synthesis_net(ws, noise_mode=noise_mode, fused=fused, generator=generator)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode=noise_mode)
