"""Inversion: a photo's face -> latent codes `ws` of a StyleGAN2 generator.

`invert(G, image)` aligns the face (`micromotion.align`), inverts the crop with a method from `METHODS` and
returns an `Inversion` (ws, the aligned crop, the crop->photo transform, the reconstruction, the method).

The optimization projector follows NVIDIA's (stylegan2-ada-pytorch `projector.py`, Karras et al. 2020,
appendix D): start at the mean w (10000 mapping samples), Adam with a learning-rate ramp (up over the first
5%, cosine down over the last 25%), Gaussian noise on w of 5% of the w spread ramped to zero over the first
75% of steps, and -- when the per-layer noise maps are optimized too -- their autocorrelation penalized at
every scale and the maps renormalized after each step. Differences: W+ (one w per layer) is the default and
W is available; a batch of images is projected at once, each independently; the loss is LPIPS-VGG when its
weights are cached and otherwise a pixel loss (see `PixelLoss`); noise maps are optimized only on request,
because a latent file then needs them to reproduce the reconstruction (by default ws alone do, with the
generator's own constant noise).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .align import AlignedFace, align_face
from .errors import InputError, MicromotionError
from .image_io import ImageSource, atomic_output, describe, load_image

log = logging.getLogger(__name__)

LATENT_FORMAT = "micromotion-latent"
LATENT_VERSION = 1
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


def _to_256(x: torch.Tensor) -> torch.Tensor:
    # NVIDIA's projector compares at most 256x256 (VGG was trained on 224x224 images).
    return F.interpolate(x, size=(256, 256), mode="area") if x.shape[-1] > 256 else x


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
        x, target = _to_256(x), _to_256(target)
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


# torchvision's VGG16 `features` layout: conv widths, "M" = 2x2 max-pool. LPIPS taps relu1_2 .. relu5_3.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in `features`
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 with a VGG16 trunk (Zhang et al. 2018; richzhang/PerceptualSimilarity `lpips.py`).

    Inputs in [-1, 1]; per-image distance = sum over the 5 taps of the spatial mean of the learned
    non-negative channel weighting of squared differences of unit-normalized features. State-dict keys are
    torchvision's (`features.N.*`) and LPIPS's (`lin{i}.model.1.weight`), so both official files load as is.
    """

    name = "lpips"

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(ch, int(v), 3, padding=1), nn.ReLU()]
                ch = int(v)
        self.features = nn.Sequential(*layers)
        self.lins = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in _LPIPS_CHANNELS])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @classmethod
    def from_state_dicts(cls, vgg: dict, lin: dict) -> "LPIPSVGG":
        m = cls()
        feats = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")}
        own = m.features.state_dict()
        missing = sorted(set(own) - set(feats))
        if missing:
            raise MicromotionError(f"VGG16 weights lack features.{missing[0]}; expected a torchvision VGG16 "
                                   f"state dict (registry entry vgg16-imagenet)")
        m.features.load_state_dict({k: feats[k].float() for k in own})
        for i, c in enumerate(_LPIPS_CHANNELS):
            w = lin.get(f"lin{i}.model.1.weight")
            if w is None or tuple(w.shape) != (1, c, 1, 1):
                raise MicromotionError(f"LPIPS weights lack lin{i}.model.1.weight [1, {c}, 1, 1]; expected the "
                                       f"LPIPS v0.1 VGG file (registry entry lpips-vgg)")
            m.lins[i].data.copy_(w.float())
        return m

    def features_of(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _LPIPS_TAPS:
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10))
                if len(out) == len(_LPIPS_TAPS):
                    break
        return out

    def distance(self, fx: list[torch.Tensor], ft: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for a, b, w in zip(fx, ft, self.lins):
            total = total + ((a - b).square() * w).sum(1).mean((1, 2))
        return total

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features_of(_to_256(x)), self.features_of(_to_256(target)))


@functools.lru_cache(maxsize=2)
def _lpips_from_files(vgg_path: str, lin_path: str) -> LPIPSVGG:
    from .checkpoint import read_torch_file

    return LPIPSVGG.from_state_dicts(read_torch_file(vgg_path), read_torch_file(lin_path)).eval()


