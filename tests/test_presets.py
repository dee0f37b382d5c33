"""`presets.transfer_risk`: a one-face motion's size next to the shipped preset of the same motion."""
from __future__ import annotations

import pytest
import torch

from micromotion.anchors import Anchors
from micromotion.decompose import Motion, load_motion
from micromotion.presets import RISK_RATIO, packaged_dir, shipped_dirs, transfer_risk

from motion_helpers import _one_thread, synthetic_anchors, tiny_generator  # noqa: F401


def _motion(G, scale: float, name: str = "smile", seed: int = 40) -> Motion:
    """A motion of tiny generator G whose direction is `scale` times the preset's of `_preset`."""
    d = torch.nn.functional.normalize(torch.randn(G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(seed)),
                                      dim=(0, 1)) * 3.0 * scale
    return Motion.from_direction(d, name=name, generator=G, source={"kind": "video"})


@pytest.fixture
def G():
    return tiny_generator(0, name="tiny")


@pytest.fixture
def folder(tmp_path, G):
    """A shipped-presets folder of the tiny generator: 'smile' with direction norm 3."""
    _motion(G, 1.0, seed=41).save(tmp_path / "smile.safetensors")
    return tmp_path


@pytest.mark.parametrize("scale, level", [(0.45, "high"), (0.69, "high"), (0.71, "low"), (1.3, "low")])
def test_flags_motions_smaller_than_the_threshold(G, folder, scale, level):
    r = transfer_risk(_motion(G, scale), folders=[folder])
    assert r["level"] == level and r["preset"] == "smile" and r["threshold"] == RISK_RATIO == 0.7
    assert r["ratio"] == pytest.approx(scale, rel=1e-5)


def test_a_decoded_one_face_motion_is_compared_by_its_norm(G, folder):
    anchors, _ = synthetic_anchors(K=6, num_ws=G.num_ws, w_dim=G.w_dim, amp=1.0, seed=42)
    m = Motion.from_anchors(anchors, generator=G, name="smile")
    r = transfer_risk(m, folders=[folder])
    assert r["ratio"] == pytest.approx(float(m.direction.norm()) / 3.0, rel=1e-5)
    assert r["level"] == ("high" if r["ratio"] < 0.7 else "low")


def test_spellings_of_the_preset_name_are_accepted(G, tmp_path):
    _motion(G, 1.0, name="head_turn", seed=43).save(tmp_path / "head_turn.safetensors")
    r = transfer_risk(_motion(G, 0.5, name="headsTurn"), folders=[tmp_path])
    assert (r["level"], r["preset"]) == ("high", "head_turn")


def test_unknown_without_a_preset_to_compare_with(G, folder):
    other = tiny_generator(1, name="other")
    cases = {
        "no preset is named 'wink'": _motion(G, 0.3, name="wink"),
        "no shipped 'smile' preset": _motion(other, 0.3),  # another generator's motion: the preset is not its
        "no shipped 'angry' preset": _motion(G, 0.3, name="angry"),  # no such file in the folder
        "no generator fingerprint": Motion.from_direction(_motion(G, 0.3).direction, name="smile"),
    }
    for reason, m in cases.items():
        r = transfer_risk(m, folders=[folder])
        assert r["level"] == "unknown" and r["ratio"] is None and reason in r["reason"], (reason, r)


def test_unknown_for_a_motion_shared_by_several_faces(G, folder):
    sets = [Anchors(synthetic_anchors(K=4, num_ws=G.num_ws, w_dim=G.w_dim, amp=0.5, seed=s)[0], [0, 1, 2, 3],
                    {"kind": "video"}) for s in (44, 45)]
    for name in ("smile", "shared"):  # whatever its name: renaming would not make the rule apply
        m = Motion.from_anchors(Anchors.concat(sets), generator=G, name=name)
        r = transfer_risk(m, folders=[folder])
        assert r["level"] == "unknown" and "shared by 2 faces" in r["reason"], r


def test_the_shipped_world_presets_are_the_default_reference():
    smile = load_motion(packaged_dir() / "smile.safetensors")
    r = transfer_risk(smile)
    assert (r["level"], r["preset"]) == ("low", "smile") and r["ratio"] == pytest.approx(1.0)
    half = Motion.from_direction(smile.direction * 0.5, name="smile", source={"kind": "video"})
    half.meta.generator_hash = smile.meta.generator_hash
    assert transfer_risk(half)["level"] == "high"
    others = [d for d in shipped_dirs() if d != packaged_dir() and (d / "smile.safetensors").is_file()]
    for d in others:  # other models' presets are not what the rule was measured against
        assert transfer_risk(load_motion(d / "smile.safetensors"))["level"] == "unknown"
