"""Frames -> files: formats by extension, streaming, atomic output, bad input."""
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
        assert sorted(p.name for p in out.iterdir())[:2] == ["frame_00000.png", "frame_00001.png"]
        assert len(list(out.iterdir())) == 6
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
