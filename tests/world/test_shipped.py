"""The models shipped for the face world: generator, CLIP, encoder and presets load offline and work."""
import math

import pytest
import torch

from micromotion import load_generator
from micromotion.errors import WeightsError
from micromotion.invert import METHODS, auto_method
from micromotion.models.clip import Clip
from micromotion.models.stylegan2 import Generator, GeneratorConfig
from micromotion.presets import PRESETS, preset_motion
from micromotion.weights import resolve_model
from micromotion.world import render, sample_factors


@pytest.fixture(scope="module")
def G():
    return load_generator("world")


def test_registry_names_their_kind():
    assert resolve_model("world", kind="generator").name == "world.safetensors"
    assert resolve_model("world-clip", kind="clip").name == "world-clip.safetensors"
    assert resolve_model("world-encoder", kind="encoder").name == "world-encoder.safetensors"
    with pytest.raises(WeightsError, match="is a clip model, a generator is needed"):
        resolve_model("world-clip", kind="generator")


def test_generator_samples_on_cpu(G):
    assert (G.resolution, G.num_ws, G.w_dim) == (128, 12, 256)
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), truncation_psi=0.7,
                noise_mode="const")
    assert img.shape == (2, 3, 128, 128) and torch.isfinite(img).all()
    assert img.std() > 0.1  # a picture, not a flat field


def _renders(n=6, seed=11, **fixed):
    f = sample_factors(n, generator=torch.Generator().manual_seed(seed))
    return render(f.replace(**fixed) if fixed else f, size=128)


def test_encoder_inverts_fresh_renders(G):
    assert auto_method(G) == "encoder"
    x = _renders()
    r = METHODS["encoder"](G, x, progress=False)
    with torch.no_grad():
        y = G.synthesis(r.ws, noise_mode="const").clamp(-1, 1)
    psnr = 10 * math.log10(4 / float((y - x).square().mean()))
    assert psnr > 21, psnr  # well under its held-out PSNR on renders (docs/results.md): 6 faces, not 128


def test_encoder_codes_refined_by_the_projector(G):
    x = _renders(2, seed=12)
    enc = METHODS["encoder"](G, x, progress=False)
    ref = METHODS["encoder"](G, x, refine_steps=30, progress=False)
    assert not torch.equal(enc.ws, ref.ws)
    with torch.no_grad():
        err = [float((G.synthesis(w, noise_mode="const").clamp(-1, 1) - x).square().mean()) for w in (enc.ws, ref.ws)]
    assert err[1] < err[0]  # refinement fits the photo better


def test_encoder_for_a_foreign_generator_is_one_clear_error():
    from micromotion.errors import CheckpointError

    torch.manual_seed(0)
    tiny = Generator(GeneratorConfig.tiny(16)).eval()
    from micromotion.errors import InputError

    with pytest.raises(CheckpointError, match="W\\+ codes"):  # the world's encoder named for another generator
        METHODS["encoder"](tiny, torch.zeros(1, 3, 16, 16), model="world-encoder", progress=False)
    with pytest.raises(InputError, match="no encoder ships for this 16x16 generator"):  # none named, none fits
        METHODS["encoder"](tiny, torch.zeros(1, 3, 16, 16), progress=False)


def test_projector_for_other_generators():
    torch.manual_seed(0)
    tiny = Generator(GeneratorConfig.tiny(16)).eval()
    assert auto_method(tiny) == "projector"


def test_clip_reads_the_smile_degree():
    clip = Clip.load("world-clip")
    smiling, neutral = _renders(8, smile=1.0), _renders(8, smile=0.0)
    texts = ["a person with no smile", "a person with 100% smile"]
    with torch.no_grad():
        t = clip.encode_text(texts)
        s = clip.encode_image(smiling) @ t.T
        n = clip.encode_image(neutral) @ t.T
    assert ((s[:, 1] - s[:, 0]) > (n[:, 1] - n[:, 0])).float().mean() >= 0.75


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_ship_for_the_world(G, name, tmp_path):
    m = preset_motion(name, G, cache_dir=tmp_path)  # nothing cached: must come from the package
    assert m.direction.shape == (G.num_ws, G.w_dim) and torch.isfinite(m.direction).all()
    assert float(m.direction.norm()) > 0


@pytest.mark.parametrize("name", ["smile", "head_turn"])
def test_shipped_presets_are_what_the_code_computes(G, name, tmp_path):
    """The packaged files come from `world_video_motion` with the clip identities of `VIDEO_SEEDS`."""
    from micromotion.world.recipes import VIDEO_SEEDS, world_video_motion

    p = PRESETS[name]
    shipped = preset_motion(name, G, cache_dir=tmp_path)
    assert f"seed {VIDEO_SEEDS[p.factor]}" in shipped.meta.source["video"]
    again = world_video_motion(G, p.factor, name=name)
    cos = torch.nn.functional.cosine_similarity(again.direction.flatten(), shipped.direction.flatten(), dim=0)
    assert float(cos) > 0.999
    assert shipped.meta.span == "anchors" == again.meta.span  # strength 1 spans the clip
    assert float(again.direction.norm()) == pytest.approx(float(shipped.direction.norm()), rel=2e-3)
    other = world_video_motion(G, p.factor, seed=1, name=name)  # another identity: another direction
    assert float(torch.nn.functional.cosine_similarity(other.direction.flatten(), shipped.direction.flatten(),
                                                       dim=0)) < 0.99
