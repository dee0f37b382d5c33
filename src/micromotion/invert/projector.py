"""The optimization projector: find the latent codes `ws` whose image reproduces a target image.

It follows NVIDIA's (stylegan2-ada-pytorch `projector.py`, Karras et al. 2020,
appendix D): start at the mean w (10000 mapping samples), Adam with a learning-rate ramp (up over the first
5%, cosine down over the last 25%), Gaussian noise on w of 5% of the w spread ramped to zero over the first
75% of steps, and -- when the per-layer noise maps are optimized too -- their autocorrelation penalized at
every scale and the maps renormalized after each step. Differences: W+ (one w per layer) is the default and
W is available; a batch of images is projected at once, each independently; the loss is LPIPS-VGG when its
weights are cached and otherwise a pixel loss (see `PixelLoss`); noise maps are optimized only on request,
because a latent file then needs them to reproduce the reconstruction (by default ws alone do, with the
generator's own constant noise).

Also here: the image <-> tensor conversion every inversion method shares, and the learning-rate ramp
(`get_lr`) that StyleCLIP's text optimization (`anchors.text`) borrows from this projector.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..errors import InputError, MicromotionError
from ..models.lpips import LPIPSVGG, at_most_256

log = logging.getLogger(__name__)

LOSSES = ("auto", "lpips", "pixel")


# ----------------------------------------------------------------------------------------------------------
# Image <-> tensor


def image_to_tensor(image: Image.Image, resolution: int | None = None) -> torch.Tensor:
    """PIL RGB image -> `[1, 3, R, R]` float32 in [-1, 1], resized (Lanczos) to `resolution` if given."""
    if resolution is not None and image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.LANCZOS)
    a = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def tensor_to_image(images: torch.Tensor) -> Image.Image | list[Image.Image]:
    """`[3, H, W]` -> PIL image, `[N, 3, H, W]` -> list of PIL images; values in [-1, 1] (clamped)."""
    x = images.detach().float()
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be [3, H, W] or [N, 3, H, W], got {list(images.shape)}")
    a = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = [Image.fromarray(im, "RGB") for im in a]
    return out[0] if single else out


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image between `[N, 3, H, W]` tensors in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


# ----------------------------------------------------------------------------------------------------------
# Losses: per-image distances [N] between images in [-1, 1]


class PixelLoss(nn.Module):
    """Fallback distance when LPIPS weights are not cached.

    On a 4-level pyramid (area downsampling from at most 256x256, down to 8x8): mean absolute error + mean
    squared error + mean absolute error of the horizontal and vertical finite differences (edges, which
    L1/L2 alone under-weight). Coarse levels steer the optimization early, fine levels add detail. Values are
    0 for identical images and a few units for unrelated ones (LPIPS: 0 to ~0.7), so with this loss and
    `optimize_noise` the noise-regularization weight may want lowering.
    """

    name = "pixel"

    def __init__(self, levels: int = 4):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, target = at_most_256(x), at_most_256(target)
        total = x.new_zeros(x.shape[0])
        for level in range(self.levels):
            d = x - target
            total = total + d.abs().mean((1, 2, 3)) + d.square().mean((1, 2, 3))
            total = total + (d[..., :, 1:] - d[..., :, :-1]).abs().mean((1, 2, 3))
            total = total + (d[..., 1:, :] - d[..., :-1, :]).abs().mean((1, 2, 3))
            if level + 1 == self.levels or x.shape[-1] < 16:
                break
            x, target = F.avg_pool2d(x, 2), F.avg_pool2d(target, 2)
        return total


@functools.lru_cache(maxsize=2)
def _lpips_from_files(vgg_path: str, lin_path: str) -> LPIPSVGG:
    from ..io.pickle import read_torch_file

    return LPIPSVGG.from_state_dicts(read_torch_file(vgg_path), read_torch_file(lin_path)).eval()


def _cached_lpips_paths() -> tuple[Path, Path] | str:
    """Paths of the cached VGG16 and LPIPS files, or why they cannot be used (never downloads)."""
    try:
        from .. import weights
    except ImportError as e:
        return f"the weights registry is unavailable ({e})"
    try:
        vgg = weights.resolve("vgg16-imagenet", download=False, progress=False)
        lin = weights.resolve("lpips-vgg", download=False, progress=False)
    except (MicromotionError, KeyError, TypeError, OSError) as e:
        return str(e)
    return Path(vgg), Path(lin)


def make_loss(loss: str = "auto") -> nn.Module:
    """The projector's distance: 'lpips' (needs the cached `lpips-vgg` and `vgg16-imagenet` weights),
    'pixel' (`PixelLoss`), or 'auto' (LPIPS when cached, else pixel)."""
    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}")
    if loss == "pixel":
        return PixelLoss()
    found = _cached_lpips_paths()
    if isinstance(found, str):
        if loss == "lpips":
            raise MicromotionError(f"the LPIPS loss needs cached weights: {found}")
        log.info("LPIPS weights not cached, projecting with the pixel loss (%s)", found)
        return PixelLoss()
    return _lpips_from_files(str(found[0]), str(found[1]))


# ----------------------------------------------------------------------------------------------------------
# Optimization projector


def get_lr(t: float, initial_lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The learning rate at fraction `t` in [0, 1) of a run: linear ramp-up over the first `rampup`, cosine
    ramp-down over the last `rampdown` (NVIDIA's projector; StyleCLIP's text optimization uses the same). The
    first step, t = 0, has learning rate 0, as in both originals."""
    lr_ramp = min(1.0, (1 - t) / rampdown)
    lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
    lr_ramp = lr_ramp * min(1.0, t / rampup)
    return initial_lr * lr_ramp


