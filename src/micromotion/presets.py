"""The five micromotion presets: names, the paper's text templates, and where each model's motion comes from.

A preset resolves to a `Motion` for a given generator, looked up in this order:
1. the user's preset cache `<home>/presets/<generator hash>/<name>.safetensors` (written by
   `micromotion motion import-paper` / `micromotion presets import`, or computed from text anchors);
2. motions shipped with the package for the embedded world model (`data/world/presets/<name>.safetensors`);
3. for other models: computed on first use from the paper's text template (needs CLIP weights), then cached.

Strength is normalized per preset (`Preset.unit_norm`): strength 1 means "the full motion" for every preset,
so the same number gives a comparable amount of motion. The authors' published directions differ 83-fold in
norm (eyesClose 1.06 ... headsTurn 88.3), so each is rescaled to its preset's unit when imported.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .decompose import Motion, generator_fingerprint, load_motion
from .errors import InputError, MicromotionError
from .io.files import fingerprint_matches, home

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str  # our spelling
    paper_name: str  # the original code's category name
    template: str  # text template with {degree}
    seed: int  # identity seed of the text anchors (the original's default is 1)
    factor: str  # the world oracle's factor this motion moves
    unit_norm: float  # latent-offset norm of strength 1 for imported paper directions (FFHQ W+ units)


# Templates: the paper's README table; head turn is ours (the paper shows it but lists no template).
PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("smile", "smile", "a person with {degree} smile", 1, "smile", 10.0),
    Preset("angry", "angry", "{degree} angry", 1, "anger", 10.0),
    Preset("aging", "aging", "a {degree} old person with gray hair", 1, "age", 10.0),
    Preset("eyes_close", "eyesClose", "a person with eyes {degree} closed", 1, "eyes_closed", 10.0),
    Preset("head_turn", "headsTurn", "a person with head {degree} turned to the side", 1, "head_turn", 10.0),
]}
ALIASES = {p.paper_name: p.name for p in PRESETS.values()} | {"eyes_closed": "eyes_close", "head_turn": "head_turn",
                                                               "anger": "angry", "age": "aging"}


def canonical(name: str) -> str:
    """Our preset name for any accepted spelling; InputError listing the valid ones otherwise."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise InputError(f"unknown motion '{name}'; choose one of: {', '.join(PRESETS)} (the paper's eyesClose, "
                         f"headsTurn also work), or give a .safetensors motion file")
    return key


def packaged_dir() -> Path:
    return Path(__file__).parent / "data" / "world" / "presets"


def cache_path(name: str, G, cache_dir=None) -> Path:
    fp = generator_fingerprint(G).split(":")[-1][:16]
    return home(cache_dir) / "presets" / fp / f"{canonical(name)}.safetensors"


def normalize_to_unit(motion: Motion, unit_norm: float) -> Motion:
    """Rescale a motion so strength 1 moves the latents by `unit_norm` (Frobenius norm over W+)."""
    n = float(motion.direction.norm())
    if n == 0:
        raise InputError(f"motion '{motion.meta.name}' has a zero direction; it cannot be normalized")
    out = motion.scaled(unit_norm / n)
    out.meta.name = motion.meta.name
    out.meta.source = dict(motion.meta.source, normalized_to=unit_norm, original_norm=n)
    return out


def import_paper_direction(path: str | os.PathLike, G, name: str | None = None, cache_dir=None) -> Path:
    """Import one of the authors' direction files (`pregen_latents/<name>/d_latent`) as `G`'s preset."""
    path = Path(path)
    guess = name or (path.parent.name if path.stem == "d_latent" else path.stem)
    preset = PRESETS[canonical(guess)]
    motion = load_motion(path, generator=G, name=preset.name)
    motion = normalize_to_unit(motion, preset.unit_norm)
    out = cache_path(preset.name, G, cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    motion.save(out)
    log.info("imported %s as preset '%s' for %s", path, preset.name, motion.meta.generator_name)
    return out


def preset_motion(name: str, G, cache_dir=None, compute=None) -> Motion:
    """The `Motion` of preset `name` for generator `G` (see the module docstring for the lookup order).

    `compute(preset) -> Motion` is called when nothing is cached (e.g. text anchors with CLIP); its result is
    normalized and cached. Without it, a missing preset is an error that says how to make one.
    """
    preset = PRESETS[canonical(name)]
    cached = cache_path(preset.name, G, cache_dir)
    if cached.is_file():
        return load_motion(cached, generator=G)
    shipped = packaged_dir() / f"{preset.name}.safetensors"
    if shipped.is_file():
        m = load_motion(shipped)
        if fingerprint_matches(m.meta.generator_hash, G):
            return m
    how = (f"make one with `micromotion extract --text \"{preset.template}\" -o {preset.name}.safetensors` (needs "
           f"CLIP weights) or import the authors' direction with `micromotion presets import "
           f"pregen_latents/{preset.paper_name}/d_latent --model ...`")
    if compute is None:
        raise InputError(f"no '{preset.name}' motion for this generator yet; {how}")
    try:
        motion = compute(preset)
    except MicromotionError as e:
        raise InputError(f"no '{preset.name}' motion for this generator yet and it could not be computed from "
                         f"text ({e}); {how}") from None
    motion = normalize_to_unit(motion, preset.unit_norm) if motion.meta.source.get("kind") == "paper" else motion
    cached.parent.mkdir(parents=True, exist_ok=True)
    motion.save(cached)
    return motion


def resolve_motion(spec: str, G, cache_dir=None, compute=None) -> Motion:
    """A preset name (any accepted spelling) or a motion file path -> `Motion` checked against `G`."""
    p = Path(spec)
    if p.suffix in (".safetensors", ".pt") or p.name == "d_latent" or p.is_file():
        if not p.is_file():
            raise InputError(f"{p}: no such motion file")
        m = load_motion(p, generator=G)
        if m.meta.source.get("kind") == "paper" or m.meta.direction_kind == "file" and p.suffix != ".safetensors":
            key = ALIASES.get(m.meta.name, m.meta.name)
            if key in PRESETS:
                m = normalize_to_unit(m, PRESETS[key].unit_norm)
        return m
    return preset_motion(spec, G, cache_dir, compute)


def strengths(frames: int, strength: float, loop: bool = False) -> torch.Tensor:
    """t·S for t from 0 to 1 inclusive (the original stops at 0.99); with `loop`, there and back."""
    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    if loop:
        t = 1 - (2 * t - 1).abs()
    return t * strength
