"""Per-model profiles: what differs between generators, in one place.

A `Profile` says, for one generator: which CLIP reads its faces, how text anchors are optimized on it (settings,
start face, identity network, re-inversion), which encoders invert photos into it, whether photos are aligned
for it, where its shipped presets are. Shells never compare model names; they ask `profile_for(G)`.

A generator is recognised by the registry name it was loaded from (`generators.load_generator` records it,
also for the registry's own file given by its path), else by its weights' fingerprint (a copy of the world
generator elsewhere on disk); other generators get `STYLEGAN2`, the paper's FFHQ-like settings.

To add a model: a `Profile` in `PROFILES` (and its registry name in `AUTO_MODELS` if `--model auto` may pick it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .anchors.text import TextAnchorSettings
from .errors import InputError, MicromotionError
from .presets import packaged_dir

log = logging.getLogger(__name__)


def generator_fingerprint(G) -> str:
    """The fingerprint profiles compare (the one call to it in this module, so it can be swapped in one place)."""
    from .io.files import fingerprint

    return fingerprint(G)


def _paper_text_settings(template: str | None = None, **changes) -> TextAnchorSettings:
    return replace(TextAnchorSettings(), **changes)


def _default_seed(template: str, default: int = 1) -> int:
    return default


def _world_text_settings(template: str | None = None, **changes) -> TextAnchorSettings:
    from .world.settings import world_text_settings

    return world_text_settings(template=template, **changes)


def _world_text_seed(template: str, default: int = 1) -> int:
    from .world.settings import world_text_seed

    return world_text_seed(template, default)


@dataclass(frozen=True)
class Profile:
    name: str  # for logs and messages only; nothing compares it
    models: tuple[str, ...] = ()  # registry names of generators that have this profile
    clip: str = "clip-vit-b-32"  # CLIP of text anchors (registry name)
    align: bool = True  # photos are FFHQ-aligned before inversion (False: the model's faces are already crops)
    arcface: str | None = "auto"  # identity network of text anchors: "auto" (arcface-ir-se50 if cached) or None
    reinvert: str = "none"  # text anchors inverted again with this method ("none": kept as optimized)
    encoders: tuple[tuple[str, str], ...] = ()  # (inversion method, registry entry), first cached one is used
    motion_generator_name: str | None = None  # generator name stamped on motions made for it (None: G's label)
    text_settings: Callable[..., TextAnchorSettings] = field(default=_paper_text_settings, repr=False)
    #: (template, **changes) -> TextAnchorSettings
    text_seed: Callable[..., int] = field(default=_default_seed, repr=False)  # (template, default) -> start face
    fingerprint_of: str | None = None  # registry name of a cheap-to-load generator to match by fingerprint
    measure: str | None = None  # how `evaluate` reads its faces: "oracle" (the world's factors), "landmarks"
    #                             (real faces); None: by resolution (evaluate.resolve_measure)
    shipped_presets: Path | None = None  # folder of preset motions shipped for it (`presets.preset_motion` checks
    #                                      each file's generator fingerprint before using it)
    shape: tuple[int, int, int] | None = None  # (resolution, num_ws, w_dim) of `fingerprint_of`: other shapes are
    #                                            not it, so its weights are not even loaded to compare

    def inversion_method(self, G, refine_steps: int = 0) -> tuple[str, dict]:
        """The inversion method for photos into `G`: an encoder trained for exactly this generator, else the
        profile's first cached encoder, else the projector -> (method, options)."""
        from .invert import auto_method
        from .weights import resolve

        if auto_method(G) == "encoder":
            return "encoder", {"refine_steps": int(refine_steps)}
        for method, entry in self.encoders:
            try:
                resolve(entry, download=False)
                return method, {"model": entry}
            except MicromotionError:
                pass
        return "projector", {}


#: The paper's settings: any StyleGAN2 not known otherwise (FFHQ-like photos).
STYLEGAN2 = Profile("stylegan2")
FFHQ = Profile("stylegan2-ffhq", models=("stylegan2-ffhq-1024",), measure="landmarks",
               encoders=(("restyle-psp", "restyle-psp-ffhq"), ("restyle-e4e", "restyle-e4e-ffhq")))
