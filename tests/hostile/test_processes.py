"""Hostile situations beyond one bad file: a batch with a failure, a render killed midway, staging files of
dead processes in the weights cache, a symlink loop as the output, the umask of what we write."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_corpus import _world_face, error_lines, invoke  # noqa: E402 -- tests/hostile is on sys.path (rootdir)

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def face():
    return _world_face()


def test_batch_with_a_failure_exits_nonzero_and_keeps_the_summary(face, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(face).save(photos / "a.png")
    Image.fromarray(face[:, ::-1].copy()).save(photos / "b.png")
    (photos / "c.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    out.mkdir()
    r = invoke(["animate", str(photos), "-m", "smile", "--model", "world", "--frames", "2", "-o", str(out)],
               tmp_path, tmp_path / "home", monkeypatch)
    assert r.exit_code == 1, r.output
    assert "done: 2 of 3 videos written, 1 failed" in r.stdout
    assert "failed: " in r.stderr and "c.png" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_smile.mp4", "b_smile.mp4"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_render_killed_midway_leaves_no_output_and_the_next_run_cleans_its_part(sig, face, tmp_path,
                                                                                    monkeypatch):
    Image.fromarray(face).save(tmp_path / "face.png")
    (tmp_path / "notes.txt").write_text("mine")
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", MICROMOTION_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "micromotion", "animate", "face.png", "-m", "smile", "--model",
                             "world", "--frames", "2000", "--batch-size", "4", "-o", "out.mp4"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    try:
        while not list(tmp_path.glob(".out.mp4.part*")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no partial output appeared"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(sig)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not (tmp_path / "out.mp4").exists()  # never a half video under the real name
    assert (tmp_path / "notes.txt").read_text() == "mine"
    r = invoke(["animate", "face.png", "-m", "smile", "--model", "world", "--frames", "2", "-o", "out.mp4"],
               tmp_path, tmp_path / "home", monkeypatch)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out.mp4").is_file()
    assert not list(tmp_path.glob(".out.mp4.*")), list(tmp_path.iterdir())  # the dead run's part is gone


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_weights_maintenance_cleans_staging_files_of_dead_processes_only(tmp_path, monkeypatch):
    wdir = tmp_path / "home" / "weights"
    wdir.mkdir(parents=True)
    dead = wdir / f".{_dead_pid()}-1234-clip-vit-b-32.safetensors"
    live = wdir / f".{os.getppid()}-1234-clip-vit-b-32.safetensors"  # pytest's parent: running
    resumable = wdir / "ViT-B-32.pt.part"  # a download to resume: kept
    mine = wdir / "notes.txt"
    for p in (dead, live, resumable, mine):
        p.write_bytes(b"x" * 100)
    for args in (["weights", "list"], ["weights", "remove", "lpips-vgg"]):
        r = invoke(args, tmp_path, tmp_path / "home", monkeypatch)
        assert r.exit_code == 0, r.output
        assert "Traceback" not in r.stderr
    assert not dead.exists()
    assert live.exists() and resumable.exists() and mine.read_bytes() == b"x" * 100


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_an_output_that_is_a_symlink_loop_is_refused_and_kept(face, tmp_path, monkeypatch, overwrite):
    Image.fromarray(face).save(tmp_path / "face.png")
    os.symlink("loop.mp4", tmp_path / "loop.mp4")
    r = invoke(["animate", "face.png", "-m", "smile", "--model", "world", "--frames", "2", "-o", "loop.mp4"] +
               (["--overwrite"] if overwrite else []), tmp_path, tmp_path / "home", monkeypatch)
    assert r.exit_code == 1 and len(error_lines(r.stderr)) == 1, r.stderr
    assert os.readlink(tmp_path / "loop.mp4") == "loop.mp4"


def test_outputs_honour_the_umask(face, tmp_path, monkeypatch):
    """Issue 24 item 7: .safetensors, PNGs and videos are created 0666 & ~umask, not a temp file's 0600."""
    from micromotion.decompose import Motion
    from micromotion.generators import load_generator
    from micromotion.render import save_png, write_frames

    G = load_generator("world")
    old = os.umask(0o022)
    try:
        m = Motion.from_direction(torch.randn(G.num_ws, G.w_dim), name="x", generator=G).save(tmp_path / "m.safetensors")
        png = save_png(face, tmp_path / "face.png")
        mp4 = write_frames([face, face], tmp_path / "v.mp4", fps=25)
        frames = write_frames([face, face], tmp_path / "frames", fps=25)
        Image.fromarray(face).save(tmp_path / "in.png")
        r = invoke(["world", "render", "--count", "2", "--size", "32", "-o", "world"], tmp_path, tmp_path / "home",
                   monkeypatch)
        assert r.exit_code == 0, r.output
        world = sorted((tmp_path / "world").iterdir())
    finally:
        os.umask(old)
    for p in [m, png, mp4, *sorted(Path(frames).glob("*.png")), *world]:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644, (p, oct(os.stat(p).st_mode))
    assert np.asarray(Image.open(png)).shape == face.shape
