"""Inversion methods: the registry `METHODS` (the optimization projector, ReStyle encoders, an encoder trained
for one generator) and `resolve_method`, the one place the "auto" method is chosen for a generator.

A method is fn(G, targets [N, 3, R, R] in [-1, 1], **options) -> `Projection`. A function with a
`supports(G) -> bool` attribute serves the generators it says it does, and "auto" picks it for them; every
other generator gets the projector.
"""
from __future__ import annotations

import functools
import json
import os
import weakref
from typing import Callable

import torch

from ..errors import InputError
from .projector import Projection, project


def _projector(G, targets: torch.Tensor, *, steps: int = 1000, w_plus: bool = True, loss: str = "auto",
               optimize_noise: bool = False, seed: int = 0, progress: bool = True, **kw) -> Projection:
    return project(G, targets, steps=steps, w_plus=w_plus, loss=loss, optimize_noise=optimize_noise, seed=seed,
                   progress=progress, **kw)


@functools.lru_cache(maxsize=2)
def _restyle_net(model: str, device: str):
    from ..models.encoder import load_restyle

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
    cached per generator object. InputError naming both fingerprints when the file was trained for a
    generator with other weights (its codes would decode to other faces)."""
    from ..io.files import fingerprint_matches
    from ..models.encoder import generator_fingerprint, load_encoder
    from ..weights import resolve_model

    nets = _PAIRED.setdefault(G, {})
    key = (model, str(G.w_avg.device))
    if key not in nets:
        meta = _encoder_meta(model) or {}
        theirs = meta.get("fingerprint")
        same_shape = (meta.get("num_ws"), meta.get("w_dim"), meta.get("resolution")) == (G.num_ws, G.w_dim,
                                                                                         G.resolution)
        # another shape: load_encoder's error names the shapes; the same shape with other weights: both prints
        if theirs and same_shape and not fingerprint_matches(theirs, G):
            raise InputError(f"{model}: this encoder was trained for the generator {theirs}, not for this one "
                             f"({generator_fingerprint(G)}); pass the generator it was made for, train one for "
                             f"this generator (micromotion encoder train), or use --method projector")
        nets[key] = load_encoder(resolve_model(model, kind="encoder"), G)
    return nets[key]


def _encoder_meta(model: str) -> dict | None:
    """The `generator` block of an encoder file's metadata (resolution, num_ws, w_dim, fingerprint), or None."""
    from safetensors import safe_open

    from ..weights import resolve_model

    try:
        with safe_open(str(resolve_model(model, kind="encoder", download=False)), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("generator", "null"))
    except Exception:  # noqa: BLE001 -- a missing or unreadable file simply supports nothing
        return None


def shipped_encoders() -> list[str]:
    """The registry names of the encoders installed with micromotion (bundled entries that provide one)."""
    from ..weights.registry import REGISTRY

    return [s.name for s in REGISTRY.values() if s.kind == "bundled" and s.provides == "encoder"]


def encoder_for(G) -> str | None:
    """The shipped encoder trained for exactly this generator (shape and weight fingerprint), or None."""
    return next((name for name in shipped_encoders() if _encoder_supports(G, name)), None)


def _encoder(G, targets: torch.Tensor, *, model: str | os.PathLike | None = None, n_iters: int = 3,
             refine_steps: int = 0, progress: bool = True, seed: int = 0, **other) -> Projection:
    """An encoder trained for this generator (default: the shipped one made for it, `encoder_for`, e.g.
    `world-encoder` for the world model, `mobilestylegan-ffhq-1024-encoder` for the real-face model):
    `n_iters` ReStyle refinement steps, then optionally `refine_steps` projector steps from its codes.
    distance: MSE at the encoder's input size (or the projector's loss after refinement)."""
    if other:
        raise InputError(f"option {next(iter(other))!r} does not apply to the encoder method; it takes model, "
                         f"n_iters and refine_steps")
    if int(n_iters) < 1 or int(refine_steps) < 0:
        raise InputError(f"n_iters must be >= 1 and refine_steps >= 0, got {n_iters}, {refine_steps}")
    if model is None:
        model = encoder_for(G)
        if model is None:
            raise InputError(f"no encoder ships for this {G.resolution}x{G.resolution} generator (encoders here: "
                             f"{', '.join(shipped_encoders())}); pass an encoder file made for it (--encoder), "
                             f"train one (micromotion encoder train), or use --method projector")
    net = _paired_net(G, str(model))
    r = net.invert(targets.to(G.w_avg.device, torch.float32), n_iters=int(n_iters))
    if int(refine_steps) > 0:
        return project(G, targets, steps=int(refine_steps), w_plus=True, init_ws=r.ws, seed=seed,
                       initial_learning_rate=0.02, initial_noise_factor=0.0, progress=progress)
    dist = (net.prepare(r.images) - net.prepare(targets)).square().mean((1, 2, 3))
    return Projection(ws=r.ws.to(targets.device), noise=None, distance=dist, loss="mse",
                      images=r.images.to(targets.device))  # G's own render of ws: not rendered again


def _encoder_supports(G, model: str | None = None) -> bool:
    """True when `model`'s encoder (None: any shipped one) was trained for exactly this generator (shape and
    weight fingerprint)."""
    if model is None:
        return encoder_for(G) is not None
    meta = _encoder_meta(model)
    if not meta or (meta.get("num_ws"), meta.get("w_dim"), meta.get("resolution")) != (G.num_ws, G.w_dim,
                                                                                       G.resolution):
        return False
    from ..io.files import fingerprint_matches

    return fingerprint_matches(meta.get("fingerprint"), G)


_encoder.supports = _encoder_supports

#: Inversion methods: name -> fn(G, targets [N, 3, R, R] in [-1, 1], **options) -> Projection.
#: An encoder result can also seed the projector through `project(..., init_ws=...)`. A function with a
#: `supports(G)` attribute is picked by `method="auto"` for the generators it serves.
METHODS: dict[str, Callable[..., Projection]] = {"projector": _projector, "restyle-psp": _restyle("psp"),
                                                 "restyle-e4e": _restyle("e4e"), "encoder": _encoder}


def auto_method(G) -> str:
    """'encoder' when a shipped encoder was trained for this generator (the world's, the real-face model's),
    else 'projector'."""
    for name, fn in METHODS.items():
        supports = getattr(fn, "supports", None)
        if name != "projector" and callable(supports) and supports(G):
            return name
    return "projector"


def resolve_method(G, method: str) -> str:
    """`method` checked against `METHODS`, with "auto" resolved for `G` (`auto_method`). Raises InputError
    naming the choices for an unknown method. Every caller that takes "auto" goes through here."""
    if method == "auto":
        return auto_method(G)
    if method not in METHODS:
        raise InputError(f"unknown inversion method {method!r}; choose one of: auto, {', '.join(METHODS)}")
    return method
