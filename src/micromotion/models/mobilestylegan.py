"""MobileStyleGAN (Belousov 2021, arXiv 2104.04767): a StyleGAN2 FFHQ student with wavelet outputs, pure PyTorch.

Written from the paper and the reference code bes-dev/MobileStyleGAN.pytorch (Apache-2.0;
`core/models/mobile_synthesis_network.py` and `core/models/modules/`), to read the OpenVINO export that the
`random-face` package ships (`micromotion.models.mobilestylegan_convert`).

- Mapping: the teacher's, StyleGAN2 config-f (pixel norm, 8 equalized-lr lrelu layers): `stylegan2.MappingNetwork`.
  The export contains no w_avg; `Generator.compute_w_avg` provides it.
- Synthesis: a 4x4 constant, one full 3x3 modulated conv, then per block an inverse-Haar-wavelet upsampling
  (the 4C channels, modulated, are read as LL | (LH, HL, HH) coefficients of C channels) and two modulated
  depthwise-separable convs (3x3 depthwise, 1x1 pointwise), each with noise, bias and leaky ReLU(0.2), no gain.
  The last block's 1x1 "multichannel image" gives 12 wavelet channels (LL | LH, HL, HH of RGB), inverted once
  more: 512² coefficients -> the 1024² image, about [-1, 1] (not clamped).
- Demodulation: MobileStyleGAN divides each output channel by a norm computed from a fixed buffer (`style_inv`),
  not from the style, so it is a constant per output channel. The export folded it into the conv weights, and so
  does this module: `weight` / `weight_pw` are the demodulated weights.
- W+ rows (`num_ws` = 3 per block + 2 = 23 at 1024²): row 0 the 4² conv; block b (b = 0..6, output 8·2^b): row
  3b+1 its upsampling and first conv, 3b+2 its second conv; row 3·blocks (21) the final image layer. The
  reference also computes a wavelet image after every block for its distillation loss, from rows 3b+3; only the
  last one reaches the output, so rows 3, 6, 9, 12, 15, 18 and the spare row 22 do not change the image.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops
from ..io.files import config_from_dict
from . import stylegan2 as _sg2


@dataclass
class MobileStyleGANConfig:
    """Architecture of a MobileStyleGAN generator. Defaults are the FFHQ 1024² model of `random-face`."""

    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128, 64)  # 4² const, then each block's output
    img_channels: int = 3
    use_noise: bool = True

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) < 2:
            raise ValueError(f"channels needs the constant's and at least one block's, got {list(self.channels)}")
        bad = [c for c in self.channels[:-1] if c % 4]
        if bad:
            raise ValueError(f"channels entering a wavelet upsampling must be divisible by 4, got {bad}")

    @classmethod
    def tiny(cls) -> "MobileStyleGANConfig":
        """A few-thousand-parameter 32² generator for tests."""
        return cls(z_dim=16, w_dim=16, mapping_layers=2, channels=(16, 16, 8))

    @property
    def num_blocks(self) -> int:
        return len(self.channels) - 1

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (self.num_blocks + 1)  # each block doubles, the final inverse wavelet doubles again

    @property
    def num_ws(self) -> int:
        return 3 * self.num_blocks + 2

    @property
    def image_rows(self) -> list[int]:
        """The W+ rows that change the image (see the module docstring): all but each non-final block's
        intermediate wavelet row 3b+3 and the spare last row."""
        inert = {3 * b + 3 for b in range(self.num_blocks - 1)} | {self.num_ws - 1}
        return [r for r in range(self.num_ws) if r not in inert]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MobileStyleGANConfig":
        return config_from_dict(cls, d, "MobileStyleGAN")


def idwt_haar(x: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
    """One level of the inverse Haar transform: [N, 4C, H, W] -> [N, C, 2H, 2W].

    Channel layout as in the reference (`pytorch_wavelets` DWTInverse, wave 'db1', mode 'zero'): the first C
    channels are LL, then (LH, HL, HH) for each of the C channels. out[2i+a, 2j+b] = (LL + s_a LH + s_b HL
    + s_a s_b HH) * `scale` with s_0 = 1, s_1 = -1 (`scale` 0.5 is the transform; a caller that already folded
    the 0.5 into its input passes 1). Eager without autograd: four strided writes into the output (no
    pixel_shuffle copy).
    """
    n, c4, h, w = x.shape
    c = c4 // 4
    ll = x[:, :c]
    lh, hl, hh = x[:, c:].reshape(n, c, 3, h, w).unbind(2)
    even, odd = ll + lh, ll - lh  # rows 2i and 2i+1 after the row pass
    heven, hodd = hl + hh, hl - hh
    if not _overwritable(x) or torch.compiler.is_compiling():  # autograd, or the compiler (which fuses the
        # stacked sums and cannot trace strided `out=` writes): the same sums, stacked
        rows = [torch.stack([even + heven, even - heven], -1), torch.stack([odd + hodd, odd - hodd], -1)]
        out = torch.stack(rows, 3).reshape(n, c, 2 * h, 2 * w)
        return out * scale if scale != 1 else out
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and c > 1 else torch.contiguous_format
    out = torch.empty(n, c, 2 * h, 2 * w, dtype=x.dtype, device=x.device, memory_format=fmt)
    o = out.view(n, c, h, 2, w, 2)
    torch.add(even, heven, out=o[:, :, :, 0, :, 0])
    torch.sub(even, heven, out=o[:, :, :, 0, :, 1])
    torch.add(odd, hodd, out=o[:, :, :, 1, :, 0])
    torch.sub(odd, hodd, out=o[:, :, :, 1, :, 1])
    return out.mul_(scale) if scale != 1 else out


def _overwritable(*ts: torch.Tensor) -> bool:
    """True when in-place ops on these tensors cannot break autograd."""
    return not torch.is_grad_enabled() or not any(t.requires_grad for t in ts)


def _modulate(x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] * styles [N, C], in place when autograd allows (x is always an intermediate here)."""
    s = styles.to(x.dtype).view(*styles.shape, 1, 1)
    return x.mul_(s) if _overwritable(x, s) else x * s


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """1x1 conv: weight [O, I, 1, 1], bias [O]. On an NHWC tensor this is one GEMM over the pixels, written
    straight into an NHWC output (PyTorch's 1x1 conv path copies to NCHW and back when single-threaded)."""
    n, c, h, w = x.shape
    if n * h * w > 1 and x.is_contiguous(memory_format=torch.channels_last):
        out = torch.addmm(bias, x.permute(0, 2, 3, 1).reshape(n * h * w, c), weight.reshape(weight.shape[0], c).t())
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)
    return ops.conv2d(x, weight, bias)


