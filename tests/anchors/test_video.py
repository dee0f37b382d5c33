"""micromotion.anchors.video: reading clips, tracking one face, smoothing landmarks, video anchors."""
import logging
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from micromotion.anchors import Anchors
from micromotion.anchors.video import (FaceTrack, anchors_from_video, iter_frames, landmark_jitter, parse_position,
                                       probe_video, select_frames, smooth_landmarks, spread, track_face,
                                       video_anchors)
from micromotion.decompose import Motion
from micromotion.errors import InputError
from micromotion.models.stylegan2 import Generator, GeneratorConfig
from micromotion.render import to_uint8, write_frames


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny networks: on a shared 2-core machine, thread hand-offs cost more than the arithmetic.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny():
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32)).eval().requires_grad_(False)
    G.compute_w_avg()
    with torch.no_grad():  # a random tiny generator's images overshoot [-1, 1]; clipped pixels cannot be fitted
        for m in G.synthesis_net.torgbs:
            m.weight.mul_(0.3)
            m.bias.mul_(0.3)
    return G


def _cos(a, b) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _clip(path, frames: np.ndarray, fps: float = 8.0):
    return write_frames(frames, path, fps=fps)


def _astronaut() -> Image.Image:
    skimage = pytest.importorskip("skimage")
    return Image.fromarray(skimage.data.astronaut())


# ----------------------------------------------------------------------------------------------------------
# A synthetic clip along a known direction


def test_synthetic_clip_gives_the_true_direction(tmp_path):
    """Frames of a tiny generator along a known W+ direction (plus per-frame noise) -> mp4 -> anchors -> motion.

    W+ has directions no image shows (this generator's Jacobian has exact zeros among its singular values), and
    no inversion can recover motion along them; the clip's motion is a random mix of the 8 most visible ones.
    """
    G = _tiny()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = G.mapping_net(torch.randn(1, G.z_dim, generator=g))
        w0 = G.w_avg.lerp(w[0], 0.5).expand(G.num_ws, -1).clone()  # pulled toward the mean: projects well
    J = torch.autograd.functional.jacobian(
        lambda x: G.synthesis(x.view(1, G.num_ws, G.w_dim), noise_mode="const").flatten(), w0.flatten(),
        vectorize=True, strategy="forward-mode")
    _, S, Vh = torch.linalg.svd(J, full_matrices=False)
    assert S[-1] < 1e-4 * S[0]  # the invisible directions exist
    d = torch.randn(8, generator=g) @ Vh[:8]
    d = (d / d.norm() * 2.0).view(G.num_ws, G.w_dim)
    T = 16
    t = torch.linspace(0, 1, T)
    with torch.no_grad():
        ws = w0 + t[:, None, None] * d + 0.2 / math.sqrt(d.numel()) * torch.randn(T, G.num_ws, G.w_dim, generator=g)
        imgs = G.synthesis(ws, noise_mode="const")
    assert imgs.abs().max() < 1.5
    # 4x larger than the generator: H.264's half-resolution colour would blur a 32x32 clip
    path = _clip(tmp_path / "motion.mp4", to_uint8(F.interpolate(imgs, size=128, mode="bicubic")))

    result = video_anchors(G, path, align=False, max_frames=8, steps=100, batch_size=2, loss="pixel",
                           progress=False, generator_name="tiny")
    anchors = result.anchors
    assert isinstance(anchors, Anchors) and anchors.latents.shape == (8, G.num_ws, G.w_dim)
    chosen = spread(T, 8)
    assert chosen.tolist() == [0, 2, 4, 6, 9, 11, 13, 15]
    np.testing.assert_allclose(anchors.labels, chosen / 8.0, atol=1e-6)  # times in seconds at 8 fps
    src = anchors.source
    assert src["kind"] == "video" and src["video"] == "motion.mp4" and src["frames"] == chosen.tolist()
    assert src["align"] is False and "tracking" not in src and src["generator"] == "tiny"
    assert src["inversion"]["method"] == "projector" and src["inversion"]["warm_steps"] == 25
    assert min(src["inversion"]["psnr"]) > 38, src["inversion"]["psnr"]

    motion = Motion.from_anchors(anchors, generator=G)
    cos = _cos(motion.direction, d)
    print(f"direction cosine {cos:.3f}, PSNR {src['inversion']['psnr']}")
    assert cos >= 0.9, cos
    torch.testing.assert_close(motion.times, torch.tensor(chosen / 15.0, dtype=torch.float32))
    assert motion.meta.source["kind"] == "video"

    # aligned frames over reconstructions, one column per anchor
    assert result.frames.shape == (8, 32, 32, 3) and result.reconstructions.shape == (8, 3, 32, 32)
    png = result.save_preview(tmp_path / "motion.png", size=48)
    with Image.open(png) as im:
        assert im.size == (8 * 52 + 4, 2 * 52 + 14 + 4)
    # round trip through the anchors file
    again = Anchors.load(anchors.save(tmp_path / "motion.safetensors"))
    torch.testing.assert_close(again.latents, anchors.latents)
    assert again.labels == anchors.labels


