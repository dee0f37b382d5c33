"""End to end: the animate CLI and API on a tiny generator; presets; bad input."""
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from micromotion import Generator, GeneratorConfig, InputError, save_generator
from micromotion.animate import Animator
from micromotion.cli import main
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


def test_cli_animate(files, tmp_path):
    out = tmp_path / "s.gif"
    r = CliRunner().invoke(main, ["animate", str(files["latent"]), "-m", str(files["motion"]), "-o", str(out),
                                  "--model", str(files["gen"]), "--frames", "4", "--loop", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert out.exists() and "wrote" in r.output


@pytest.mark.parametrize("args,msg", [
    (["-m", "smirk"], "unknown motion 'smirk'"),
    (["--strength", "nan"], "strength must be a finite number"),
    (["--strength", "inf"], "strength must be a finite number"),
    (["--frames", "0"], "frames must be an integer in 2..2000"),
    (["--frames", "1000000"], "frames must be an integer"),
    (["--fps", "0"], "fps must be a number"),
    (["-o", "OUT/missing/v.mp4"], "does not exist"),
    (["-o", "OUT/v.avi"], "unsupported output extension"),
])
def test_cli_bad_input_one_line_nothing_written(files, tmp_path, args, msg):
    base = {"-m": str(files["motion"]), "-o": str(tmp_path / "v.mp4")}
    it = iter(args)
    extra = []
    for k in it:
        v = next(it)
        if k in base:
            base[k] = v.replace("OUT", str(tmp_path))
        else:
            extra += [k, v]
    cmd = ["animate", str(files["latent"]), "--model", str(files["gen"]), "--device", "cpu", *extra]
    for k, v in base.items():
        cmd += [k, v]
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code != 0
    assert msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert list(tmp_path.iterdir()) == []


def test_cli_existing_output_needs_overwrite(files, tmp_path):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"keep")
    cmd = ["animate", str(files["latent"]), "-m", str(files["motion"]), "-o", str(out), "--model",
           str(files["gen"]), "--frames", "3", "--device", "cpu"]
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code == 1 and "--overwrite" in r.output and out.read_bytes() == b"keep"
    assert CliRunner().invoke(main, cmd + ["--overwrite"]).exit_code == 0
    assert out.stat().st_size > 100


def test_motion_for_other_generator_refused(files, tmp_path):
    other = Generator(GeneratorConfig.tiny(32))
    m = Motion.from_direction(torch.randn(8, 16), generator=other).save(tmp_path / "other.safetensors")
    a = Animator(model=str(files["gen"]), device="cpu")
    with pytest.raises(InputError):
        a.animate(str(files["latent"]), str(m), tmp_path / "x.mp4", frames=3)
    assert not (tmp_path / "x.mp4").exists()


def test_batch_mode_reports_failures_and_continues(files, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(main, ["animate", str(src), "-m", f"{files['motion']},{files['motion']}", "-o", str(out),
                                  "--model", str(files["gen"]), "--frames", "3", "--device", "cpu", "--steps", "2"])
    assert "failed: " in r.output and "done: 0 of 2 videos written, 2 failed" in r.output
    assert r.exit_code == 1 and list(out.iterdir()) == []


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


def test_auto_model_without_any_weights_says_what_to_do(tmp_path, monkeypatch):
    import micromotion.weights.cache as W

    monkeypatch.setattr(W, "_bundled_path", lambda spec: tmp_path / "not-installed" / spec.filename)
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    face = tmp_path / "face.png"
    face.write_bytes(b"checked later")
    r = CliRunner().invoke(main, ["animate", str(face), "-m", "smile", "-o", str(tmp_path / "o.mp4")])
    assert r.exit_code != 0
    assert "micromotion weights download stylegan2-ffhq-1024" in r.output and len(r.output.strip().splitlines()) == 1
