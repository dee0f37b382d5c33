"""`micromotion demo` runs offline and reports what it ran: real faces with MobileStyleGAN (here a tiny one), or
the full method on the shipped world model (`--world`, and when the real-face model is absent)."""
import json

import pytest
import torch
from click.testing import CliRunner

from micromotion.cli import main
from micromotion.demo import rpca_vs_raw
from micromotion.errors import MicromotionError


def test_rpca_beats_raw_endpoints():
    r = rpca_vs_raw()
    assert r["cos_rpca"] > 0.95 and r["cos_raw_endpoints"] < 0.5


def test_demo_cli(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--world", "-o", str(tmp_path / "d"), "--frames", "4", "--text-steps", "2"])
    assert r.exit_code == 0, r.output
    assert "ran:" in r.output and "robust PCA" in r.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert set(report["numbers"]["world_clips"]) == {"smile", "angry", "aging", "eyes_close", "head_turn"}
    for row in report["numbers"]["world_clips"].values():  # the oracle reads the clip's motion
        assert row["oracle_end"] - row["oracle_start"] > 0.5
    assert (tmp_path / "d" / "world_clip_smile.mp4").stat().st_size > 1000


def test_demo_refuses_bad_counts(tmp_path):
    for opt, value in (("--text-steps", "0"), ("--frames", "1"), ("--identities", "0")):
        r = CliRunner().invoke(main, ["demo", "--world", "-o", str(tmp_path / "d"), opt, value])
        assert r.exit_code == 1 and opt in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "d").exists()


def test_demo_runs_the_whole_method_on_the_shipped_world(tmp_path):
    """Video and text anchors -> motion -> transfer to unseen encoded renders; the smile preset must smile."""
    r = CliRunner().invoke(main, ["demo", "--world", "-o", str(tmp_path / "d"), "--frames", "4", "--identities", "3"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    tr = report["numbers"]["transfer"]
    assert set(tr) == {f"video/{m}" for m in ("smile", "angry", "aging", "eyes_close", "head_turn")} | {"text/smile"}
    assert tr["video/smile"]["target_change_mean"] > 0.4  # measured +0.70 of range on 50 faces
    assert tr["video/aging"]["target_change_mean"] > 0.4
    # re-inverted text anchors from the smile preset's start face transfer (40 steps: +0.63 on 50 faces, CPU)
    assert tr["text/smile"]["target_change_mean"] > 0.3
    for name in ("transfer_smile.mp4", "photo.png", "photo_smile.mp4", "motion_text_smile.safetensors"):
        assert (tmp_path / "d" / name).stat().st_size > 500, name
    assert "not run" not in r.output


@pytest.fixture
def tiny_real_model(monkeypatch, tmp_path):
    """A tiny MobileStyleGAN in place of `load_generator("mobilestylegan-ffhq-1024")`, with random motions as
    its five presets in the user's preset cache."""
    import micromotion.animate as animate
    from micromotion import presets
    from micromotion.decompose import Motion
    from micromotion.models.mobilestylegan import Generator, MobileStyleGANConfig

    torch.manual_seed(0)
    G = Generator(MobileStyleGANConfig.tiny()).eval().requires_grad_(False)
    G.compute_w_avg(100, seed=0)
    G.registry_name = "mobilestylegan-ffhq-1024"  # as load_generator records it; its profile is found by name
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path / "home"))
    g = torch.Generator().manual_seed(1)
    for name in presets.PRESETS:
        m = Motion.from_direction(torch.randn(G.num_ws, G.w_dim, generator=g), name=name, generator=G)
        path = presets.cache_path(name, G)
        path.parent.mkdir(parents=True, exist_ok=True)
        m.save(path)
    asked = []

    def load(spec, device="cpu"):
        asked.append(str(spec))
        return G.to(device)

    monkeypatch.setattr(animate, "load_generator", load)
    return asked