# ----------------------------------------------------------------------------------------------------------
# Reading a real clip, tracking a face


def _megamind(reference_dir):
    path = reference_dir / "video" / "Megamind.avi"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_real_clip_frames_in_presentation_order(reference_dir):
    av = pytest.importorskip("av")
    path = _megamind(reference_dir)
    info = probe_video(path)
    assert info.num_frames == 270 and info.size == (720, 528) and abs(info.fps - 23.976) < 1e-3
    assert info.times[0] == 0 and (np.diff(info.times) > 0).all()
    assert abs(info.duration - 270 / info.fps) < 1e-6
    # this AVI has packed B-frames: the decoder emits frame 4 after frame 5
    with av.open(str(path)) as c:
        decoded = [(f.pts, f.to_ndarray(format="rgb24")) for _, f in zip(range(8), c.decode(video=0))]
    assert [p for p, _ in decoded] != sorted(p for p, _ in decoded)
    by_time = [a for _, a in sorted(decoded, key=lambda x: x[0])]
    got = list(iter_frames(info, [2, 3, 4, 5]))
    assert [i for i, _ in got] == [2, 3, 4, 5]
    for i, frame in got:
        np.testing.assert_array_equal(frame, by_time[i])


def test_real_clip_tracking_and_smoothing(reference_dir):
    path = _megamind(reference_dir)
    track = track_face(path, start="0f", end="72f", progress=False)  # the first 3 s
    assert isinstance(track, FaceTrack) and len(track.indices) == 72
    assert track.num_found >= 0.9 * 72, track.found.astype(int)
    assert track.detected.sum() < 30  # the detector ran on a subset; boxes were predicted in between
    assert track.faces_seen == 1 and track.face_index == 0 and track.detector == "hog"
    assert track.smooth_window == 7  # 0.3 s at 23.976 fps
    raw, smooth = track.jitter(smoothed=False), track.jitter(smoothed=True)
    assert smooth < 0.5 * raw and smooth < 0.08, (raw, smooth)
    # smoothing moves landmarks by far less than the face's size
    ok = track.found
    shift = np.linalg.norm(track.landmarks[ok] - track.raw[ok], axis=-1).mean()
    eyes = np.mean([np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0))) for lm in track.raw[ok]])
    assert shift < 0.1 * eyes


# ----------------------------------------------------------------------------------------------------------
# Frame selection, smoothing