def _modulation(w_dim: int, channels: int) -> nn.Linear:
    """The reference's style affine: a plain nn.Linear (no equalized lr) with bias 1."""
    lin = nn.Linear(w_dim, channels)
    nn.init.normal_(lin.weight, std=1 / math.sqrt(w_dim))
    nn.init.ones_(lin.bias)
    return lin


def _demodulate(weight: torch.Tensor, gain: float) -> torch.Tensor:
    """weight [O, I, kh, kw] / its per-output norm at unit styles (the reference's demodulation, folded)."""
    return weight * ((gain * weight).square().sum((1, 2, 3), keepdim=True) + 1e-8).rsqrt()


class StyledConv(nn.Module):
    """Modulate -> 3x3 conv (full, or depthwise + pointwise) -> noise -> bias -> leaky ReLU(0.2)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, depthwise: bool, use_noise: bool):
        super().__init__()
        self.in_ch, self.resolution, self.depthwise, self.use_noise = in_ch, resolution, depthwise, use_noise
        self.affine = _modulation(w_dim, in_ch)
        self.style_gain = 1.0 / math.sqrt(in_ch * 9)  # the reference's `scale`, applied to the styles
        with torch.no_grad():
            if depthwise:
                self.weight_dw = nn.Parameter(torch.randn(in_ch, 1, 3, 3))  # [in, 1, 3, 3]
                pw = torch.randn(out_ch, in_ch, 1, 1)
                eff = self.weight_dw.view(1, in_ch, 9) * pw.view(out_ch, in_ch, 1)
                norm = ((self.style_gain * eff).square().sum((1, 2)) + 1e-8).rsqrt()
                self.weight_pw = nn.Parameter(pw * norm.view(-1, 1, 1, 1))  # [out, in, 1, 1], demodulated
            else:
                self.weight = nn.Parameter(_demodulate(torch.randn(out_ch, in_ch, 3, 3), self.style_gain))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.style_gain  # [N, in]
        if self.depthwise:
            # The per-channel style commutes with the depthwise conv; at batch 1 it folds into the pointwise
            # weights (no pass over the activations), otherwise it multiplies the input.
            if x.shape[0] == 1:
                x = ops.conv2d(x, self.weight_dw.to(x.dtype), padding=1, groups=self.in_ch)
                x = _pointwise(x, (self.weight_pw * styles.view(1, -1, 1, 1)).to(x.dtype), self.bias.to(x.dtype))
            else:
                x = ops.conv2d(_modulate(x, styles), self.weight_dw.to(x.dtype), padding=1, groups=self.in_ch)
                x = _pointwise(x, self.weight_pw.to(x.dtype), self.bias.to(x.dtype))
        else:
            x = ops.conv2d(x * styles.to(x.dtype).view(*styles.shape, 1, 1), self.weight.to(x.dtype),
                           self.bias.to(x.dtype), padding=1)
        if self.use_noise and noise_mode != "none":
            x = x.add_(_sg2.layer_noise(self, x, noise_mode, generator))
        return F.leaky_relu_(x, 0.2)


class WaveletUpsample(nn.Module):
    """Modulate [N, 4C, H, W] (no gain, no demodulation), then `idwt_haar` -> [N, C, 2H, 2W]."""

    def __init__(self, in_ch: int, w_dim: int):
        super().__init__()
        self.affine = _modulation(w_dim, in_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return idwt_haar(_modulate(x, self.affine(w) * 0.5), scale=1)  # the transform's 1/2 rides on the styles


class ToWavelets(nn.Module):
    """The "multichannel image": modulated 1x1 conv without demodulation -> 4·img_channels wavelet channels."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int):
        super().__init__()
        self.affine = _modulation(w_dim, in_ch)
        self.style_gain = 1.0 / math.sqrt(in_ch)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """x [N, in, H, W] -> [N, out, H, W], times `scale` (folded into the styles and the bias)."""
        styles = self.affine(w) * (self.style_gain * scale)
        bias = (self.bias * scale).to(x.dtype)
        if x.shape[0] == 1:  # fold the styles into the weights
            return _pointwise(x, (self.weight * styles.view(1, -1, 1, 1)).to(x.dtype), bias)
        return _pointwise(_modulate(x, styles), self.weight.to(x.dtype), bias)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R].

    `layers` holds every noise-carrying conv in order (the 4² conv, then two per block), as in
    `stylegan2.SynthesisNetwork`, so code that reads `layers.{i}.noise_const` works for both.
    """

    def __init__(self, cfg: MobileStyleGANConfig):
        super().__init__()
        self.resolution, self.w_dim, self.num_ws = cfg.resolution, cfg.w_dim, cfg.num_ws
        ch = cfg.channels
        self.const = nn.Parameter(torch.randn(ch[0], 4, 4))
        layers = [StyledConv(ch[0], ch[0], cfg.w_dim, 4, depthwise=False, use_noise=cfg.use_noise)]
        ups = []
        for b in range(cfg.num_blocks):
            r = 8 * 2 ** b
            ups.append(WaveletUpsample(ch[b], cfg.w_dim))
            layers.append(StyledConv(ch[b] // 4, ch[b + 1], cfg.w_dim, r, depthwise=True, use_noise=cfg.use_noise))
            layers.append(StyledConv(ch[b + 1], ch[b + 1], cfg.w_dim, r, depthwise=True, use_noise=cfg.use_noise))
        self.layers = nn.ModuleList(layers)
        self.ups = nn.ModuleList(ups)
        self.to_img = ToWavelets(ch[-1], 4 * cfg.img_channels, cfg.w_dim)

    #: Activation layout: "auto" (NHWC on CPU, where oneDNN's depthwise conv is ~3x faster and the 1x1 convs
    #: become GEMMs; NCHW elsewhere), "nhwc" or "nchw". Both layouts give the same frames (tests).
    memory_format: str = "auto"

    def _nhwc(self, device: torch.device) -> bool:
        if self.memory_format not in ("auto", "nhwc", "nchw"):
            raise ValueError(f"memory_format must be 'auto', 'nhwc' or 'nchw', got {self.memory_format!r}")
        return self.memory_format == "nhwc" or (self.memory_format == "auto" and device.type == "cpu")

    def forward(self, ws: torch.Tensor, noise_mode: str = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}] (this MobileStyleGAN has "
                             f"{self.num_ws} W+ rows), got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        kw = dict(noise_mode=noise_mode, generator=generator)
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        if self._nhwc(ws.device):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.layers[0](x, ws[:, 0], **kw)
        for b, up in enumerate(self.ups):
            x = up(x, ws[:, 3 * b + 1])
            x = self.layers[2 * b + 1](x, ws[:, 3 * b + 1], **kw)
            x = self.layers[2 * b + 2](x, ws[:, 3 * b + 2], **kw)
        img = idwt_haar(self.to_img(x, ws[:, 3 * len(self.ups)], scale=0.5), scale=1)
        return img.float().contiguous()


class Generator(nn.Module):
    """MobileStyleGAN generator with the interface of `stylegan2.Generator`: `mapping` (z -> ws), `synthesis`
    (ws -> image).

    Attributes: `z_dim, w_dim, num_ws, resolution, cfg`, buffer `w_avg` [w_dim].
    """

    def __init__(self, cfg: MobileStyleGANConfig | None = None):
        super().__init__()
        self.cfg = cfg or MobileStyleGANConfig()
        self.z_dim, self.w_dim, self.num_ws, self.resolution = self.cfg.z_dim, self.cfg.w_dim, self.cfg.num_ws, self.cfg.resolution
        self.mapping_net = _sg2.MappingNetwork(self.cfg)  # reads z_dim, w_dim, mapping_layers, mapping_lr_multiplier
        self.synthesis_net = SynthesisNetwork(self.cfg)
        self.register_buffer("w_avg", torch.zeros(self.cfg.w_dim))
        self.w_avg_source = "unset"

    # The mapping network and truncation are StyleGAN2's (the teacher's), so are these two methods.
    compute_w_avg = _sg2.Generator.compute_w_avg
    mapping = _sg2.Generator.mapping

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const", fused: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, 3, R, R], about [-1, 1] (no clamp).

        noise_mode: 'const' (noise stored in the model), 'random' (fresh, from `generator`), 'none'.
        `fused` is accepted for interface parity with StyleGAN2 and ignored (there is no fused path).
        """
        return self.synthesis_net(ws, noise_mode=noise_mode, generator=generator)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode=noise_mode)
