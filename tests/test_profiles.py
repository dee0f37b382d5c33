"""`micromotion.profiles`: one profile per model, found by registry name or by the weights' fingerprint."""
from __future__ import annotations

import shutil

import pytest
import torch

from micromotion import profiles
from micromotion.anchors.text import TextAnchorSettings
from micromotion.errors import InputError
from micromotion.generators import load_generator
from micromotion.models.stylegan2 import Generator, GeneratorConfig
from micromotion.presets import PRESETS
from micromotion.profiles import FFHQ, STYLEGAN2, WORLD, auto_model, profile_for
from micromotion.weights import cache_path
from micromotion.world.settings import TEXT_SEEDS, world_text_settings


def test_the_world_is_recognised_by_name_path_and_weights(tmp_path):
    assert profile_for(load_generator("world")) is WORLD
    assert profile_for(load_generator(cache_path("world"))) is WORLD
    copy = shutil.copy(cache_path("world"), tmp_path / "renamed.safetensors")
    assert profile_for(load_generator(copy)) is WORLD  # by fingerprint


def test_other_generators_get_the_paper_settings():
    G = Generator(GeneratorConfig.tiny())
    assert profile_for(G) is STYLEGAN2
    G128 = Generator(GeneratorConfig(resolution=128, z_dim=256, w_dim=256, mapping_layers=2,
                                     channels={2 ** i: 8 for i in range(2, 8)}))
    assert profile_for(G128) is STYLEGAN2  # the world's shape is not enough


def test_ffhq_by_its_registry_name():
    G = Generator(GeneratorConfig.tiny())
    G.registry_name = "stylegan2-ffhq-1024"
    assert profile_for(G) is FFHQ
    assert ("restyle-psp", "restyle-psp-ffhq") in FFHQ.encoders


def test_what_the_profiles_say():
    smile = PRESETS["smile"].template
    assert (WORLD.clip, WORLD.align, WORLD.arcface, WORLD.reinvert, WORLD.measure) == (
        "world-clip", False, None, "encoder", "oracle")
    assert FFHQ.measure == "landmarks" and STYLEGAN2.measure is None
    assert (STYLEGAN2.clip, STYLEGAN2.align, STYLEGAN2.arcface, STYLEGAN2.reinvert) == (
        "clip-vit-b-32", True, "auto", "none")
    assert WORLD.text_settings(smile) == world_text_settings(template=smile)
    assert WORLD.text_settings(smile, steps=7).steps == 7
    assert WORLD.text_seed(smile, 0) == TEXT_SEEDS["smile"] and WORLD.text_seed("a {degree} hat", 0) == 0
    assert STYLEGAN2.text_settings(smile) == TextAnchorSettings()
    assert STYLEGAN2.text_seed(smile, 1) == 1


def test_inversion_methods():
    assert WORLD.inversion_method(load_generator("world"), refine_steps=3) == ("encoder", {"refine_steps": 3})
    assert STYLEGAN2.inversion_method(Generator(GeneratorConfig.tiny())) == ("projector", {})


def test_inversion_uses_a_cached_encoder_of_the_profile(monkeypatch):
    import micromotion.weights as W

    def resolve(name, download=True, **kw):
        if name != "restyle-e4e-ffhq":
            raise W.WeightsError("not cached")
        return name

    monkeypatch.setattr(W, "resolve", resolve)
    assert FFHQ.inversion_method(Generator(GeneratorConfig.tiny())) == ("restyle-e4e", {"model": "restyle-e4e-ffhq"})


def test_auto_model(monkeypatch, tmp_path):
    import micromotion.weights.cache as W
    from weights_helpers import hide_random_face

    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    hide_random_face(monkeypatch)
    assert auto_model() == "world"  # FFHQ not cached here, random-face absent
    monkeypatch.setattr(W, "_bundled_path", lambda spec: tmp_path / "not-installed" / spec.filename)
    with pytest.raises(InputError, match="micromotion weights download stylegan2-ffhq-1024"):
        auto_model()