def test_positions_and_selection(tmp_path):
    assert parse_position(None) is None
    assert parse_position(2) == ("s", 2.0) and parse_position("2.5s") == ("s", 2.5)
    assert parse_position("1:02.5") == ("s", 62.5) and parse_position("30f") == ("f", 30.0)
    for bad in ("abc", "-1", "2x", True, -0.5, float("nan")):
        with pytest.raises(InputError):
            parse_position(bad, "start")
    frames = np.zeros((20, 16, 16, 3), np.uint8)
    frames[:, :, :] = np.arange(20, dtype=np.uint8)[:, None, None, None] * 12
    info = probe_video(_clip(tmp_path / "count.mp4", frames, fps=10))
    assert info.num_frames == 20
    assert select_frames(info).tolist() == list(range(20))
    assert select_frames(info, start=0.5, end="1.2s", stride=2).tolist() == [5, 7, 9, 11]
    assert select_frames(info, start="3f", end="7f").tolist() == [3, 4, 5, 6]
    assert select_frames(info, end=99).tolist() == list(range(20))
    with pytest.raises(InputError, match=r"count.mp4: zero frames selected: start 1.0 is not before end 1.0"):
        select_frames(info, start=1.0, end=1.0)
    with pytest.raises(InputError, match=r"count.mp4: zero frames selected: start 5 is past the end"):
        select_frames(info, start=5)
    with pytest.raises(InputError, match="stride must be"):
        select_frames(info, stride=0)
    got = dict(iter_frames(info, [4, 1, 17]))
    assert sorted(got) == [1, 4, 17]
    assert abs(float(got[17].mean()) - 17 * 12) < 4  # the right frames, in spite of H.264


def test_spread():
    assert spread(5, None).tolist() == [0, 1, 2, 3, 4]
    assert spread(5, 12).tolist() == [0, 1, 2, 3, 4]
    assert spread(10, 4).tolist() == [0, 3, 6, 9]
    assert spread(10, 2).tolist() == [0, 9]


def test_smoothing_removes_jitter_and_keeps_motion():
    rng = np.random.default_rng(0)
    T = 40
    t = np.arange(T) / 25.0
    base = rng.uniform(100, 200, (68, 2))
    base[36:42] = [100, 100]  # eyes 50 px apart
    base[42:48] = [150, 100]
    moving = base[None] + t[:, None, None] * np.array([30.0, -12.0])  # a head moving at constant speed
    np.testing.assert_allclose(smooth_landmarks(moving, t, 7), moving, atol=1e-8)  # polynomials pass through
    noisy = moving + rng.normal(0, 1.0, moving.shape)
    smoothed = smooth_landmarks(noisy, t, 7)
    assert np.abs(smoothed - moving).mean() < 0.6 * np.abs(noisy - moving).mean()
    assert landmark_jitter(smoothed) < 0.3 * landmark_jitter(noisy)
    # runs are smoothed separately; frames outside runs are left alone
    seg = np.where(np.arange(T) < 20, 0, 1)
    seg[10] = -1
    s2 = smooth_landmarks(noisy, t, 7, seg)
    np.testing.assert_array_equal(s2[10], noisy[10])
    assert np.abs(s2[20:] - smooth_landmarks(noisy[20:], t[20:], 7)).max() < 1e-9
    np.testing.assert_array_equal(smooth_landmarks(noisy, t, 1), noisy)
    assert math.isnan(landmark_jitter(noisy[:2]))


# ----------------------------------------------------------------------------------------------------------
# Faces: two people, none


def _two_people(tmp_path, frames: int = 4):
    big = _astronaut()  # 512x512, one face
    small = big.transpose(Image.FLIP_LEFT_RIGHT).resize((320, 320), Image.LANCZOS)
    canvas = Image.new("RGB", (832, 512), (128, 128, 128))
    canvas.paste(big, (0, 0))
    canvas.paste(small, (512, 96))
    arr = np.stack([np.asarray(canvas)] * frames)
    return _clip(tmp_path / "two.mp4", arr)


def test_two_people_tracks_the_largest_and_says_so(tmp_path, caplog):
    path = _two_people(tmp_path)
    with caplog.at_level(logging.WARNING, logger="micromotion.anchors.video"):
        track = track_face(path, progress=False)
    assert track.faces_seen == 2 and track.num_found == 4 and track.face_index == 0
    assert any("2 faces" in r.getMessage() and "tracking face 0 (0 is the largest" in r.getMessage()
               for r in caplog.records)
    assert track.landmarks[:, :, 0].mean() < 512  # on the astronaut, not on her smaller mirror image
    other = track_face(path, face_index=1, progress=False)
    assert other.landmarks[:, :, 0].mean() > 512
    with pytest.raises(InputError, match=r"two.mp4: no face found .* or a smaller face index \(2 face"):
        track_face(path, face_index=2, progress=False)

    G = _tiny()
    anchors = anchors_from_video(G, path, steps=2, progress=False, loss="pixel")
    tracking = anchors.source["tracking"]
    assert tracking["multiple_faces"] is True and tracking["faces_seen"] == 2 and tracking["face_index"] == 0
    assert tracking["frames_with_face"] == 4 and tracking["frames_without_face"] == 0
    assert len(anchors) == 4 and anchors.latents.shape[1:] == (G.num_ws, G.w_dim)