def test_real_demo_on_a_tiny_mobilestylegan(tmp_path, tiny_real_model):
    """The real-face path: sample + the astronaut aligned, inverted, the five presets -> mp4s, sheet, table."""
    pytest.importorskip("skimage")
    out = tmp_path / "d"
    r = CliRunner().invoke(main, ["demo", "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert tiny_real_model == ["mobilestylegan-ffhq-1024"]
    assert "real faces (mobilestylegan-ffhq-1024, cpu, 3 frames per motion, 10 projector steps)" in r.output
    assert "on a CPU the demo renders 3 frames per motion and runs 10 projector steps" in r.output
    report = json.loads((out / "real_report.json").read_text())
    assert set(report["faces"]) == {"sample_seed7", "astronaut"}
    for face in report["faces"].values():
        assert set(face["motions"]) == {"smile", "angry", "aging", "eyes_close", "head_turn"}
    assert report["faces"]["astronaut"]["inversion"]["steps"] == 10
    from PIL import Image

    for face in ("sample_seed7", "astronaut"):
        for motion in ("smile", "angry", "aging", "eyes_close", "head_turn"):
            assert (out / f"{face}_{motion}.mp4").stat().st_size > 500
    with Image.open(out / "real_astronaut.png") as im:
        assert im.size[1] > 5 * 128  # five motions of 128 px tiles
    # pasted back: the astronaut's videos are at the photo's 512x512
    from micromotion.render import read_video_frames

    assert read_video_frames(out / "astronaut_smile.mp4", max_frames=1).shape[1:3] == (512, 512)
    assert (out / "contact_sheet.png").stat().st_size > 1000
    table = (out / "measures.md").read_text()
    assert table.count("\n") == 2 + 10 and "| astronaut |" in table and "| sample_seed7 | (sample) | smile |" in table
    assert "| face | photo ↔ reconstruction |" in r.output


def test_demo_without_the_real_model_runs_the_world(tmp_path, monkeypatch):
    """random-face absent: one line saying so, then the world demo (as --world)."""
    import micromotion.animate as animate
    import micromotion.demo as world_demo

    real_load = animate.load_generator

    def absent(spec, device="cpu"):
        if str(spec) != "mobilestylegan-ffhq-1024":
            return real_load(spec, device=device)
        raise MicromotionError("random-face is not installed; run `pip install --no-deps random-face==2021.7.21.1`\n"
                               "or `micromotion weights download mobilestylegan-ffhq-1024`")

    monkeypatch.setattr(animate, "load_generator", absent)
    ran = []  # the world's full method is test_demo_runs_the_whole_method_on_the_shipped_world's (minutes)
    monkeypatch.setattr(world_demo, "full_method", lambda G, out, report, **kw: ran.append(kw) or {})
    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "d"), "--frames", "4", "--text-steps", "2"])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first == ("the real-face model mobilestylegan-ffhq-1024 is not available (random-face is not installed; "
                     "run `pip install --no-deps random-face==2021.7.21.1`): running the face-world demo instead "
                     "(micromotion demo --world)")
    assert "world clips" in r.output and (tmp_path / "d" / "world_clip_smile.mp4").is_file()
    assert ran and ran[0]["frames"] == 4 and ran[0]["text_steps"] == 2  # the world's own defaults and options


def test_real_demo_summary_names_the_encoder_when_photos_are_encoded():
    """With an encoder for the model the summary and the CPU note speak of the encoder and frames, not of
    projector steps the demo did not run."""
    from micromotion.commands.demo import _real_lines
    from micromotion.demo_real import RealDemoReport, default_counts

    f, s, note = default_counts(torch.device("cpu"), None, None, projector=False)
    assert "frames per motion" in note and "projector" not in note
    assert "projector steps" in default_counts(torch.device("cpu"), None, None)[2]
    r = RealDemoReport(model="m", device="cpu", frames=f, steps=s, method="encoder",
                       faces={"astronaut": {"kind": "photo", "seconds_invert": 2.5, "motions": {},
                                            "inversion": {"method": "encoder", "loss": "mse"}}})
    lines = _real_lines(r)
    assert lines[0] == f"micromotion demo: real faces (m, cpu, {f} frames per motion, photos inverted by the encoder)"
    assert "astronaut: aligned and inverted (encoder, mse loss, 2.5 s)" in lines
    r.method, r.faces["astronaut"]["inversion"] = "projector", {"method": "projector", "loss": "pixel", "steps": 10}
    assert "astronaut: aligned and inverted (projector, pixel loss, 10 steps, 2.5 s)" in _real_lines(r)
