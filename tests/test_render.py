"""Frames -> files: formats by extension, streaming, atomic output, bad input."""
import os

import numpy as np
import pytest
import torch

from micromotion import Generator, GeneratorConfig, InputError
from micromotion.render import (contact_sheet, read_video_frames, render_video, synthesize_batches, to_uint8,
                                write_frames)


def _frames(n=6, h=32, w=48):
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i + 1) * w // n] = (40 * i, 255 - 40 * i, 128)
        yield f


def test_to_uint8_clamps():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


@pytest.mark.parametrize("name", ["v.mp4", "v.gif", "v.webp", "frames"])
def test_formats_roundtrip(tmp_path, name):
    out = write_frames(_frames(), tmp_path / name, fps=10)
    assert out.exists()
    if name == "frames":
        assert sorted(p.name for p in out.glob("frame_*.png"))[:2] == ["frame_00000.png", "frame_00001.png"]
        assert len(list(out.glob("frame_*.png"))) == 6 and (out / ".micromotion-frames").is_file()
    elif name.endswith(".mp4"):
        frames = read_video_frames(out, max_frames=100)
        assert frames.shape == (6, 32, 48, 3)
        ref = np.stack(list(_frames()))
        assert np.abs(frames.astype(int) - ref).mean() < 6  # lossy but faithful
    else:
        from PIL import Image

        im = Image.open(out)
        assert im.n_frames == 6 and im.size == (48, 32)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp files left


def test_odd_sizes_are_padded_for_h264(tmp_path):
    out = write_frames(_frames(3, 31, 45), tmp_path / "odd.mp4", fps=5)
    assert read_video_frames(out).shape[1:] == (32, 46, 3)