def test_aligned_frames_follow_the_photo_recipe(tmp_path):
    """A still clip of a photo: every anchor frame is the FFHQ crop of the photo itself."""
    from micromotion.align import align_face

    photo = _astronaut()
    path = _clip(tmp_path / "still.mp4", np.stack([np.asarray(photo)] * 3))
    G = _tiny()
    result = video_anchors(G, path, steps=2, progress=False, loss="pixel")
    ref = np.asarray(align_face(photo, size=32).image, dtype=np.float32)
    for frame in result.frames:
        assert np.abs(frame.astype(np.float32) - ref).mean() < 12  # H.264 and landmark noise, same crop
    assert result.track.num_found == 3


# ----------------------------------------------------------------------------------------------------------
# Bad input: clear errors naming the file, nothing written


def _listing(folder):
    return sorted(os.listdir(folder))


def test_bad_videos(tmp_path):
    G = _tiny()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    before = _listing(tmp_path)
    with pytest.raises(InputError, match=r"corrupt.mp4: not a readable video"):
        anchors_from_video(G, corrupt, progress=False)
    with pytest.raises(InputError, match=r"missing.mp4: no such video file"):
        anchors_from_video(G, tmp_path / "missing.mp4", progress=False)
    with pytest.raises(InputError, match=r"is a folder"):
        probe_video(tmp_path)
    assert _listing(tmp_path) == before

    plain = _clip(tmp_path / "plain.mp4", np.full((6, 64, 64, 3), 90, np.uint8))
    before = _listing(tmp_path)
    with pytest.raises(InputError, match=r"plain.mp4: no face found in any of the 6 frames"):
        anchors_from_video(G, plain, steps=2, progress=False)
    with pytest.raises(InputError, match=r"plain.mp4: zero frames selected"):
        anchors_from_video(G, plain, start="4f", end="2f", progress=False)
    with pytest.raises(InputError, match=r"plain.mp4: only 1 frame"):
        anchors_from_video(G, plain, align=False, start="5f", progress=False)
    with pytest.raises(InputError, match="max_frames must be"):
        anchors_from_video(G, plain, align=False, max_frames=1, progress=False)
    with pytest.raises(InputError, match="unknown inversion method"):
        anchors_from_video(G, plain, align=False, method="magic", progress=False)
    wide = _clip(tmp_path / "wide.mp4", np.full((3, 32, 64, 3), 90, np.uint8))
    with pytest.raises(InputError, match=r"wide.mp4: frames are 64x32, not square"):
        anchors_from_video(G, wide, align=False, progress=False)
    assert _listing(tmp_path) == sorted(before + ["wide.mp4"])


# ----------------------------------------------------------------------------------------------------------
# micromotion extract --video


