"""`micromotion world render|clip|measure` as users run them: files, exit codes, messages."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from micromotion.cli import main
from micromotion.world.oracle import DEFAULT_PATH, Oracle, OracleConfig, save_oracle
from micromotion.world.faces import FACTOR_SPECS, Factors, render


def _run(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_render_writes_pngs_and_true_factors(tmp_path):
    r = _run("world", "render", "--seed", 3, "--count", 3, "--smile", 0.8, "--head-turn", -0.5,
             "--hair-style", "bob", "-o", tmp_path / "faces")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "faces" / "factors.json").read_text())
    assert [f["file"] for f in meta["faces"]] == ["face_00000.png", "face_00001.png", "face_00002.png"]
    rows = [f["factors"] for f in meta["faces"]]
    assert all(f["smile"] == 0.8 and f["head_turn"] == -0.5 and f["hair_style"] == 2 for f in rows)
    assert all(f["anger"] == 0 for f in rows)  # motions at rest unless --random-factors
    assert set(rows[0]) == set(FACTOR_SPECS)
    # the factors in the JSON are the ones drawn: rendering them again gives the PNGs
    again = ((render(Factors.from_dicts(rows)) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    pngs = np.stack([np.asarray(Image.open(tmp_path / "faces" / f["file"])) for f in meta["faces"]])
    assert pngs.shape == (3, 128, 128, 3)
    assert np.abs(pngs.astype(float) - again).max() <= 1.0

    r2 = _run("world", "render", "--seed", 3, "--count", 2, "--random-factors", "-o", tmp_path / "rand")
    rows2 = [f["factors"] for f in json.loads((tmp_path / "rand" / "factors.json").read_text())["faces"]]
    assert r2.exit_code == 0 and any(f["anger"] > 0 for f in rows2)


def test_render_rejects_bad_values(tmp_path):
    r = CliRunner().invoke(main, ["world", "render", "--smile", "1.5", "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "--smile must be in [0, 1], got 1.5" in r.output
    r = CliRunner().invoke(main, ["world", "render", "--hair-style", "mohawk", "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "unknown hair style 'mohawk'" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_clip_writes_video(tmp_path):
    from micromotion.render import read_video_frames

    r = _run("world", "clip", "--motion", "smile", "--frames", 8, "--seed", 2, "--factors-json", tmp_path / "f.json",
             "-o", tmp_path / "smile.mp4")
    assert r.exit_code == 0, r.output
    frames = read_video_frames(tmp_path / "smile.mp4", max_frames=100)
    assert frames.shape == (8, 128, 128, 3)
    track = json.loads((tmp_path / "f.json").read_text())["frames"]
    assert track[0]["smile"] == 0 and track[-1]["smile"] == 1
    # the last frame (a broad smile) differs from the first in the mouth region
    mouth = np.abs(frames[-1, 75:95, 45:83].astype(float) - frames[0, 75:95, 45:83]).mean()
    assert mouth > 10
    r = _run("world", "clip", "--motion", "head-turn", "--frames", 3, "-o", tmp_path / "turn.gif")
    assert r.exit_code == 0 and Image.open(tmp_path / "turn.gif").n_frames == 3
    r = _run("world", "clip", "--motion", "eyes_closed", "--frames", 3, "-o", tmp_path / "pngs")
    assert r.exit_code == 0 and len(list((tmp_path / "pngs").glob("*.png"))) == 3
    r = CliRunner().invoke(main, ["world", "clip", "--motion", "smirk", "-o", str(tmp_path / "x.mp4")])
    assert r.exit_code == 1 and "unknown motion 'smirk'; choose one of: smile, anger" in r.output


def test_measure_prints_json(tmp_path):
    torch.manual_seed(0)
    oracle = save_oracle(Oracle(OracleConfig.tiny()), tmp_path / "o.safetensors")
    assert _run("world", "render", "--count", 2, "-o", tmp_path / "faces").exit_code == 0
    r = _run("world", "measure", tmp_path / "faces", "--json", "--oracle", oracle)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(out) == 2 and all(set(v) == set(OracleConfig.tiny().factors) for v in out.values())
    r = _run("world", "measure", tmp_path / "faces" / "face_00000.png", "--oracle", oracle)
    assert r.exit_code == 0 and "smile" in r.output.splitlines()[0]
    r = CliRunner().invoke(main, ["world", "measure", str(tmp_path / "nothing.png"), "--oracle", str(oracle)])
    assert r.exit_code == 1 and "no such file or folder" in r.output


@pytest.mark.skipif(not DEFAULT_PATH.is_file(), reason="no trained oracle shipped in micromotion/data/world")
def test_measure_agrees_with_factors_json(tmp_path):
    assert _run("world", "render", "--seed", 21, "--count", 24, "--random-factors", "-o", tmp_path / "faces").exit_code == 0
    r = _run("world", "measure", tmp_path / "faces", "--json")
    assert r.exit_code == 0, r.output
    readings = json.loads(r.output)
    truth = {f["file"]: f["factors"] for f in json.loads((tmp_path / "faces" / "factors.json").read_text())["faces"]}
    for k in next(iter(readings.values())):
        err = np.mean([abs(readings[p][k] - truth[p.split("/")[-1]][k]) for p in readings]) / FACTOR_SPECS[k].span
        assert err < 0.1, (k, err)


def test_pick_start_faces_video_smile_chooses_the_shipped_face(tmp_path):
    """Three candidates around the shipped video smile face (16), six validation faces: the command's choice is
    the rule applied to its own rows, and it is 16."""
    from micromotion.world.recipes import VIDEO_SEEDS
    from micromotion.world.start_faces import choose

    out = tmp_path / "pick.json"
    r = _run("world", "pick-start-faces", "--route", "video", "--motion", "smile", "--candidates", "15-17",
             "--identities", 6, "--device", "cpu", "--json", out)
    assert r.exit_code == 0, r.output
    got = json.loads(out.read_text())
    assert [row["seed"] for row in got["rows"]] == [15, 16, 17]
    assert got["chosen"] == choose(got["rows"])
    assert got["chosen"]["seed"] == VIDEO_SEEDS["smile"] == 16
    assert "chosen: seed 16" in r.output


def test_pick_start_faces_rejects_bad_input():
    r = CliRunner().invoke(main, ["world", "pick-start-faces", "--route", "video", "--motion", "smile",
                                  "--candidates", "1-3", "--steps", "40"])
    assert r.exit_code != 0 and "text route" in r.output
    r = CliRunner().invoke(main, ["world", "pick-start-faces", "--route", "video", "--motion", "smile",
                                  "--candidates", "1-3", "--settings", '{"steps": [40]}'])
    assert r.exit_code != 0 and "not a video-route setting" in r.output


def test_samples_sheet_and_truncation_sweep(tmp_path):
    """`world samples`: a grid of tiles (one code each) and a sweep (rows: codes, columns: ψ; ψ 0 is the average
    face for every code), from a tiny generator file."""
    from micromotion.checkpoint import save_generator
    from micromotion.models.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32))
    G.compute_w_avg(n=64)
    gpath = save_generator(G, tmp_path / "g.safetensors")
    r = _run("world", "samples", "--model", gpath, "--count", 6, "--cols", 3, "--size", 16, "-o", tmp_path / "s.png")
    assert r.exit_code == 0, r.output
    sheet = np.asarray(Image.open(tmp_path / "s.png"))
    assert sheet.shape == (32, 48, 3)
    tiles = [sheet[i * 16:(i + 1) * 16, j * 16:(j + 1) * 16] for i in range(2) for j in range(3)]
    assert not np.array_equal(tiles[0], tiles[1])
    again = _run("world", "samples", "--model", gpath, "--count", 6, "--cols", 3, "--size", 16, "-o", tmp_path / "b.png")
    assert again.exit_code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), sheet)  # seeded

    r = _run("world", "samples", "--model", gpath, "--count", 2, "--psi", "0,0.5,1", "--size", 32, "--pad", 2,
             "-o", tmp_path / "t.png")
    assert r.exit_code == 0, r.output
    t = np.asarray(Image.open(tmp_path / "t.png"))
    assert t.shape == (2 + 2 * 34, 2 + 3 * 34, 3)
    col0 = [t[2 + k * 34:2 + k * 34 + 32, 2:34] for k in range(2)]
    assert np.array_equal(col0[0], col0[1])  # ψ 0: every code maps to w_avg
    assert not np.array_equal(t[2:34, 70:102], t[36:68, 70:102])  # ψ 1: two different faces
    bad = CliRunner().invoke(main, ["world", "samples", "--model", str(gpath), "--psi", "x", "-o", str(tmp_path / "x.png")])
    assert bad.exit_code != 0 and "--psi" in bad.output