def _cached_lpips_paths() -> tuple[Path, Path] | str:
    """Paths of the cached VGG16 and LPIPS files, or why they cannot be used (never downloads)."""
    try:
        from . import weights
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


@dataclass
class Projection:
    """Result of `project`: ws `[N, num_ws, w_dim]`, optimized noise maps (one `[N, 1, r, r]` per synthesis
    layer) or None, final per-image distance `[N]`, and the loss's name."""

    ws: torch.Tensor
    noise: list[torch.Tensor] | None
    distance: torch.Tensor
    loss: str


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
        target_feats = dist_fn.features_of(_to_256(target)) if hasattr(dist_fn, "features_of") else None

    bar = tqdm(range(steps), desc=f"projecting {N} image(s) ({loss_name}, {'W+' if w_plus else 'W'})",
               disable=not progress, leave=False, dynamic_ncols=True)
    dist = torch.zeros(N, device=dev)
    for step in bar:
        t = step / steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        lr_ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
        lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
        lr_ramp = lr_ramp * min(1.0, t / lr_rampup_length)
        for group in optimizer.param_groups:
            group["lr"] = initial_learning_rate * lr_ramp

        w_noise = torch.randn(w_opt.shape, device=dev, generator=gen) * w_noise_scale
        ws = (w_opt + w_noise).expand(N, num_ws, -1)
        synth = synthesize(G, ws, noise)
        if target_feats is not None:
            dist = dist_fn.distance(dist_fn.features_of(_to_256(synth)), target_feats)
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


# ----------------------------------------------------------------------------------------------------------
# Inversion methods and the Inversion result


@dataclass
class Inversion:
    """One face inverted into G's latent space.

    ws: `[1, num_ws, w_dim]` on G's device. image: the aligned crop at G's resolution (the target).
    reconstruction: `G.synthesis(ws)` `[1, 3, R, R]` in [-1, 1]. method: e.g. 'projector'. aligned: the
    alignment (landmarks, quad, photo), None when the input was an already-aligned crop. noise: optimized
    noise maps, when the method fits them. details: method-specific numbers (space, loss, distance, steps).
    """

    ws: torch.Tensor
    image: Image.Image
    reconstruction: torch.Tensor
    method: str
    aligned: AlignedFace | None = None
    noise: list[torch.Tensor] | None = None
    details: dict = field(default_factory=dict)

    @property
    def transform(self) -> np.ndarray | None:
        """`[3, 3]`: pixel of a G-resolution rendering -> photo pixel; None without alignment."""
        if self.aligned is None:
            return None
        return self.aligned.transform_for(self.reconstruction.shape[-1])

    def reconstruction_image(self) -> Image.Image:
        return tensor_to_image(self.reconstruction[0])

    def paste_back(self, face: Image.Image | torch.Tensor | None = None, photo: ImageSource | None = None,
                   **kw) -> Image.Image:
        """Paste `face` (default: the reconstruction; a tensor `[3, R, R]`/`[1, 3, R, R]` or PIL image) into
        the photo; see `micromotion.align.paste_back`."""
        from .align import paste_back

        if self.aligned is None:
            raise InputError("this inversion was made from an aligned crop, so there is no photo to paste into")
        if face is None:
            face = self.reconstruction
        if isinstance(face, torch.Tensor):
            face = tensor_to_image(face[0] if face.ndim == 4 else face)
        return paste_back(face, self.aligned, photo, **kw)


def _projector(G, targets: torch.Tensor, *, steps: int = 1000, w_plus: bool = True, loss: str = "auto",
               optimize_noise: bool = False, seed: int = 0, progress: bool = True, **kw) -> Projection:
    return project(G, targets, steps=steps, w_plus=w_plus, loss=loss, optimize_noise=optimize_noise, seed=seed,
                   progress=progress, **kw)


@functools.lru_cache(maxsize=2)
def _restyle_net(model: str, device: str):
    from .models.encoder import load_restyle

    return load_restyle(model, device=device)


