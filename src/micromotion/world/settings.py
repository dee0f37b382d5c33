"""The world model's text-anchor settings and start faces: data read by its profile (`micromotion.profiles`)
and by the recipes that build its presets (`world/recipes.py`, whose docstring says how they were chosen).

Kept apart from the recipes so that `profiles` (below the text route) can read them without importing the
code that runs the text route.
"""
from __future__ import annotations

from dataclasses import replace

from ..anchors.text import TextAnchorSettings
from ..presets import PRESETS

__all__ = ["WORLD_SETTINGS", "TEXT_SEEDS", "world_text_settings", "world_text_seed", "template_factor"]

WORLD_SETTINGS = TextAnchorSettings(steps=60, lr=0.1, l2_lambda=0.004, image_lambda=10.0, id_lambda=0.0)
# Per motion factor, changes to WORLD_SETTINGS. Smile: chosen on validation faces from a grid of image weight,
# steps and l2 (`micromotion world pick-start-faces --route text --motion smile --candidates 53 --settings ...`):
# more steps with a weaker image term and pull to the start let the smile open further without drift. Head turn
# moves the whole face, which a strong image term resists: a weak one. Its validation pick did not hold up on
# the CPU, so it keeps the earlier setting (docs/results.md, "World text route").
_FACTOR_SETTINGS = {"smile": {"image_lambda": 3.0, "steps": 100, "l2_lambda": 0.002},
                    "head_turn": {"image_lambda": 1.0}}
#: Start face of each motion factor's text anchors, chosen by `micromotion world pick-start-faces --route text`
#: on validation faces for the shipped encoder (searched ranges and numbers: docs/results.md, "Start faces");
#: other factors: 1. No start face moves anger: the world CLIP's "{degree} angry" does nothing from any of them.
TEXT_SEEDS = {"smile": 53, "age": 28, "eyes_closed": 34, "head_turn": 103}


def world_text_settings(factor: str | None = None, *, template: str | None = None, **changes) -> TextAnchorSettings:
    """The world's text-anchor settings for a motion factor, or for the preset whose template is `template`
    (`WORLD_SETTINGS` with that factor's `_FACTOR_SETTINGS`; other templates get `WORLD_SETTINGS`)."""
    if factor is None and template is not None:
        factor = template_factor(template)
    return replace(WORLD_SETTINGS, **{**_FACTOR_SETTINGS.get(factor, {}), **changes})


def template_factor(template: str) -> str | None:
    """The oracle factor of the preset whose template is `template`, else None."""
    return next((p.factor for p in PRESETS.values() if p.template == template), None)


def world_text_seed(template: str, default: int = 1) -> int:
    """The start face for text anchors of `template` on the world: the `TEXT_SEEDS` entry of the preset whose
    template this is, else `default`."""
    return TEXT_SEEDS.get(template_factor(template), default)
