"""End to end: the animate API on a tiny generator; presets; bad input (the CLI: tests/commands/test_animate.py)."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from micromotion import Generator, GeneratorConfig, InputError, save_generator
from micromotion.animate import Animator
from micromotion.decompose import Motion
from micromotion.invert import save_latent
from micromotion.presets import PRESETS, canonical, import_paper_direction, preset_motion, strengths
from micromotion.render import read_video_frames


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("anim")
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32)).eval()
    G.compute_w_avg(500)
    gpath = save_generator(G, d / "tiny.safetensors")
    ws = G.mapping(torch.randn(1, G.z_dim), 0.7)
    lpath = save_latent(ws, d / "face.safetensors")
    direction = torch.randn(G.num_ws, G.w_dim)
    mpath = Motion.from_direction(direction, name="wiggle", generator=G).save(d / "wiggle.safetensors")
    return dict(G=G, gen=gpath, latent=lpath, motion=mpath, dir=d, ws=ws, direction=direction)


def test_canonical_names():
    assert canonical("eyesClose") == "eyes_close" and canonical("headsTurn") == "head_turn"
    assert canonical("smile") == "smile"
    with pytest.raises(InputError, match="unknown motion 'smirk'; choose one of: smile, angry, aging"):
        canonical("smirk")


def test_strengths_include_both_ends_and_loop():
    s = strengths(5, 2.0)
    assert s.tolist() == [0, 0.5, 1.0, 1.5, 2.0]
    assert strengths(5, 1.0, loop=True).tolist() == [0, 0.5, 1.0, 0.5, 0]


def test_api_frames_follow_the_line(files, tmp_path):
    a = Animator(model=str(files["gen"]), device="cpu")
    m = a.motion(str(files["motion"]))
    ws = a.latents(files["ws"], m, strength=2.0, frames=3)
    assert torch.allclose(ws[0], files["ws"][0]) and torch.allclose(ws[2], files["ws"][0] + 2 * files["direction"], atol=1e-5)
    res = a.animate(str(files["latent"]), str(files["motion"]), tmp_path / "v.mp4", frames=6, fps=6)
    frames = read_video_frames(res.out, 100)
    assert frames.shape == (6, 32, 32, 3)
    diffs = [np.abs(frames[i + 1].astype(int) - frames[i]).mean() for i in range(5)]
    assert min(diffs) > 0.1  # it moves
    # frame 0 is the unedited face
    with torch.no_grad():
        ref = ((files["G"].synthesis(files["ws"]).clamp(-1, 1) + 1) * 127.5)[0].permute(1, 2, 0).numpy()
    assert np.abs(frames[0].astype(float) - ref).mean() < 8


def test_motion_for_other_generator_refused(files, tmp_path):
    other = Generator(GeneratorConfig.tiny(32))
    m = Motion.from_direction(torch.randn(8, 16), generator=other).save(tmp_path / "other.safetensors")
    a = Animator(model=str(files["gen"]), device="cpu")
    with pytest.raises(InputError):
        a.animate(str(files["latent"]), str(m), tmp_path / "x.mp4", frames=3)
    assert not (tmp_path / "x.mp4").exists()


def test_missing_preset_says_how_to_make_it(files):
    with pytest.raises(InputError, match="micromotion extract --text"):
        preset_motion("smile", files["G"], cache_dir=files["dir"] / "home")


def test_paper_directions_import_and_normalize(reference_dir, tmp_path):
    # a generator with the FFHQ latent shape (18 x 512) but tiny channels: only shapes matter here
    cfg = GeneratorConfig(resolution=1024, z_dim=512, w_dim=512, mapping_layers=1,
                          channels={2 ** i: 4 for i in range(2, 11)})
    G = Generator(cfg)
    norms = {}
    for f in sorted((reference_dir / "paper_directions").glob("*.pt")):
        out = import_paper_direction(f, G, cache_dir=tmp_path)
        m = preset_motion(f.stem, G, cache_dir=tmp_path)
        norms[m.meta.name] = float(m.direction.norm())
        assert out.is_file()
    assert set(norms) == set(PRESETS)
    for name, n in norms.items():
        assert math.isclose(n, PRESETS[name].unit_norm, rel_tol=1e-4), (name, n)


# ----------------------------------------------------------------------------------------------------------
# Whether a photo is aligned: per input for the world model, always for photo models


@pytest.fixture(scope="module")
def world_and_photos(tmp_path_factory):
    import skimage.data

    from micromotion.align import align_face

    d = tmp_path_factory.mktemp("align")
    a = Animator(model="world", device="cpu")
    with torch.no_grad():
        ws = a.G.mapping(torch.randn(6, a.G.z_dim, generator=torch.Generator().manual_seed(3)), 0.7)
        renders = ((a.G.synthesis(ws).clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).byte().numpy()
    worlds = [Image.fromarray(r) for r in renders]
    photo = Image.fromarray(skimage.data.astronaut())  # 512x512, a small face off centre
    return a, worlds, photo, align_face(photo, size=256).image, d


def test_world_model_decides_alignment_per_input(world_and_photos):
    a, worlds, photo, crop, d = world_and_photos
    assert [a.needs_alignment(w) for w in worlds] == [False] * len(worlds)  # its renders: aligned crops
    assert a.needs_alignment(photo)  # a face is found and it is not framed as a crop
    assert not a.needs_alignment(crop)  # an FFHQ-aligned crop of a photo is recognised
    assert a.needs_alignment(photo.crop((0, 0, 512, 400)))  # not square


def test_photo_models_always_align(world_and_photos, files):
    _, worlds, *_ = world_and_photos
    a = Animator(model=str(files["gen"]), device="cpu")  # a StyleGAN2: photos are aligned
    assert a.profile.align and a.needs_alignment(worlds[0])
