"""`micromotion animate` as users run it, on the tiny generator of tests/test_animate.py: files, exit codes,
one-line errors, batch mode."""
import pytest
from click.testing import CliRunner

from micromotion.cli import main
from test_animate import files  # noqa: F401  (the module's tiny generator, latent and motion)


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


def test_auto_model_without_any_weights_says_what_to_do(tmp_path, monkeypatch):
    import micromotion.weights.cache as W
    from weights_helpers import hide_random_face

    hide_random_face(monkeypatch)
    monkeypatch.setattr(W, "_bundled_path", lambda spec: tmp_path / "not-installed" / spec.filename)
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    face = tmp_path / "face.png"
    face.write_bytes(b"checked later")
    r = CliRunner().invoke(main, ["animate", str(face), "-m", "smile", "-o", str(tmp_path / "o.mp4")])
    assert r.exit_code != 0
    assert "micromotion weights download stylegan2-ffhq-1024" in r.output and len(r.output.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------------------
# --align/--no-align, and the real-face model


def test_align_options_exist_and_the_refusal_names_one(tmp_path):
    r = CliRunner().invoke(main, ["animate", "--help"])
    assert "--align / --no-align" in r.output
    from PIL import Image

    photo = tmp_path / "wide.png"
    Image.new("RGB", (96, 64), (120, 100, 90)).save(photo)
    r = CliRunner().invoke(main, ["animate", str(photo), "-m", "smile", "-o", str(tmp_path / "o.mp4"),
                                  "--model", "world", "--no-align", "--device", "cpu", "--frames", "2"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = r.output.strip().splitlines()[-1]
    assert "96x64 is not square" in line and "use --align" in line  # an option animate has
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow  # 32-64 s measured on the shared 2-core CPU (a 1024² projector step: 9-17 s), over 60 s at times
def test_cli_animate_a_photo_with_mobilestylegan(tmp_path, monkeypatch):
    import skimage.data
    import torch
    from PIL import Image

    from micromotion.decompose import Motion
    from micromotion.errors import WeightsError
    from micromotion.generators import load_generator

    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path / "home"))  # converted here, from the installed random-face
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    try:
        G = load_generator("mobilestylegan-ffhq-1024")
    except WeightsError as e:  # random-face absent (and not downloadable here)
        pytest.skip(str(e))
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).resize((256, 256)).save(photo)
    motion = Motion.from_direction(torch.randn(G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(0)) * 0.3,
                                   name="wiggle", generator=G).save(tmp_path / "wiggle.safetensors")
    out = tmp_path / "out.mp4"
    r = CliRunner().invoke(main, ["animate", str(photo), "-m", str(motion), "-o", str(out), "--model",
                                  "mobilestylegan-ffhq-1024", "--frames", "3", "--steps", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "model: mobilestylegan-ffhq-1024 (1024x1024)" in r.output and out.stat().st_size > 1000
