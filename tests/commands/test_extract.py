"""`micromotion extract` decides by the generator's profile, not by the --model string: the world generator
given as a file (its registry file or a copy) gets the world's CLIP, settings, start faces and re-inversion."""
from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

import micromotion.anchors.text as text_module
from micromotion.cli import main
from micromotion.presets import PRESETS
from micromotion.weights import cache_path
from micromotion.world.settings import TEXT_SEEDS, world_text_settings


class _Seen(Exception):
    pass


@pytest.fixture
def seen(monkeypatch):
    calls = []

    def fake(G, clip, template, *, seed=0, settings=None, arcface="auto", **kw):
        calls.append({"clip": getattr(clip, "name", None), "seed": seed, "settings": settings, "arcface": arcface,
                      "resolution": G.resolution})
        raise _Seen

    monkeypatch.setattr(text_module, "text_anchors", fake)
    return calls


@pytest.mark.parametrize("how", ["name", "registry file", "copy"])
def test_the_world_by_name_or_path_gets_the_world_profile(how, seen, tmp_path):
    model = {"name": lambda: "world", "registry file": lambda: str(cache_path("world")),
             "copy": lambda: str(shutil.copy(cache_path("world"), tmp_path / "my-world.safetensors"))}[how]()
    smile = PRESETS["smile"].template
    with pytest.raises(_Seen):
        CliRunner().invoke(main, ["extract", "--text", smile, "--model", model, "--device", "cpu", "--degrees",
                                  "no,100%", "-o", str(tmp_path / "a.safetensors")], catch_exceptions=False)
    (call,) = seen
    assert call["seed"] == TEXT_SEEDS["smile"]
    assert call["settings"] == world_text_settings(template=smile, clip_preprocess="correct", id_lambda=0.0)
    assert call["arcface"] is None and call["clip"] == "world-clip"
    # the world re-inverts its anchors with its encoder, which leaves out the start: one degree is refused
    r = CliRunner().invoke(main, ["extract", "--text", smile, "--model", model, "--device", "cpu", "--degrees",
                                  "100%", "-o", str(tmp_path / "b.safetensors")])
    assert r.exit_code == 2 and "at least 2 degrees" in r.output
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "b.safetensors").exists()


def test_other_generators_keep_the_paper_settings(seen, tmp_path):
    import torch

    from micromotion.checkpoint import save_generator
    from micromotion.models.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    path = save_generator(Generator(GeneratorConfig.tiny()), tmp_path / "tiny.safetensors")
    clip = cache_path("world-clip")  # any CLIP: the fake optimizer stops before it is used
    with pytest.raises(_Seen):
        CliRunner().invoke(main, ["extract", "--text", "a person with {degree} smile", "--model", str(path),
                                  "--clip", str(clip), "--arcface", "none", "--device", "cpu", "-o",
                                  str(tmp_path / "a.safetensors")], catch_exceptions=False)
    (call,) = seen
    assert call["seed"] == 0 and call["arcface"] is None
    assert call["settings"] == text_module.TextAnchorSettings(id_lambda=0.0)


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_extract_on_the_world_starts_a_preset_template_from_its_face(seen, tmp_path):
    smile = PRESETS["smile"].template
    base = ["--model", "world", "--device", "cpu", "--degrees", "no,100%", "-o"]
    with pytest.raises(_Seen):
        _run(["extract", "--text", smile, *base, str(tmp_path / "a.safetensors")])
    assert seen[-1]["seed"] == TEXT_SEEDS["smile"]
    with pytest.raises(_Seen):
        _run(["extract", "--text", smile, "--seed", "3", *base, str(tmp_path / "b.safetensors")])
    assert seen[-1]["seed"] == 3
    with pytest.raises(_Seen):
        _run(["extract", "--text", "a person with {degree} beard", *base, str(tmp_path / "c.safetensors")])
    assert seen[-1]["seed"] == 0  # the command's default for other templates
    assert not list(tmp_path.iterdir())


def test_text_identities_optimize_the_faces_after_the_first(monkeypatch, tmp_path):
    """`--identities 3`: three start faces (the first face's seed, then the next two) -> one anchors file with
    identity labels, which `motion decode` turns into the shared motion."""
    import torch

    from micromotion.anchors import Anchors

    seeds = []

    def fake(G, clip, template, *, seed=0, settings=None, **kw):
        seeds.append(seed)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, G.num_ws, G.w_dim, generator=g) * 3 + torch.linspace(0, 1, 3)[:, None, None]
        return Anchors(x, ["no", "50%", "100%"], {"kind": "text", "seed": seed})

    monkeypatch.setattr(text_module, "text_anchors", fake)
    out = tmp_path / "a.safetensors"
    r = CliRunner().invoke(main, ["extract", "--text", "a person with {degree} frown", "--model", "world",
                                  "--device", "cpu", "--seed", "5", "--identities", "3", "--reinvert", "none",
                                  "--no-preview", "--no-cache", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert seeds == [5, 6, 7] and "3 identities" in r.output
    a = Anchors.load(out)
    assert a.identities == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    r = CliRunner().invoke(main, ["motion", "decode", str(out), "-o", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 0 and "9 anchors of 3 identities (3, 3, 3), their shared motion" in r.output, r.output
    r = CliRunner().invoke(main, ["motion", "decode", str(out), "--times", "0,1,2,0,1,2,0,1,2", "-o",
                                  str(tmp_path / "t.safetensors")])
    assert r.exit_code == 1 and "each face's own times" in r.output


def test_several_clips_and_their_misuse(tmp_path):
    from micromotion.anchors import Anchors

    clips = []
    for seed in (12, 13):
        c = tmp_path / f"c{seed}.mp4"
        assert _run(["world", "clip", "--motion", "smile", "--seed", str(seed), "--frames", "8", "-o", str(c)]) \
            .exit_code == 0
        clips.append(str(c))
    out = tmp_path / "two.safetensors"
    r = CliRunner().invoke(main, ["extract", "--video", *clips, "--aligned", "-m", "world", "--steps", "1",
                                  "--max-frames", "3", "--device", "cpu", "-o", str(out)])
    assert r.exit_code == 0 and "2 identities" in r.output, r.output
    assert Anchors.load(out).identities == [0, 0, 0, 1, 1, 1]
    r = CliRunner().invoke(main, ["extract", "--video", clips[0], "--identities", "2", "-o",
                                  str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "--identities is for --text" in r.output
    r = CliRunner().invoke(main, ["extract", clips[0], "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "more clips go after --video" in r.output
    r = CliRunner().invoke(main, ["extract", "--video", clips[0], str(tmp_path / "missing.mp4"), "--aligned", "-m",
                                  "world", "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code != 0 and "missing.mp4" in r.output and not (tmp_path / "x.safetensors").exists()