def _restyle(variant: str) -> Callable[..., Projection]:
    def run(G, targets: torch.Tensor, *, model: str | os.PathLike | None = None, n_iters: int = 5,
            progress: bool = True, seed: int = 0, **other) -> Projection:
        """A ReStyle encoder: `n_iters` refinement steps from the average image. model: a checkpoint file or
        registry name (default `restyle-psp-ffhq` / `restyle-e4e-ffhq`). distance: MSE at 256² to the target."""
        if other:
            raise InputError(f"option {next(iter(other))!r} does not apply to the restyle-{variant} encoder; it "
                             f"takes model and n_iters")
        model = str(model or f"restyle-{variant}-ffhq")
        net = _restyle_net(model, str(targets.device))
        if net.variant != variant:
            raise InputError(f"{model}: a ReStyle-{net.variant} checkpoint; use method restyle-{net.variant}")
        if (net.G.num_ws, net.G.w_dim) != (G.num_ws, G.w_dim):
            raise InputError(f"{model}: the encoder gives codes of a {net.G.resolution}x{net.G.resolution} generator "
                             f"({net.G.num_ws} x {net.G.w_dim}), this generator takes {G.num_ws} x {G.w_dim}")
        r = net.invert(targets, n_iters=n_iters)
        dist = (net.prepare(r.images) - net.prepare(targets)).square().mean((1, 2, 3))
        return Projection(ws=r.ws.to(targets.device), noise=None, distance=dist, loss="mse")

    return run


_PAIRED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # G -> {(model, device): ReStyle}


def _paired_net(G, model: str):
    """A ReStyle encoder file (`save_encoder` format: no decoder inside) paired with this very generator,
    cached per generator object."""
    from .models.encoder import load_encoder
    from .weights import resolve_model

    nets = _PAIRED.setdefault(G, {})
    key = (model, str(G.w_avg.device))
    if key not in nets:
        nets[key] = load_encoder(resolve_model(model, kind="encoder"), G)
    return nets[key]


def _encoder_meta(model: str) -> dict | None:
    """The `generator` block of an encoder file's metadata (resolution, num_ws, w_dim, fingerprint), or None."""
    from safetensors import safe_open

    from .weights import resolve_model

    try:
        with safe_open(str(resolve_model(model, kind="encoder", download=False)), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("generator", "null"))
    except Exception:  # noqa: BLE001 -- a missing or unreadable file simply supports nothing
        return None


def _encoder(G, targets: torch.Tensor, *, model: str | os.PathLike | None = None, n_iters: int = 3,
             refine_steps: int = 0, progress: bool = True, seed: int = 0, **other) -> Projection:
    """An encoder trained for this generator (default: the shipped `world-encoder` for the world model):
    `n_iters` ReStyle refinement steps, then optionally `refine_steps` projector steps from its codes.
    distance: MSE at the encoder's input size (or the projector's loss after refinement)."""
    if other:
        raise InputError(f"option {next(iter(other))!r} does not apply to the encoder method; it takes model, "
                         f"n_iters and refine_steps")
    if int(n_iters) < 1 or int(refine_steps) < 0:
        raise InputError(f"n_iters must be >= 1 and refine_steps >= 0, got {n_iters}, {refine_steps}")
    net = _paired_net(G, str(model or "world-encoder"))
    r = net.invert(targets.to(G.w_avg.device, torch.float32), n_iters=int(n_iters))
    if int(refine_steps) > 0:
        return project(G, targets, steps=int(refine_steps), w_plus=True, init_ws=r.ws, seed=seed,
                       initial_learning_rate=0.02, initial_noise_factor=0.0, progress=progress)
    dist = (net.prepare(r.images) - net.prepare(targets)).square().mean((1, 2, 3))
    return Projection(ws=r.ws.to(targets.device), noise=None, distance=dist, loss="mse")


def _encoder_supports(G, model: str = "world-encoder") -> bool:
    """True when `model`'s encoder was trained for exactly this generator (shape and weight fingerprint)."""
    meta = _encoder_meta(model)
    if not meta or (meta.get("num_ws"), meta.get("w_dim"), meta.get("resolution")) != (G.num_ws, G.w_dim,
                                                                                       G.resolution):
        return False
    from .io.files import fingerprint_matches

    return fingerprint_matches(meta.get("fingerprint"), G)


