"""Files written before the io/weights refactor (issue 20) keep loading, with identical results.

The files in tests/fixtures/formats/ were written once by the code of commit 833f549 (see make_fixtures.py
there) and are never regenerated: each test loads one with today's code and compares tensors, metadata and
derived results (a motion applied to latents, fingerprints, cache hits) with what that code recorded.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "formats"
EXPECTED = json.loads((FIX / "expected.json").read_text())


def _sha(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    return hashlib.sha256(f"{t.dtype}{list(t.shape)}".encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes()
                          ).hexdigest()


def _expected_tensors() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIX / "expected.safetensors"))


@pytest.fixture(scope="module")
def G():
    from micromotion.checkpoint import load_generator

    return load_generator(FIX / "generator.safetensors")


def _check_state(sd: dict, name: str, rename=lambda k: k, cast=None) -> None:
    want = EXPECTED["files"][name]["tensors"]
    got = {rename(k): _sha(v if cast is None or not v.is_floating_point() else v.to(cast)) for k, v in sd.items()}
    assert {k: got.get(k) for k in want} == want


def test_generator(G):
    _check_state(G.state_dict(), "generator.safetensors")
    meta = EXPECTED["files"]["generator.safetensors"]["metadata"]
    assert json.loads(meta["config"]) == G.cfg.to_dict()
    assert G.w_avg_source == meta["w_avg_source"]


def test_anchors():
    from micromotion.anchors import Anchors

    a = Anchors.load(FIX / "anchors.safetensors")
    meta = EXPECTED["files"]["anchors.safetensors"]["metadata"]
    assert _sha(a.latents) == EXPECTED["files"]["anchors.safetensors"]["tensors"]["anchors"]
    assert a.labels == json.loads(meta["labels"]) == ["start", "no", "50%", 1.5, 2]
    assert a.source == json.loads(meta["source"])


def test_motion_loads_and_applies_identically(G):
    from micromotion.decompose import Motion, load_motion

    m = Motion.load(FIX / "motion.safetensors", generator=G)  # the stored generator hash is accepted
    want = EXPECTED["files"]["motion.safetensors"]
    for k, h in want["tensors"].items():
        assert _sha(getattr(m, k).float()) == h, k
    assert m.meta.to_dict() == json.loads(want["metadata"]["meta"])
    exp = _expected_tensors()
    assert torch.equal(m.apply(exp["ws"], exp["strengths"]), exp["motion_apply"])
    assert torch.equal(m.apply(exp["ws"], exp["strengths"], generator=G), exp["motion_apply"])
    assert torch.equal(m.path(torch.tensor([0.0, 0.25, 1.0])), exp["motion_path"])
    m2 = load_motion(FIX / "motion.safetensors", G)
    assert torch.equal(m2.direction, m.direction)


def test_latents():
    from micromotion.invert import load_latent

    exp = _expected_tensors()["ws"]
    ws, meta = load_latent(FIX / "latent.safetensors")
    assert torch.equal(ws, exp)
    assert meta == EXPECTED["files"]["latent.safetensors"]["metadata"]
    ws_pt, meta_pt = load_latent(FIX / "latent.pt")
    assert torch.equal(ws_pt, exp) and meta_pt == {}


def test_encoder_pairs_with_its_generator_without_warning(G, caplog):
    from micromotion.models.encoder import load_encoder

    with caplog.at_level(logging.WARNING):
        net = load_encoder(FIX / "encoder.safetensors", G)
    assert not [r for r in caplog.records if "other weights" in r.getMessage()]
    sd = {**{f"encoder.{k}": v for k, v in net.encoder.state_dict().items()}, "latent_avg": net.latent_avg}
    _check_state(sd, "encoder.safetensors", cast=torch.float32)
    assert _sha(net.latent_avg.float()) == EXPECTED["files"]["encoder.safetensors"]["tensors"]["latent_avg"]
    gmeta = json.loads(EXPECTED["files"]["encoder.safetensors"]["metadata"]["generator"])
    assert gmeta["fingerprint"] == EXPECTED["fingerprints"]["models.encoder.generator_fingerprint"]


def test_clip_and_oracle():
    from micromotion.models.clip import Clip
    from micromotion.world.oracle import load_oracle

    clip = Clip.load(FIX / "clip.safetensors")
    sd = clip.model.state_dict()
    want = EXPECTED["files"]["clip.safetensors"]["tensors"]
    for k in ("ln_final.weight", "text_projection", "visual.proj"):
        if k in want:
            assert _sha(sd[k].half()) == want[k], k
    oracle = load_oracle(FIX / "oracle.safetensors")
    _check_state(oracle.state_dict(), "oracle.safetensors", cast=torch.float16)


def test_old_fingerprints_recorded(G):
    # the three hashes today's code computed for this generator (a later single fingerprint must accept them)
    fps = EXPECTED["fingerprints"]
    assert fps["decompose.generator_fingerprint"].startswith("sha256:")
    assert len(fps["models.encoder.generator_fingerprint"]) == 16
    assert len(fps["anchors.module_fingerprint"]) == 32
    from micromotion.decompose import generator_fingerprint

    assert generator_fingerprint(G) == fps["decompose.generator_fingerprint"]


def test_preset_cache_path_unchanged(G):
    from micromotion import presets

    # the folder is named by the fingerprint's first 16 hex digits: the same before and after the one fingerprint
    assert presets.cache_path("smile", G, "HOME") == presets.home("HOME") / EXPECTED["preset_cache_path"][len("HOME/"):]


def test_text_anchor_cache_entry_is_still_a_hit(G, tmp_path):
    from micromotion.anchors.text import TextAnchorSettings, text_anchors
    from micromotion.models.clip import Clip, ClipConfig

    clip = Clip.from_config(ClipConfig.tiny(), seed=0)
    if type(clip.model).__module__.split(".")[0] != "micromotion":
        pytest.skip("the fixture's cache key was made with micromotion's NativeClip (open_clip not installed)")
    with torch.no_grad():
        clip.model.logit_scale.fill_(math.log(100.0))
    shutil.copytree(FIX / "text_cache", tmp_path / "cache")
    old = EXPECTED["text_cache"]
    a = text_anchors(G, clip, "a person with {degree} smile", degrees=("no", "100%"), seed=5, arcface=None,
                     settings=TextAnchorSettings(steps=2), cache_dir=tmp_path / "cache", progress=False)
    assert a.source["cache_key"] == old["file"][len("text-"):-len(".safetensors")]  # the old file was used
    assert _sha(a.latents) == old["latents"]
