"""Photo-like corruptions of generator samples, so an encoder trained on a model's own samples sees inputs that
look like real photos: small misalignments, colour casts, greyscale, blur, sensor noise, JPEG blocks, and a
painting-like posterization. Batched tensor ops on any device; each corruption is drawn per sample, from a
`torch.Generator`, so a run is reproducible.

The encoder learns to map a corrupted image to the clean sample's code (its targets stay clean).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment", "augment", "jpeg"]


@dataclass
class Augment:
    """Probabilities (per sample) and ranges of each corruption; `Augment.off()` changes nothing."""

    geometry: float = 0.5  # rotation, scale and shift, as an imperfect alignment gives
    max_degrees: float = 6.0
    max_scale: float = 0.06
    max_shift: float = 0.04  # of the image side
    colour: float = 0.8  # brightness, contrast, saturation, white balance
    greyscale: float = 0.1
    blur: float = 0.3
    max_blur_sigma: float = 1.5  # at 256² (scaled with the image side)
    noise: float = 0.2
    max_noise: float = 0.04
    jpeg: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 90)
    painting: float = 0.1

    @classmethod
    def off(cls) -> "Augment":
        return cls(geometry=0, colour=0, greyscale=0, blur=0, noise=0, jpeg=0, painting=0)


def _u(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _pick(x: torch.Tensor, y: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """y where a per-sample coin of probability p falls, else x."""
    m = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(m[:, None, None, None], y, x)


def _geometry(x: torch.Tensor, a: Augment, g: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    ang = _u(n, -a.max_degrees, a.max_degrees, g, dev) * (math.pi / 180)
    s = 1 + _u(n, -a.max_scale, a.max_scale, g, dev)
    t = _u(2 * n, -2 * a.max_shift, 2 * a.max_shift, g, dev).view(n, 2)  # grid units span 2
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _colour(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    grey = (x * x.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)
    sat = _u(n, 0.6, 1.4, g, dev)[:, None, None, None]
    x = grey + sat * (x - grey)
    mean = x.mean((1, 2, 3), keepdim=True)
    con = _u(n, 0.75, 1.3, g, dev)[:, None, None, None]
    bright = _u(n, -0.15, 0.15, g, dev)[:, None, None, None]
    gain = _u(3 * n, 0.9, 1.1, g, dev).view(n, 3, 1, 1)
    return ((x - mean) * con + mean + bright) * gain + (gain - 1)  # the gain acts on [0, 1] intensities


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur, sigma [N] in pixels (separable, reflect padding)."""
    r = max(1, int(math.ceil(3 * float(sigma.max()))))
    k = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    w = torch.exp(-0.5 * (k[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    w = w / w.sum(1, keepdim=True)  # [N, 2r+1]
    n, c, h, wd = x.shape
    y = F.pad(x.reshape(1, n * c, h, wd), (r, r, r, r), mode="reflect")
    kw = w.repeat_interleave(c, 0)
    y = F.conv2d(y, kw[:, None, None, :], groups=n * c)
    y = F.conv2d(y, kw[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, wd)


# JPEG's luminance and chrominance quantization tables (ITU-T T.81, Annex K)
_Q_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
           14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
           49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_Q_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
             47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def _dct_matrix(device, dtype) -> torch.Tensor:
    k = torch.arange(8, device=device, dtype=dtype)
    d = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d  # orthonormal: D @ D.T = I


def _quantize_blocks(p: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """p [N, H, W] (H, W multiples of 8, level-shifted) -> DCT, quantize by table [N, 8, 8], inverse DCT."""
    n, h, w = p.shape
    d = _dct_matrix(p.device, p.dtype)
    b = p.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # [N, h/8, w/8, 8, 8]
    c = d @ b @ d.T
    t = table[:, None, None]
    c = torch.round(c / t) * t
    b = d.T @ c @ d
    return b.permute(0, 1, 3, 2, 4).reshape(n, h, w)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """What JPEG compression at `quality` [N] (1–100, libjpeg's scaling of the Annex K tables) does to images
    x [N, 3, H, W] in [-1, 1]: YCbCr, 4:2:0 chroma, 8x8 DCT quantization. (Entropy coding is lossless and left
    out; sides not a multiple of 16 are padded by replication.)"""
    n, _, h, w = x.shape
    ph, pw = (-h) % 16, (-w) % 16
    v = F.pad((x.clamp(-1, 1) + 1) * 127.5, (0, pw, 0, ph), mode="replicate")
    r, gch, b = v.unbind(1)
    y = 0.299 * r + 0.587 * gch + 0.114 * b
    cb = -0.168736 * r - 0.331264 * gch + 0.5 * b
    cr = 0.5 * r - 0.418688 * gch - 0.081312 * b
    q = quality.clamp(1, 100).round().to(x.dtype)
    scale = torch.where(q < 50, (5000 / q).floor(), 200 - 2 * q)[:, None, None]  # jcparam.c: integer division
    luma = ((x.new_tensor(_Q_LUMA).view(1, 8, 8) * scale + 50) / 100).floor().clamp(1, 255)
    chroma = ((x.new_tensor(_Q_CHROMA).view(1, 8, 8) * scale + 50) / 100).floor().clamp(1, 255)
    y = _quantize_blocks(y - 128, luma) + 128
    sub = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    sub = torch.stack([_quantize_blocks(sub[:, i], chroma) for i in range(2)], 1)
    cb, cr = F.interpolate(sub, scale_factor=2, mode="bilinear", align_corners=False).unbind(1)
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (rgb[..., :h, :w] / 127.5 - 1).clamp(-1, 1)


def augment(x: torch.Tensor, a: Augment, g: torch.Generator) -> torch.Tensor:
    """Corrupt images x [N, 3, H, W] in [-1, 1], each corruption per sample with its probability in `a`, in
    the order geometry, colour, greyscale, painting, blur, noise, JPEG. Not differentiable through JPEG's
    rounding (it is applied to inputs only)."""
    n, dev = x.shape[0], x.device
    side = x.shape[-1]
    if a.geometry:
        x = _pick(x, _geometry(x, a, g), a.geometry, g)
    if a.colour:
        x = _pick(x, _colour(x, g).clamp(-1, 1), a.colour, g)
    if a.greyscale:
        grey = (x * x.new_tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True).expand_as(x)
        x = _pick(x, grey, a.greyscale, g)
    if a.painting:
        levels = torch.randint(5, 13, (n,), generator=g, device=dev).to(x.dtype)[:, None, None, None]
        flat = _gaussian_blur(x, torch.full((n,), side / 256, device=dev, dtype=x.dtype))
        x = _pick(x, (torch.round((flat + 1) / 2 * levels) / levels * 2 - 1).clamp(-1, 1), a.painting, g)
    if a.blur:
        sigma = _u(n, 0.3, a.max_blur_sigma, g, dev).to(x.dtype) * side / 256
        x = _pick(x, _gaussian_blur(x, sigma), a.blur, g)
    if a.noise:
        sd = _u(n, 0, a.max_noise, g, dev).to(x.dtype)[:, None, None, None]
        noisy = x + sd * torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
        x = _pick(x, noisy.clamp(-1, 1), a.noise, g)
    if a.jpeg:
        qlo, qhi = a.jpeg_quality
        x = _pick(x, jpeg(x, _u(n, qlo, qhi, g, dev).round()), a.jpeg, g)
    return x.clamp(-1, 1)
