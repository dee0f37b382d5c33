"""`micromotion motion ...` (micromotion/commands/motion.py): what users see, exit codes and files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from micromotion.checkpoint import save_generator
from micromotion.cli import main
from micromotion.decompose import Motion, generator_fingerprint, load_motion

from motion_helpers import _one_thread, paper_directions, synthetic_anchors, tiny_generator, torch_file_on_cuda  # noqa: F401


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def anchors_file(tmp_path) -> tuple[Path, torch.Tensor]:
    anchors, _ = synthetic_anchors(K=6, num_ws=8, w_dim=16, seed=30)
    path = tmp_path / "smile_s1_pre_pca"
    torch.save(list(anchors), path)  # the original code's layout: a list of [num_ws, w_dim] latents
    return path, anchors


@pytest.fixture
def generators(tmp_path) -> tuple[Path, Path]:
    return (save_generator(tiny_generator(0), tmp_path / "ffhq-tiny.safetensors"),
            save_generator(tiny_generator(1), tmp_path / "cats-tiny.safetensors"))


def test_decode_writes_the_motion_the_api_makes(tmp_path, anchors_file, generators):
    path, anchors = anchors_file
    out = tmp_path / "smile.safetensors"
    result = run("motion", "decode", path, "-o", out, "--rank", 2, "-g", generators[0], "--times", "0,1,2,3,4,8")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: motion 'smile', 8x16 latents, 6 anchors, rank 2 on every layer" in result.output
    motion = load_motion(out)
    expected = Motion.from_anchors(anchors, rank=2, times=[0, 1, 2, 3, 4, 8])
    torch.testing.assert_close(motion.direction, expected.direction)
    torch.testing.assert_close(motion.times, expected.times)
    assert motion.meta.generator_hash == generator_fingerprint(tiny_generator(0))
    assert motion.meta.generator_name == "ffhq-tiny"  # the generator file's stem
    assert motion.meta.source == {"kind": "anchors", "file": path.name, "num_anchors": 6}


def test_decode_keeps_an_anchors_files_labels_and_source(tmp_path):
    from micromotion.anchors import Anchors

    latents, _ = synthetic_anchors(K=4, num_ws=3, w_dim=16, seed=34)
    path = Anchors(latents, [0.0, 0.5, 1.5, 2.0], {"kind": "video", "file": "clip.mp4", "sha256": "ab12"}).save(
        tmp_path / "clip_anchors.safetensors")
    out = tmp_path / "m.safetensors"
    assert run("motion", "decode", path, "-o", out).exit_code == 0
    m = load_motion(out)
    assert m.meta.source == {"kind": "video", "file": "clip.mp4", "sha256": "ab12", "labels": [0.0, 0.5, 1.5, 2.0],
                             "anchors_file": "clip_anchors.safetensors"}
    torch.testing.assert_close(m.times, torch.tensor([0.0, 0.25, 0.75, 1.0]))
    torch.testing.assert_close(m.direction, Motion.from_anchors(latents, times=[0, 0.5, 1.5, 2]).direction)


def test_decode_paper_variant_and_principal(tmp_path, anchors_file):
    path, anchors = anchors_file
    out = tmp_path / "m.safetensors"
    assert run("motion", "decode", path, "-o", out, "--variant", "paper", "--seed", 3).exit_code == 0
    torch.testing.assert_close(load_motion(out).direction,
                               Motion.from_anchors(anchors, variant="paper", seed=3).direction)
    assert run("motion", "decode", path, "-o", out, "--direction", "principal", "--energy", 0.9).exit_code == 0
    assert load_motion(out).meta.direction_kind == "principal" and load_motion(out).meta.energy == 0.9
    assert load_motion(out).meta.span == "anchors"
    assert run("motion", "decode", path, "-o", out, "--span", "lowrank").exit_code == 0
    torch.testing.assert_close(load_motion(out).direction, Motion.from_anchors(anchors, span="lowrank").direction)
    assert "strength 1: spans the low-rank anchors" in " ".join(run("motion", "info", out).output.split())


def test_decode_bad_anchors_fail_cleanly(tmp_path, anchors_file):
    path, anchors = anchors_file
    out = tmp_path / "out.safetensors"
    bad = anchors.clone()
    bad[3, 2, 1] = float("nan")
    torch.save(list(bad), tmp_path / "nan.pt")
    assert_one_line_error(run("motion", "decode", tmp_path / "nan.pt", "-o", out), "nan.pt", "NaN or inf",
                          "anchor 3, layer 2")
    torch.save([anchors[0]], tmp_path / "one.pt")
    assert_one_line_error(run("motion", "decode", tmp_path / "one.pt", "-o", out), "need at least 2 anchors")
    assert_one_line_error(run("motion", "decode", path, "-o", out, "--times", "0,1"),
                          "times has 2 values but there are 6 anchors")
    (tmp_path / "junk.pt").write_bytes(b"not a tensor file")
    assert_one_line_error(run("motion", "decode", tmp_path / "junk.pt", "-o", out), "junk.pt",
                          "not a torch or safetensors anchors file")
    assert not out.exists()
    result = run("motion", "decode", path, "-o", out, "--times", "a,b")
    assert result.exit_code == 2 and "not a comma-separated list of numbers" in result.output


def test_info_shows_what_the_file_holds(tmp_path, anchors_file, generators):
    path, _ = anchors_file
    out = tmp_path / "smile.safetensors"
    run("motion", "decode", path, "-o", out, "-g", generators[0], "--generator-name", "ffhq-tiny")
    result = run("motion", "info", out)
    assert result.exit_code == 0, result.output
    fp = generator_fingerprint(tiny_generator(0))
    text = " ".join(result.output.split())
    for expected in ("name: smile", f"generator: ffhq-tiny ({fp})", "latents: 8 x 16", "anchors: 6 at t = 0, 0.2,",
                     "rank: 3 3 3 3 3 3 3 4 (asked: rank 4)", "direction: endpoints; norm", "robust PCA: ialm, lambda 0.25, tol 1e-07;",
                     "source: anchors", "format: micromotion motion v1, written by micromotion",
                     "strength 1: spans the anchors (last minus first along the direction,"):
        assert expected in text, (expected, result.output)
    assert run("motion", "info", out, "-g", generators[0]).exit_code == 0


def test_info_refuses_a_motion_for_another_generator(tmp_path, anchors_file, generators):
    path, _ = anchors_file
    out = tmp_path / "smile.safetensors"
    run("motion", "decode", path, "-o", out, "-g", generators[0], "--generator-name", "ffhq-tiny")
    result = run("motion", "info", out, "-g", generators[1])
    assert_one_line_error(result, str(out), "made for generator 'ffhq-tiny'", "not for 'cats-tiny'",
                          generator_fingerprint(tiny_generator(0))[7:19], generator_fingerprint(tiny_generator(1))[7:19])


def test_info_on_bad_files(tmp_path):
    assert_one_line_error(run("motion", "info", tmp_path / "missing.safetensors"), "no such motion file")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    assert_one_line_error(run("motion", "info", tmp_path / "cut.safetensors"), "cut.safetensors",
                          "not a readable motion file")


def test_compose_sums_and_removes(tmp_path):
    a = Motion.from_anchors(synthetic_anchors(K=5, num_ws=3, w_dim=32, seed=31)[0], name="smile")
    b = Motion.from_anchors(synthetic_anchors(K=4, num_ws=3, w_dim=32, seed=32)[0], name="turn")
    a.save(tmp_path / "a.safetensors")
    b.save(tmp_path / "b.safetensors")
    out = tmp_path / "mix.safetensors"
    result = run("motion", "compose", "--add", tmp_path / "a.safetensors", 2, "--add", tmp_path / "b.safetensors", 0.5,
                 "--remove", tmp_path / "b.safetensors", "-o", out)
    assert result.exit_code == 0, result.output
    mix = load_motion(out)
    expected = (2 * a + 0.5 * b).orthogonalized(b)
    torch.testing.assert_close(mix.direction, expected.direction)
    assert mix.meta.name == "mix" and mix.meta.source["op"] == "orthogonalize"
    assert (mix.direction * b.direction).sum(-1).abs().max() < 1e-4
    other = Motion.from_anchors(synthetic_anchors(K=4, num_ws=2, w_dim=32, seed=33)[0], name="small")
    other.save(tmp_path / "small.safetensors")
    assert_one_line_error(run("motion", "compose", "--add", tmp_path / "a.safetensors", 1, "--add",
                              tmp_path / "small.safetensors", 1, "-o", tmp_path / "x.safetensors"),
                          "small.safetensors: motion 'small' has latents 2x32 but 'smile' has 3x32")
    assert not (tmp_path / "x.safetensors").exists()


def test_import_paper_direction(tmp_path):
    folder = tmp_path / "smile"
    folder.mkdir()
    d = torch.randn(1, 18, 512)
    source = torch_file_on_cuda(d, folder / "d_latent")
    out = tmp_path / "smile.safetensors"
    result = run("motion", "import-paper", source, "-o", out, "--generator-name", "stylegan2-ffhq-config-f")
    assert result.exit_code == 0, result.output
    m = load_motion(out)
    assert m.meta.name == "smile" and m.meta.generator_name == "stylegan2-ffhq-config-f"
    torch.testing.assert_close(m.direction, d[0])
    info = " ".join(run("motion", "info", out).output.split())
    assert "format: micromotion motion v1" in info and "source: paper" in info
    assert "format: the authors' published direction" in " ".join(run("motion", "info", source).output.split())
    again = run("motion", "import-paper", out, "-o", tmp_path / "again.safetensors")
    assert_one_line_error(again, "smile.safetensors: not a torch file (already a micromotion motion file?)")
    assert_one_line_error(run("motion", "import-paper", source, "-o", out, "-g",
                              save_generator(tiny_generator(0), tmp_path / "g.safetensors")),
                          "latents 18x512 but generator 'g' uses 8x16")


def test_info_on_published_direction(paper_directions):
    result = run("motion", "info", paper_directions / "headsTurn.pt")
    assert result.exit_code == 0, result.output
    assert "headsTurn" in result.output and "18 x 512" in result.output and "norm 88.3" in result.output


def test_decode_and_info_show_the_transfer_risk(tmp_path, anchors_file, generators, monkeypatch):
    import micromotion.presets as presets

    path, _ = anchors_file
    out = tmp_path / "smile.safetensors"
    result = run("motion", "decode", path, "-o", out, "-g", generators[0])
    assert result.exit_code == 0, result.output
    assert "transfer risk: unknown (no shipped 'smile' preset of this generator" in result.output  # none for it
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(presets, "risk_folders", lambda: (shipped,))
    for factor, expected in ((4.0, "transfer risk: high - this motion is 0.25x the size of the shipped 'smile' "
                                   "preset; most one-face motions under 0.7x moved fewer than half of unseen faces"),
                             (1.25, "transfer risk: low - this motion is 0.80x the size of the shipped 'smile' preset")):
        preset = Motion.from_direction(load_motion(out).direction * factor, name="smile", generator=tiny_generator(0))
        preset.save(shipped / "smile.safetensors")
        result = run("motion", "decode", path, "-o", out, "-g", generators[0])
        assert result.exit_code == 0 and expected in result.output, result.output
        info = run("motion", "info", out)
        assert info.exit_code == 0 and expected in " ".join(info.output.split()), info.output
    result = run("motion", "decode", path, "-o", tmp_path / "wink.safetensors", "-g", generators[0])
    assert "transfer risk: unknown (no preset is named 'wink'" in result.output
    result = run("motion", "decode", path, "-o", out)  # no generator: nothing to compare with
    assert "transfer risk: unknown (the motion has no generator fingerprint" in result.output
