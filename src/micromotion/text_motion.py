"""Text -> Motion, written once: the paper's text route (Sec. 3.1) with the generator's profile.

CLIP-guided anchors of a template at rising degrees (`anchors.text.text_anchors`), optionally inverted again
(`anchors.text.reinvert_anchors`, the start left out), then robustly decomposed (`Motion.from_anchors`). What
depends on the model — CLIP, optimization settings, start face, identity network, re-inversion — comes from
`profiles.profile_for(G)`; callers override any of it. `animate`, the world recipes, the web page and
`micromotion extract` all go through here.
"""
from __future__ import annotations

import logging

from .anchors import text as _text
from .profiles import Profile, profile_for

log = logging.getLogger(__name__)

__all__ = ["text_motion_anchors", "motion_from_text_anchors", "text_motion"]

PROFILE = "profile"  # sentinel: take the value from the generator's profile


def text_motion_anchors(G, template: str, *, clip=PROFILE, profile: Profile | None = None, seed: int | None = None,
                        default_seed: int = 1, settings: _text.TextAnchorSettings | None = None, arcface=PROFILE,
                        reinvert: str = "auto", progress: bool = False, **kw):
    """Anchors of `template` on `G` -> `Anchors` (re-inverted when the profile or `reinvert` says so).

    clip: a `Clip`, a CLIP registry name or file, or (default) the profile's. profile: default `profile_for(G)`.
    seed: the start face (default: the profile's for this template, else `default_seed`). settings: default
    the profile's for this template. arcface: an `ArcFace`, "auto", None, or the profile's. reinvert: an
    inversion method, "none", or "auto" (the profile's). Other keywords go to `anchors.text.text_anchors`
    (degrees, micro_batch, compile, cache, generator_name, ...).
    """
    _text.validate_template(template)
    profile = profile or profile_for(G)
    if seed is None:
        seed = profile.text_seed(template, default_seed)
    if settings is None:
        settings = profile.text_settings(template)
    if isinstance(arcface, str) and arcface == PROFILE:
        arcface = profile.arcface
    if reinvert == "auto":
        reinvert = profile.reinvert
    if isinstance(clip, str):
        from .models.clip import Clip

        clip = Clip.load(profile.clip if clip == PROFILE else clip, device=G.w_avg.device)
    anchors = _text.text_anchors(G, clip, template, seed=seed, arcface=arcface, settings=settings,
                                 progress=progress, **kw)
    if reinvert != "none":
        anchors = _text.reinvert_anchors(G, anchors, reinvert)
    return anchors


def motion_from_text_anchors(G, anchors, *, profile: Profile | None = None, name: str = "motion"):
    """Text anchors (from `text_motion_anchors`) robustly decoded into a `Motion` stamped for `G`."""
    from .decompose import Motion

    profile = profile or profile_for(G)
    return Motion.from_anchors(anchors, generator=G, generator_name=profile.motion_generator_name, name=name)


def text_motion(G, template: str, *, name: str | None = None, profile: Profile | None = None, **kw):
    """The `Motion` of `template` on `G`: `text_motion_anchors(G, template, **kw)` robustly decoded.
    Cached anchors make a rerun instant."""
    profile = profile or profile_for(G)
    anchors = text_motion_anchors(G, template, profile=profile, **kw)
    return motion_from_text_anchors(G, anchors, profile=profile, name=name or template)