_encoder.supports = _encoder_supports

#: Inversion methods: name -> fn(G, targets [N, 3, R, R] in [-1, 1], **options) -> Projection.
#: An encoder result can also seed the projector through `project(..., init_ws=...)`. A function with a
#: `supports(G)` attribute is picked by `method="auto"` for the generators it serves.
METHODS: dict[str, Callable[..., Projection]] = {"projector": _projector, "restyle-psp": _restyle("psp"),
                                                 "restyle-e4e": _restyle("e4e"), "encoder": _encoder}


def auto_method(G) -> str:
    """'encoder' when an encoder was trained for this generator (the shipped world encoder), else 'projector'."""
    for name, fn in METHODS.items():
        supports = getattr(fn, "supports", None)
        if name != "projector" and callable(supports) and supports(G):
            return name
    return "projector"


def _targets(G, images: Sequence[ImageSource], *, align: bool, face_index: int | None, detector: str,
             max_pixels: int | None) -> tuple[list[Image.Image], list[AlignedFace | None]]:
    R = G.resolution
    crops, faces = [], []
    for image in images:
        if align:
            face = align_face(image, size=R, face_index=face_index, detector=detector, max_pixels=max_pixels)
            crops.append(face.image)
            faces.append(face)
        else:
            label = describe(image)
            im = load_image(image, max_pixels=max_pixels, name=label)
            if abs(im.width - im.height) > 1:
                raise InputError(f"{label}: {im.width}x{im.height} is not square; without alignment the input "
                                 f"must be an aligned face crop (drop --no-align to detect and align the face)")
            crops.append(im if im.size == (R, R) else im.resize((R, R), Image.LANCZOS))
            faces.append(None)
    return crops, faces


def invert_many(G, images: Sequence[ImageSource], *, method: str = "projector", align: bool = True,
                face_index: int | None = None, detector: str = "auto", max_pixels: int | None = None,
                **options) -> list[Inversion]:
    """Invert several photos in one batch; see `invert`."""
    if method == "auto":
        method = auto_method(G)
        if method == "projector":
            options = {k: v for k, v in options.items() if k not in ("n_iters", "refine_steps", "model")}
        else:
            options = {k: v for k, v in options.items() if k not in ("steps", "w_plus", "loss", "optimize_noise")}
    if method not in METHODS:
        raise InputError(f"unknown inversion method {method!r}; choose one of: auto, {', '.join(METHODS)}")
    if not images:
        return []
    crops, faces = _targets(G, images, align=align, face_index=face_index, detector=detector,
                            max_pixels=max_pixels)
    dev = G.w_avg.device
    targets = torch.cat([image_to_tensor(c) for c in crops]).to(dev)
    result = METHODS[method](G, targets, **options)
    with torch.no_grad():
        recon = synthesize(G, result.ws, result.noise)
    space = "W+" if options.get("w_plus", True) else "W"
    out = []
    for i, (crop, face) in enumerate(zip(crops, faces)):
        noise = [n[i:i + 1] for n in result.noise] if result.noise is not None else None
        details = {"space": space, "loss": result.loss, "distance": float(result.distance[i]),
                   "psnr": float(psnr(recon[i:i + 1], targets[i:i + 1])[0])}
        if "steps" in options:
            details["steps"] = int(options["steps"])
        out.append(Inversion(ws=result.ws[i:i + 1], image=crop, reconstruction=recon[i:i + 1], method=method,
                             aligned=face, noise=noise, details=details))
    return out


def invert(G, image: ImageSource, *, method: str = "projector", align: bool = True, face_index: int | None = None,
           detector: str = "auto", max_pixels: int | None = None, **options) -> Inversion:
    """Align the face in `image` and invert it into G's latent space.

    method: a key of `METHODS` ('projector'; options: steps, w_plus, loss, optimize_noise, seed, progress and
    the other `project` arguments. 'restyle-psp', 'restyle-e4e': model, n_iters; G must be the encoder's
    generator, e.g. stylegan2-ffhq. 'encoder': an encoder file trained for G, default the shipped
    world-encoder; model, n_iters, refine_steps), or 'auto' (the encoder made for G if any, else the
    projector; options of the other kind are dropped). align: False when `image` is already an aligned face crop.
    face_index, detector, max_pixels: as in `micromotion.align.align_face`.
    """
    return invert_many(G, [image], method=method, align=align, face_index=face_index, detector=detector,
                       max_pixels=max_pixels, **options)[0]