#: The face world (docs/world.md): its own CLIP, renders that are already aligned crops, no identity network
#: knows its faces (an image-space term instead, world/settings.py), anchors re-inverted with its encoder.
WORLD = Profile("world", models=("world",), clip="world-clip", align=False, arcface=None, reinvert="encoder",
                motion_generator_name="world", text_settings=_world_text_settings, text_seed=_world_text_seed,
                fingerprint_of="world", measure="oracle", shipped_presets=packaged_dir())

#: MobileStyleGAN FFHQ-1024 (random-face on PyPI): a student of StyleGAN2 FFHQ sharing its W space, so FFHQ's CLIP
#: and landmark measures; photos aligned; photos and video frames inverted by its shipped encoder, which
#: `invert.auto_method` finds by fingerprint (no entry in `encoders` needed); presets shipped for its 23 W+ rows.
MOBILESTYLEGAN = Profile("mobilestylegan-ffhq", models=("mobilestylegan-ffhq-1024",), clip=FFHQ.clip,
                         measure="landmarks", fingerprint_of="mobilestylegan-ffhq-1024", shape=(1024, 23, 512),
                         shipped_presets=Path(__file__).parent / "data" / "mobilestylegan" / "presets")

PROFILES: tuple[Profile, ...] = (WORLD, FFHQ, MOBILESTYLEGAN)
#: `--model auto` takes the first of these that can be used without network: the official FFHQ generator when
#: cached, else MobileStyleGAN (random-face installed, or converted in the cache), else the shipped world.
AUTO_MODELS: tuple[str, ...] = ("stylegan2-ffhq-1024", "mobilestylegan-ffhq-1024", "world")


_FINGERPRINTS: dict[str, tuple[tuple[int, int, int], str]] = {}


def _known_fingerprint(name: str) -> tuple[tuple[int, int, int], str] | None:
    """((resolution, num_ws, w_dim), fingerprint) of registry generator `name` if it is here, else None
    (remembered once found)."""
    if name not in _FINGERPRINTS:
        from .generators import load_generator
        from .weights import available

        try:
            if not available(name):  # never downloads to compare
                return None
            G = load_generator(name)
        except MicromotionError:
            return None
        _FINGERPRINTS[name] = (G.resolution, G.num_ws, G.w_dim), generator_fingerprint(G)
    return _FINGERPRINTS[name]


def profile_for(G) -> Profile:
    """The profile of generator `G` (see the module docstring); `STYLEGAN2` for generators not known."""
    name = getattr(G, "registry_name", None)
    for p in PROFILES:
        if name is not None and name in p.models:
            return p
    fp = None
    for p in PROFILES:
        if p.shape is not None and p.shape != (G.resolution, G.num_ws, G.w_dim):
            continue
        known = _known_fingerprint(p.fingerprint_of) if p.fingerprint_of else None
        if known is None or known[0] != (G.resolution, G.num_ws, G.w_dim):
            continue  # shapes differ: not this generator, nothing hashed
        fp = fp or generator_fingerprint(G)
        if fp == known[1]:
            return p
    return STYLEGAN2


def model_available(name: str) -> bool:
    """`name` can be loaded without network: a cached file that verifies, or (package entries such as
    MobileStyleGAN) its package's files to convert. What `auto_model` asks of each of `AUTO_MODELS`."""
    from .weights import available, get_spec, resolve

    try:
        if get_spec(name).package is not None:
            return available(name)
        resolve(name, download=False)
        return True
    except MicromotionError:
        return False


def auto_model() -> str:
    """The first model of `AUTO_MODELS` that is here (nothing downloaded); InputError if none is."""
    for name in AUTO_MODELS:
        if model_available(name):
            return name
    raise InputError("no model to use: the FFHQ generator is not cached (`micromotion weights download "
                     "stylegan2-ffhq-1024`), random-face is not installed (`micromotion weights download "
                     "mobilestylegan-ffhq-1024`) and the bundled world generator is missing from this "
                     "installation; or pass --model FILE")