def test_failure_midway_leaves_nothing(tmp_path):
    def broken():
        yield from _frames(3)
        raise RuntimeError("renderer died")

    for name in ("a.mp4", "a.gif", "pngs"):
        with pytest.raises(RuntimeError):
            write_frames(broken(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_bad_outputs(tmp_path):
    with pytest.raises(InputError, match="unsupported output extension '.avi'"):
        write_frames(_frames(), tmp_path / "x.avi")
    with pytest.raises(InputError, match="does not exist"):
        write_frames(_frames(), tmp_path / "missing" / "x.mp4")
    (tmp_path / "x.mp4").write_bytes(b"old")
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        write_frames(_frames(), tmp_path / "x.mp4")
    assert (tmp_path / "x.mp4").read_bytes() == b"old"
    write_frames(_frames(), tmp_path / "x.mp4", overwrite=True)
    assert (tmp_path / "x.mp4").stat().st_size > 100
    for fps in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InputError, match="fps"):
            write_frames(_frames(), tmp_path / "y.mp4", fps=fps)
    with pytest.raises(InputError, match="no frames"):
        write_frames(iter([]), tmp_path / "z.gif")
    assert not (tmp_path / "z.gif").exists()


def test_render_video_streams_batches(tmp_path):
    G = Generator(GeneratorConfig.tiny(32)).eval()
    ws = G.mapping(torch.randn(7, G.z_dim))
    batches = list(synthesize_batches(G, ws, batch_size=3))
    assert [b.shape[0] for b in batches] == [3, 3, 1]
    whole = G.synthesis(ws)
    assert torch.allclose(torch.cat(batches), whole, atol=1e-5)
    out = render_video(G, ws, tmp_path / "g.mp4", fps=7, batch_size=3)
    assert read_video_frames(out, 100).shape == (7, 32, 32, 3)


def test_contact_sheet():
    imgs = np.zeros((5, 4, 6, 3), np.uint8)
    sheet = contact_sheet(imgs, cols=3, pad=1)
    assert sheet.shape == (2 * 5 + 1, 3 * 7 + 1, 3)


def test_to_yuv420_bt601_limited_range():
    from micromotion.render import to_yuv420

    colours = {"white": (1, 1, 1), "black": (-1, -1, -1), "red": (1, -1, -1), "blue": (-1, -1, 1)}
    want = {"white": (235, 128, 128), "black": (16, 128, 128), "red": (81, 90, 240), "blue": (41, 240, 110)}
    for name, c in colours.items():
        img = torch.tensor(c, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 4, 6)
        planes = to_yuv420(img)
        assert planes.shape == (1, 6, 6) and planes.dtype == np.uint8
        y, uv = planes[0, :4].ravel(), planes[0, 4:].ravel()
        assert set(y.tolist()) == {want[name][0]}, name
        assert set(uv[:6].tolist()) == {want[name][1]} and set(uv[6:].tolist()) == {want[name][2]}, name
    # chroma is the 2x2 mean; the planes are in PyAV's layout: its own conversion back gives the picture
    import av

    yy, xx = torch.meshgrid(torch.linspace(-0.5, 0.5, 32), torch.linspace(-0.5, 0.5, 40), indexing="ij")
    img = torch.stack([xx, yy, -xx * 0.5])[None]  # smooth colour ramps (chroma is subsampled)
    rgb = av.VideoFrame.from_ndarray(to_yuv420(img)[0], format="yuv420p").to_ndarray(format="rgb24")
    diff = rgb.astype(int) - to_uint8(img)[0].astype(int)
    assert np.abs(diff).mean() < 3 and np.abs(diff.mean()) < 1.5
    with pytest.raises(ValueError, match="even"):
        to_yuv420(torch.zeros(1, 3, 5, 6))


def test_fast_mp4_path_matches_the_rgb_path(tmp_path):
    G = Generator(GeneratorConfig.tiny(32)).eval()
    ws = G.mapping(torch.randn(9, G.z_dim, generator=torch.Generator().manual_seed(1)))
    fast = render_video(G, ws, tmp_path / "fast.mp4", fps=9, batch_size=4)  # I420 + encoder thread
    slow = write_frames((to_uint8(b) for b in synthesize_batches(G, ws, 4)), tmp_path / "slow.mp4", fps=9)
    a, b = read_video_frames(fast, 100).astype(float), read_video_frames(slow, 100).astype(float)
    ref = to_uint8(G.synthesis(ws)).astype(float)
    assert a.shape == b.shape == (9, 32, 32, 3)

    def psnr(x, y):
        return 10 * np.log10(255 ** 2 / ((x - y) ** 2).mean())

    assert psnr(a, ref) > psnr(b, ref) - 1.0  # as faithful as the RGB path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.mp4", "slow.mp4"]


def test_fast_mp4_path_failure_leaves_nothing(tmp_path, monkeypatch):
    from micromotion import render as R

    G = Generator(GeneratorConfig.tiny(32)).eval()
    ws = G.mapping(torch.randn(12, G.z_dim))
    calls = []

    def broken(self, planes):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return original(self, planes)

    original = R._Mp4Sink.write_yuv420
    monkeypatch.setattr(R._Mp4Sink, "write_yuv420", broken)
    with pytest.raises(OSError, match="disk full"):
        render_video(G, ws, tmp_path / "v.mp4", batch_size=2)
    assert list(tmp_path.iterdir()) == []
    # and a failure on the rendering side
    monkeypatch.setattr(R._Mp4Sink, "write_yuv420", original)

    def dying(*a, **k):
        yield G.synthesis(ws[:2])
        raise RuntimeError("GPU fell off")

    monkeypatch.setattr(R, "synthesize_batches", dying)
    with pytest.raises(RuntimeError, match="fell off"):
        render_video(G, ws, tmp_path / "v.mp4", batch_size=2)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_never_deletes_a_users_folder(tmp_path):
    # a folder of the user's own files, as a PNG-sequence target and as a "video" named like a file
    for name in ("mypics", "dir.mp4"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "photo.jpg").write_bytes(b"mine")
        (folder / "notes.txt").write_text("keep me")
        with pytest.raises(InputError, match="did not write|is a folder"):
            write_frames(_frames(), folder, overwrite=True)
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "photo.jpg"]
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overwrite_replaces_its_own_frames_folder_only_while_untouched(tmp_path):
    out = tmp_path / "frames"
    write_frames(_frames(), out)
    assert (out / ".micromotion-frames").is_file()
    write_frames(_frames(3), out, overwrite=True)
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:05d}.png" for i in range(3)]
    (out / "my_edit.txt").write_text("added by the user")  # now it holds a user's file: no longer ours alone
    with pytest.raises(InputError, match="did not write"):
        write_frames(_frames(), out, overwrite=True)
    assert (out / "my_edit.txt").read_text() == "added by the user"
    # an unmarked folder of frame PNGs (made by someone else) is not ours either
    other = tmp_path / "theirs"
    other.mkdir()
    (other / "frame_00000.png").write_bytes(b"x")
    with pytest.raises(InputError, match="did not write"):
        write_frames(_frames(), other, overwrite=True)
    assert (other / "frame_00000.png").read_bytes() == b"x"


def test_overwrite_refuses_what_it_cannot_replace(tmp_path):
    (tmp_path / "file").write_bytes(b"user data")
    with pytest.raises(InputError, match="is a file, and an output without extension is a folder"):
        write_frames(_frames(), tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_bytes() == b"user data"
    target = tmp_path / "real.mp4"
    target.write_bytes(b"user video")
    (tmp_path / "link.mp4").symlink_to(target)
    with pytest.raises(InputError, match="symbolic link"):
        write_frames(_frames(), tmp_path / "link.mp4", overwrite=True)
    assert target.read_bytes() == b"user video"
    if os.path.exists("/dev/full"):
        with pytest.raises(InputError, match="not a regular file"):
            write_frames(_frames(), "/dev/full", overwrite=True)


def test_stale_parts_of_dead_processes_are_cleaned(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale_file = tmp_path / f".x.mp4.part{dead}.mp4"
    stale_file.write_bytes(b"partial")
    stale_dir = tmp_path / f".frames.part{dead}"
    stale_dir.mkdir()
    (stale_dir / "frame_00000.png").write_bytes(b"partial")
    alive = tmp_path / f".x.mp4.part{os.getppid()}.mp4"  # a running process's part is left alone
    alive.write_bytes(b"in progress")
    mine = tmp_path / ".x.mp4.partNOTAPID.mp4"
    mine.write_bytes(b"not a part name")
    write_frames(_frames(), tmp_path / "x.mp4")
    write_frames(_frames(), tmp_path / "frames")
    assert not stale_file.exists() and not stale_dir.exists()
    assert alive.exists() and mine.exists()