def test_the_fingerprint_is_computed_in_one_place(monkeypatch):
    calls = []
    real = profiles.generator_fingerprint
    monkeypatch.setattr(profiles, "generator_fingerprint", lambda G: calls.append(1) or real(G))
    monkeypatch.setattr(profiles, "_FINGERPRINTS", {})
    G = load_generator(cache_path("world"))
    G.registry_name = None
    assert profile_for(G) is WORLD and len(calls) == 2  # the bundled world's, then G's
    assert profile_for(Generator(GeneratorConfig.tiny())) is STYLEGAN2 and len(calls) == 2  # shapes differ
    torch.testing.assert_close(G.w_avg, load_generator("world").w_avg)


# ----------------------------------------------------------------------------------------------------------
# MobileStyleGAN (the random-face model) and `--model auto`


def test_mobilestylegan_profile():
    from micromotion.models.mobilestylegan import Generator as MSG, MobileStyleGANConfig
    from micromotion.profiles import MOBILESTYLEGAN

    G = MSG(MobileStyleGANConfig.tiny())
    G.registry_name = "mobilestylegan-ffhq-1024"
    assert profile_for(G) is MOBILESTYLEGAN
    assert MOBILESTYLEGAN.align and MOBILESTYLEGAN.clip == FFHQ.clip and MOBILESTYLEGAN.measure == "landmarks"
    assert MOBILESTYLEGAN.encoders == () and MOBILESTYLEGAN.inversion_method(G) == ("projector", {})
    assert MOBILESTYLEGAN.shipped_presets.parts[-3:] == ("data", "mobilestylegan", "presets")
    assert MOBILESTYLEGAN.shipped_presets.parent.parent.parent == profiles.Path(profiles.__file__).parent


def test_mobilestylegan_by_fingerprint_and_shapes_first(monkeypatch):
    """A copy of the converted file elsewhere is known by its weights; other shapes never load it."""
    from micromotion.models.mobilestylegan import Generator as MSG, MobileStyleGANConfig
    from micromotion.profiles import MOBILESTYLEGAN

    G = MSG(MobileStyleGANConfig.tiny())
    loaded = []

    def known(name):
        loaded.append(name)
        return ((G.resolution, G.num_ws, G.w_dim), profiles.generator_fingerprint(G)) if name == \
            "mobilestylegan-ffhq-1024" else None

    monkeypatch.setattr(profiles, "_known_fingerprint", known)
    p = profiles.replace(MOBILESTYLEGAN, shape=(G.resolution, G.num_ws, G.w_dim))
    monkeypatch.setattr(profiles, "PROFILES", (WORLD, FFHQ, p))
    assert profile_for(G) is p
    monkeypatch.setattr(profiles, "PROFILES", (WORLD, FFHQ, MOBILESTYLEGAN))  # its real shape: [23, 512] at 1024²
    loaded.clear()
    G.registry_name = None
    assert profile_for(G) is STYLEGAN2 and "mobilestylegan-ffhq-1024" not in loaded


def test_known_fingerprint_never_downloads(monkeypatch):
    import micromotion.weights as W

    monkeypatch.setattr(profiles, "_FINGERPRINTS", {})
    monkeypatch.setattr(W, "available", lambda name, cache_dir=None: False)
    monkeypatch.setattr(profiles, "generator_fingerprint", lambda G: pytest.fail("nothing to load"))
    assert profiles._known_fingerprint("mobilestylegan-ffhq-1024") is None


@pytest.mark.parametrize("here,expected", [
    ({"stylegan2-ffhq-1024", "mobilestylegan-ffhq-1024", "world"}, "stylegan2-ffhq-1024"),
    ({"mobilestylegan-ffhq-1024", "world"}, "mobilestylegan-ffhq-1024"),
    ({"world"}, "world"),
])
def test_auto_model_order(monkeypatch, here, expected):
    monkeypatch.setattr(profiles, "model_available", lambda name: name in here)
    assert auto_model() == expected


def test_auto_model_takes_installed_random_face(monkeypatch, tmp_path):
    """With nothing cached, the installed random-face makes MobileStyleGAN the choice (nothing is converted to
    decide)."""
    import micromotion.weights.package as package

    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    monkeypatch.setattr(package, "find_installed", lambda pkg: {n: tmp_path / n for n in pkg.files})
    monkeypatch.setattr(package, "_convert", lambda *a: pytest.fail("auto_model must not convert"))
    assert auto_model() == "mobilestylegan-ffhq-1024"
    assert not (tmp_path / "weights").exists()
