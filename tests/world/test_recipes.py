"""The world's recipes (`world/recipes.py`) and their text settings and start faces (`world/settings.py`)."""
from __future__ import annotations

import pytest


def test_world_text_settings_follow_the_preset_of_a_template():
    from micromotion.presets import PRESETS
    from micromotion.world.recipes import WORLD_SETTINGS, world_text_settings

    head = world_text_settings(template=PRESETS["head_turn"].template)
    assert head.image_lambda == 1.0 and head.steps == WORLD_SETTINGS.steps  # moves the whole face
    smile = world_text_settings(template=PRESETS["smile"].template)
    assert (smile.image_lambda, smile.steps, smile.l2_lambda) == (3.0, 100, 0.002)
    assert world_text_settings(template=PRESETS["angry"].template) == WORLD_SETTINGS
    assert world_text_settings(template="a person with {degree} beard") == WORLD_SETTINGS
    assert world_text_settings("head_turn", steps=5).steps == 5


def test_world_text_seed_follows_the_preset_of_a_template():
    from micromotion.presets import PRESETS
    from micromotion.world.recipes import TEXT_SEEDS, world_text_seed

    assert world_text_seed(PRESETS["smile"].template) == TEXT_SEEDS["smile"] == 53
    assert world_text_seed(PRESETS["head_turn"].template) == TEXT_SEEDS["head_turn"]
    assert world_text_seed(PRESETS["angry"].template) == 1  # no start face moves anger: the original's
    assert world_text_seed("a person with {degree} beard") == 1
    assert world_text_seed("a person with {degree} beard", default=0) == 0


class _Seen(Exception):
    pass


def _capture_seed(monkeypatch, module):
    seen = {}

    def fake(G, clip, template, *, seed=0, **kw):
        seen["seed"], seen["template"] = seed, template
        raise _Seen

    monkeypatch.setattr(module, "text_anchors", fake)
    return seen


def test_world_text_motion_starts_from_the_chosen_face(monkeypatch):
    import micromotion.anchors.text as text_module
    import micromotion.world.recipes as wp
    from micromotion.presets import PRESETS

    seen = _capture_seed(monkeypatch, text_module)
    with pytest.raises(_Seen):
        wp.world_text_motion(None, None, PRESETS["smile"].template)
    assert seen["seed"] == wp.TEXT_SEEDS["smile"]
    with pytest.raises(_Seen):
        wp.world_text_motion(None, None, PRESETS["smile"].template, seed=7)  # an explicit seed wins
    assert seen["seed"] == 7
    with pytest.raises(_Seen):
        wp.world_text_motion(None, None, "a person with {degree} beard")
    assert seen["seed"] == 1


def test_build_text_presets_start_from_the_chosen_faces(monkeypatch, tmp_path):
    import micromotion.world.recipes as wp

    seen = []

    def fake(G, clip, template, *, seed=None, name=None, **kw):
        seen.append((name, seed))
        raise _Seen

    monkeypatch.setattr(wp, "world_text_motion", fake)
    for name in ("smile", "angry"):
        with pytest.raises(_Seen):
            wp.build_presets(tmp_path / "p", names=[name], source="text", progress=False)
    assert seen == [("smile", wp.TEXT_SEEDS["smile"]), ("angry", 1)]
    assert not list((tmp_path / "p").iterdir())  # nothing written