def _cli(args):
    from click.testing import CliRunner

    from micromotion.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_extract_video(tmp_path):
    from micromotion.checkpoint import save_generator

    G = _tiny()
    model = save_generator(G, tmp_path / "tiny.safetensors")
    with torch.no_grad():
        ws = G.w_avg.expand(6, G.num_ws, -1) + torch.linspace(0, 1, 6)[:, None, None]
        frames = to_uint8(F.interpolate(G.synthesis(ws, noise_mode="const"), size=64, mode="bicubic"))
    clip = _clip(tmp_path / "world.mp4", frames, fps=6)
    out = tmp_path / "motion.safetensors"
    base = ["extract", "--model", str(model), "--device", "cpu", "-o", str(out)]
    r = _cli([*base, "--video", str(clip), "--aligned", "--start", "1f", "--max-frames", "3", "--steps", "4"])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: 3 anchors [{G.num_ws}, {G.w_dim}]" in r.output
    anchors = Anchors.load(out)
    np.testing.assert_allclose(anchors.labels, [1 / 6, 3 / 6, 5 / 6], atol=1e-6)
    assert anchors.source["frames"] == [1, 3, 5] and anchors.source["inversion"]["steps"] == 4
    with Image.open(out.with_suffix(".png")) as im:  # the strip: frames over reconstructions
        assert im.size == (3 * 132 + 4, 2 * 132 + 14 + 4)

    corrupt = tmp_path / "corrupt.webm"
    corrupt.write_bytes(b"\x1aE\xdf\xa3 not really a webm" * 50)
    before = _listing(tmp_path)
    other = tmp_path / "other.safetensors"
    for args, message in [
        (["--video", str(corrupt)], "corrupt.webm: not a readable video"),
        (["--video", str(tmp_path / "nope.mp4")], "nope.mp4: no such video file"),
        (["--video", str(clip), "--aligned", "--start", "2", "--end", "1"], "world.mp4: zero frames selected"),
        (["--video", str(clip), "--start", "soon"], "--start 'soon' is not a clip position"),
        (["--video", str(clip)], "world.mp4: no face found in any of the 6 frames"),
    ]:
        r = _cli(["extract", "--model", str(model), "--device", "cpu", "-o", str(other), *args])
        assert r.exit_code == 1, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, r.output)
    assert _listing(tmp_path) == before
    r = _cli([*base, "--overwrite", "--video", str(clip), "--text", "a {degree} smile"])
    assert r.exit_code == 2 and "give only one anchor source, not --text and --video" in r.output
    r = _cli(["extract", "-o", str(other)])
    assert r.exit_code == 2 and "give one anchor source: --text or --video" in r.output
    assert _listing(tmp_path) == before


def test_identity_changes_between_runs_of_a_track(monkeypatch):
    """A track that restarts on another person (a cut) is reported with the time it restarted and the distance;
    the same person in every run, or a single run, is not."""
    import micromotion.models.dlib_face as dlib_face
    from micromotion.anchors.video import identity_changes

    class ByColour(torch.nn.Module):  # a stand-in descriptor: the chip's mean colour, scaled
        def embed(self, chips):
            return chips.mean((2, 3)) * 2

    monkeypatch.setattr(dlib_face, "load_dlib_face", lambda *a, **k: ByColour())
    a, b = torch.full((1, 3, 64, 64), -0.5), torch.full((1, 3, 64, 64), 0.5)
    times = [0.0, 0.5, 1.0, 1.5, 2.0]
    got = identity_changes(torch.cat([a, a, b, b, a]), np.array([0, 0, 1, 1, 2]), times)
    assert got == [{"time": 1.0, "distance": round(2 * math.sqrt(3), 3), "threshold": 0.6}]
    assert identity_changes(torch.cat([a, a, a + 0.05]), np.array([0, 0, 1]), times) == []  # same person
    assert identity_changes(torch.cat([a, b]), np.array([0, 0]), times) == []  # one run: nothing to compare


def test_identity_changes_with_dlib_on_two_people(reference_dir):
    """With dlib's own network: two different people of the paper's examples are a change, one person is not."""
    from micromotion.align import align_face
    from micromotion.anchors.video import identity_changes
    from micromotion.invert import image_to_tensor

    ref = reference_dir / "paper_examples"
    x, y = (image_to_tensor(align_face(ref / f, size=256).image) for f in ("01.jpg", "pope.jpg"))
    flipped = x.flip(-1)  # the same face mirrored: still the same person to dlib
    assert identity_changes(torch.cat([x, x, flipped]), np.array([0, 0, 1]), [0, 1, 2]) == []
    got = identity_changes(torch.cat([x, y]), np.array([0, 1]), [0.0, 3.2])
    assert len(got) == 1 and got[0]["time"] == 3.2 and got[0]["distance"] > 0.6