@dataclass
class Projection:
    """Result of `project`: ws `[N, num_ws, w_dim]`, optimized noise maps (one `[N, 1, r, r]` per synthesis
    layer) or None, final per-image distance `[N]`, and the loss's name. images: `synthesize(G, ws)` `[N, 3, R, R]`
    when the method rendered it already (an encoder's last refinement step), else None."""

    ws: torch.Tensor
    noise: list[torch.Tensor] | None
    distance: torch.Tensor
    loss: str
    images: torch.Tensor | None = None


def _noise_keys(G) -> list[str]:
    return [f"layers.{i}.noise_const" for i, layer in enumerate(G.synthesis_net.layers)
            if getattr(layer, "use_noise", False)]


def synthesize(G, ws: torch.Tensor, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """`G.synthesis(ws, noise_mode='const')`, optionally with per-image noise maps (one `[N, 1, r, r]` per
    noise layer, as `Projection.noise`) in place of the generator's constant noise. G is not modified and
    receives no gradients."""
    net = G.synthesis_net
    state = {k: v.detach() for k, v in net.named_parameters()}
    if noise is not None:
        keys = _noise_keys(G)
        if len(noise) != len(keys):
            raise ValueError(f"expected {len(keys)} noise maps, got {len(noise)}")
        state.update(zip(keys, noise))
    return torch.func.functional_call(net, state, (ws,), {"noise_mode": "const"}, strict=False)


def _noise_regularization(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-image sum over noise maps and scales (down to 8x8) of squared one-pixel autocorrelations."""
    reg = 0
    for n in noise:
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean((1, 2, 3)) ** 2
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean((1, 2, 3)) ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


@torch.no_grad()
def w_stats(G, samples: int = 10000, seed: int = 123) -> tuple[torch.Tensor, float]:
    """Mean w `[w_dim]` and scalar spread (root mean squared distance to the mean) of `samples` w's."""
    dev = G.w_avg.device
    z = torch.randn(samples, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    w = torch.cat([G.mapping_net(chunk) for chunk in z.split(4096)])
    w_avg = w.mean(0)
    w_std = float((w - w_avg).square().sum(1).mean().sqrt())
    return w_avg, w_std


@torch.enable_grad()  # an optimization: it runs also when the caller is inside torch.no_grad()
def project(G, target: torch.Tensor, *, steps: int = 1000, w_plus: bool = True, loss: str | nn.Module = "auto",
            optimize_noise: bool = False, init_ws: torch.Tensor | None = None, initial_learning_rate: float = 0.1,
            initial_noise_factor: float = 0.05, lr_rampdown_length: float = 0.25, lr_rampup_length: float = 0.05,
            noise_ramp_length: float = 0.75, regularize_noise_weight: float = 1e5, w_avg_samples: int = 10000,
            seed: int = 0, progress: bool = True) -> Projection:
    """Find ws such that `G.synthesis(ws)` reproduces `target` `[N, 3, R, R]` (values in [-1, 1]).

    Each of the N images is optimized independently (batching only shares the passes). `w_plus`: one w per
    layer (default) or a single w repeated. `loss`: see `make_loss`, or a module mapping (images, targets)
    to per-image distances `[N]`. `optimize_noise`: also fit the per-layer noise maps (NVIDIA's default; the
    maps are returned in `Projection.noise` and `synthesize` must be given them). `init_ws` `[N, num_ws,
    w_dim]`: start there (e.g. from an encoder) instead of at the mean w. Runs on G's device.
    """
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    R = G.resolution
    dev = G.w_avg.device
    if target.ndim != 4 or target.shape[1:] != (3, R, R):
        raise ValueError(f"target must have shape [N, 3, {R}, {R}], got {list(target.shape)}")
    target = target.to(dev, torch.float32)
    N = target.shape[0]
    dist_fn = make_loss(loss) if isinstance(loss, str) else loss
    dist_fn = dist_fn.to(dev)
    loss_name = getattr(dist_fn, "name", type(dist_fn).__name__)

    w_avg, w_std = w_stats(G, w_avg_samples)
    num_ws = G.num_ws
    if init_ws is not None:
        if init_ws.shape != (N, num_ws, G.w_dim):
            raise ValueError(f"init_ws must have shape [{N}, {num_ws}, {G.w_dim}], got {list(init_ws.shape)}")
        start = init_ws.to(dev, torch.float32) if w_plus else init_ws.to(dev, torch.float32).mean(1, keepdim=True)
    else:
        start = w_avg.view(1, 1, -1).expand(N, num_ws if w_plus else 1, -1)
    w_opt = start.clone().requires_grad_(True)
    params: list[torch.Tensor] = [w_opt]
    gen = torch.Generator(device=dev).manual_seed(seed)
    noise = None
    if optimize_noise:
        noise = [torch.randn(N, 1, layer.resolution, layer.resolution, device=dev, generator=gen).requires_grad_(True)
                 for layer in G.synthesis_net.layers if getattr(layer, "use_noise", False)]
        params += noise
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=initial_learning_rate)
    with torch.no_grad():
        target_feats = dist_fn.features_of(at_most_256(target)) if hasattr(dist_fn, "features_of") else None

    bar = tqdm(range(steps), desc=f"projecting {N} image(s) ({loss_name}, {'W+' if w_plus else 'W'})",
               disable=not progress, leave=False, dynamic_ncols=True)
    dist = torch.zeros(N, device=dev)
    for step in bar:
        t = step / steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        lr = get_lr(t, initial_learning_rate, lr_rampdown_length, lr_rampup_length)
        for group in optimizer.param_groups:
            group["lr"] = lr

        w_noise = torch.randn(w_opt.shape, device=dev, generator=gen) * w_noise_scale
        ws = (w_opt + w_noise).expand(N, num_ws, -1)
        synth = synthesize(G, ws, noise)
        if target_feats is not None:
            dist = dist_fn.distance(dist_fn.features_of(at_most_256(synth)), target_feats)
        else:
            dist = dist_fn(synth, target)
        total = dist.sum()
        if noise is not None:
            total = total + _noise_regularization(noise).sum() * regularize_noise_weight

        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if noise is not None:
            with torch.no_grad():
                for n in noise:
                    n -= n.mean((1, 2, 3), keepdim=True)
                    n *= n.square().mean((1, 2, 3), keepdim=True).rsqrt()
        if progress and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix_str(f"dist {float(dist.detach().mean()):.4f}")

    ws = w_opt.detach().expand(N, num_ws, -1).clone()
    with torch.no_grad():
        final_noise = [n.detach().clone() for n in noise] if noise is not None else None
        final = synthesize(G, ws, final_noise)
        dist = dist_fn(final, target).detach()
    log.info("projected %d image(s) in %d steps (%s, %s): distance %s", N, steps, loss_name,
             "W+" if w_plus else "W", ", ".join(f"{float(d):.4f}" for d in dist))
    return Projection(ws=ws, noise=final_noise, distance=dist, loss=loss_name)
