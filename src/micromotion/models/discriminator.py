"""StyleGAN2 discriminator, residual architecture (Karras et al. 2020, Fig. 7c), pure PyTorch.

Follows NVIDIA stylegan2-ada-pytorch `training/networks.py` (`Discriminator` with `architecture='resnet'`):
equalized learning rate (raw parameters, gains at run time), FIR-filtered stride-2 downsampling, residual
blocks scaled by sqrt(1/2), minibatch standard deviation and a 4x4 epilogue. Used to train the world
generator (`micromotion.world.train`); the same ops as the generator (`micromotion.ops`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops
from ..io.files import config_from_dict
from .stylegan2 import check_channels, config_dict


@dataclass
class DiscriminatorConfig:
    """Architecture of a StyleGAN2 resnet discriminator. Defaults are config-f's rule at 1024²."""

    resolution: int = 1024
    channels: dict[int, int] = field(default_factory=dict)  # resolution -> channels; empty = config-f rule
    img_channels: int = 3
    mbstd_group_size: int = 4
    mbstd_channels: int = 1
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    conv_clamp: float | None = None

    def __post_init__(self):
        self.channels = check_channels(self.resolution, self.channels)
        self.resample_filter = tuple(float(t) for t in self.resample_filter)

    @classmethod
    def tiny(cls, resolution: int = 32) -> "DiscriminatorConfig":
        """A few-thousand-parameter discriminator for tests."""
        return cls(resolution=resolution, channels={2 ** i: 8 for i in range(2, int(math.log2(resolution)) + 1)})

    def to_dict(self) -> dict:
        return config_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiscriminatorConfig":
        return config_from_dict(cls, d, "discriminator")


class Conv2dLayer(nn.Module):
    """Equalized-lr conv, optionally preceded by FIR filtering and followed by stride-2 subsampling (down=2),
    then bias and leaky ReLU (or linear). `gain` scales the output (residual branches use sqrt(1/2))."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True, activation: str = "lrelu",
                 down: int = 1, resample_filter=(1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.activation, self.down, self.kernel, self.conv_clamp = activation, down, kernel, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        if self.down > 1:
            # blur then subsample, sized so a [H] input gives [H / down] (rosinality ConvLayer(downsample=True))
            fw = self.resample_filter.shape[-1]
            p = fw - self.down + self.kernel - 1
            x = ops.upfirdn2d(x, self.resample_filter, pad=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))
            x = F.conv2d(x, w, stride=self.down)
        else:
            x = F.conv2d(x, w, padding=self.kernel // 2)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if self.activation == "lrelu":
            return ops.bias_lrelu(x, self.bias, gain=ops.SQRT2 * gain, clamp=clamp)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        x = x * gain if gain != 1 else x
        return x.clamp(-clamp, clamp) if clamp is not None else x


class FullyConnected(nn.Module):
    """Equalized-lr linear layer with optional leaky ReLU."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = 1.0 / math.sqrt(in_features)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = x.matmul(w.t())
        if self.activation == "lrelu":
            return ops.bias_lrelu(x, self.bias)
        return x + self.bias.to(x.dtype)


class DiscriminatorBlock(nn.Module):
    """One resolution: (fromRGB at the top) conv 3x3, conv 3x3 down, plus a 1x1 down skip; sqrt(1/2) gains."""

    def __init__(self, in_ch: int, tmp_ch: int, out_ch: int, cfg: DiscriminatorConfig):
        super().__init__()
        kw = dict(resample_filter=cfg.resample_filter, conv_clamp=cfg.conv_clamp)
        self.fromrgb = Conv2dLayer(cfg.img_channels, tmp_ch, 1, **kw) if in_ch == 0 else None
        self.conv0 = Conv2dLayer(tmp_ch, tmp_ch, 3, **kw)
        self.conv1 = Conv2dLayer(tmp_ch, out_ch, 3, down=2, **kw)
        self.skip = Conv2dLayer(tmp_ch, out_ch, 1, bias=False, activation="linear", down=2, **kw)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStd(nn.Module):
    """Appends the mean standard deviation over groups of samples as extra feature maps."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:  # groups must tile the batch
            g -= 1
        f = self.num_channels
        y = x.float().reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [n/g, f, c/f, h, w]
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4: minibatch std, conv 3x3, fully connected, output logit."""

    def __init__(self, ch: int, cfg: DiscriminatorConfig):
        super().__init__()
        self.mbstd = MinibatchStd(cfg.mbstd_group_size, cfg.mbstd_channels) if cfg.mbstd_channels else None
        self.conv = Conv2dLayer(ch + (cfg.mbstd_channels if self.mbstd else 0), ch, 3, conv_clamp=cfg.conv_clamp)
        self.fc = FullyConnected(ch * 16, ch, activation="lrelu")
        self.out = FullyConnected(ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """images [N, img_channels, R, R] in [-1, 1] -> real/fake logits [N]."""

    def __init__(self, cfg: DiscriminatorConfig | None = None):
        super().__init__()
        self.cfg = cfg or DiscriminatorConfig()
        ch = self.cfg.channels
        res = [2 ** i for i in range(int(math.log2(self.cfg.resolution)), 2, -1)]
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(0 if r == self.cfg.resolution else ch[r], ch[r], ch[r // 2], self.cfg) for r in res)
        self.epilogue = DiscriminatorEpilogue(ch[4], self.cfg)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        r = self.cfg.resolution
        if img.ndim != 4 or img.shape[1:] != (self.cfg.img_channels, r, r):
            raise ValueError(f"images must have shape [N, {self.cfg.img_channels}, {r}, {r}], got {list(img.shape)}")
        dtype = torch.get_autocast_dtype("cuda") if img.is_cuda and torch.is_autocast_enabled("cuda") else torch.float32
        x, img = None, img.to(dtype)
        for block in self.blocks:
            x = block(x, img)
        return self.epilogue(x).float().squeeze(1)