# ----------------------------------------------------------------------------------------------------------
# Latent files


LATENT_SUFFIXES = (".safetensors", ".pt", ".pth")


def check_latent_path(path: str | os.PathLike) -> Path:
    """Validate an output latent path before any work is done: known extension, existing folder."""
    path = Path(path)
    if path.suffix.lower() not in LATENT_SUFFIXES:
        raise InputError(f"{path}: unknown latent file extension {path.suffix!r}; use .safetensors (ws plus "
                         f"metadata and noise) or .pt (a plain ws tensor, as the original repository's files)")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist; create it first")
    return path


def save_latent(inversion: Inversion | torch.Tensor, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ws atomically. `.safetensors`: tensor `ws` (and `noise.{i}`), metadata with the method, the
    transform, quad and landmarks (JSON). `.pt`/`.pth`: the ws tensor `[N, num_ws, w_dim]` alone (float32,
    CPU; `torch.load` gives it back, as the original repository's latent files)."""
    path = check_latent_path(path)
    inv = inversion if isinstance(inversion, Inversion) else None
    ws = (inv.ws if inv is not None else inversion).detach().to("cpu", torch.float32).contiguous()
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        tensors = {"ws": ws}
        meta = {"format": LATENT_FORMAT, "version": str(LATENT_VERSION)}
        if inv is not None:
            meta.update(method=inv.method, resolution=str(inv.reconstruction.shape[-1]),
                        details=json.dumps(inv.details))
            for i, n in enumerate(inv.noise or []):
                tensors[f"noise.{i}"] = n.detach().to("cpu", torch.float32).contiguous()
            if inv.aligned is not None:
                a = inv.aligned
                meta.update(source=a.source, source_size=json.dumps(list(a.source_size)), aligned_size=str(a.size),
                            detector=a.detector, transform=json.dumps(inv.transform.tolist()),
                            quad=json.dumps(a.quad.tolist()), landmarks=json.dumps(a.landmarks.tolist()))
        meta.update({k: str(v) for k, v in (metadata or {}).items()})
        with atomic_output(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    else:
        if inv is not None and inv.noise is not None:
            log.warning("%s: a .pt latent holds ws only; the optimized noise maps are not saved (use .safetensors)",
                        path)
        with atomic_output(path) as tmp:
            torch.save(ws, tmp)
    return path


def load_latent(path: str | os.PathLike) -> tuple[torch.Tensor, dict]:
    """Read a latent file: ws `[N, num_ws, w_dim]` (a `[num_ws, w_dim]` tensor gets N=1) and its metadata
    (safetensors; noise maps, if any, under `meta['noise']`). Accepts our files and plain tensor files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such latent file; check the path")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable safetensors file ({e})") from None
        if "ws" not in tensors:
            raise InputError(f"{path}: no 'ws' tensor in this safetensors file; expected a micromotion latent")
        ws = tensors["ws"]
        noise = [tensors[f"noise.{i}"] for i in range(len(tensors)) if f"noise.{i}" in tensors]
        if noise:
            meta["noise"] = noise
    else:
        try:
            ws = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- torch raises many types for a bad file; all mean "unreadable"
            raise InputError(f"{path}: not a readable torch tensor file ({' '.join(str(e).split())[:200]})") from None
        meta = {}
        if isinstance(ws, dict):
            ws = ws.get("ws", ws.get("latent"))
        if not isinstance(ws, torch.Tensor):
            raise InputError(f"{path}: holds no ws tensor; expected a tensor [N, num_ws, w_dim]")
    if ws.ndim == 2:
        ws = ws.unsqueeze(0)
    if ws.ndim != 3:
        raise InputError(f"{path}: ws has shape {list(ws.shape)}; expected [N, num_ws, w_dim]")
    return ws.float(), meta
