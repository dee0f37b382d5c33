"""The world's renderer: determinism, shapes, stored values, and each motion showing where it should."""
import pytest
import torch

from micromotion.errors import InputError
from micromotion.world.faces import (FACTOR_SPECS, HAIR_STYLES, MOTION_FACTORS, Factors, motion_track, render,
                                      render_clip, sample_factors)


def _box(y0, y1, x0, x1, size=128):
    """Pixel slices of a box in normalized image coordinates (x, y in [-1, 1], y down)."""
    px = lambda v: int(round((v + 1) / 2 * size))  # noqa: E731
    return slice(px(y0), px(y1)), slice(px(x0), px(x1))


def test_sample_factors_seeded_and_in_range():
    a = sample_factors(64, torch.Generator().manual_seed(1))
    b = sample_factors(64, torch.Generator().manual_seed(1))
    c = sample_factors(64, torch.Generator().manual_seed(2))
    assert len(a) == 64
    for (k, va), (_, vb), (_, vc) in zip(a.items(), b.items(), c.items()):
        assert torch.equal(va, vb), k
        assert not torch.equal(va, vc), k
        s = FACTOR_SPECS[k]
        assert va.min() >= s.low and va.max() <= s.high, k
    assert set(a.hair_style.tolist()) <= set(range(len(HAIR_STYLES)))
    n = sample_factors(8, torch.Generator().manual_seed(1), motion="neutral")
    assert all((getattr(n, k) == FACTOR_SPECS[k].neutral).all() for k in MOTION_FACTORS)


def test_render_shapes_range_and_determinism():
    f = sample_factors(3, torch.Generator().manual_seed(0))
    a, b = render(f), render(f)
    assert a.shape == (3, 3, 128, 128) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert render(f, size=64).shape == (3, 3, 64, 64)
    # each face depends on its own factors only (batching does not change pixels)
    assert torch.allclose(render(f[1]), a[1:2], atol=1e-6)
    assert render(f[0:0]).shape == (0, 3, 128, 128)


def test_render_stored_values():
    # guards the world: the oracle and the generator were trained on exactly these pixels
    img = render(sample_factors(3, torch.Generator().manual_seed(0)))
    means = torch.tensor([[0.15358, 0.19480, -0.16571], [0.18203, -0.18974, -0.12110], [-0.10114, -0.26736, -0.10927]])
    assert torch.allclose(img.mean(dim=(2, 3)), means, atol=2e-4)
    row = torch.tensor([[0.40564, 0.28676, 0.29371, -0.20363], [0.11343, 0.01228, 0.24961, 0.60875],
                        [0.61175, 0.64769, 0.61852, 0.46635]])
    assert torch.allclose(img[:, :, 64, 60:64].reshape(3, -1)[:, :4], row, atol=2e-3)


# motion -> region where it must show (neutral identity: eyes at y=-0.01, brows -0.13, mouth 0.33)
REGIONS = {
    "smile": (0.20, 0.45, -0.25, 0.25),
    "anger": (-0.22, -0.06, -0.30, 0.30),
    "eyes_closed": (-0.07, 0.03, -0.30, 0.30),
    "age": (-0.70, 0.50, -0.45, 0.45),  # paler skin, then wrinkles and gray hair
    "head_turn": (-0.30, 0.55, -0.45, 0.45),
}


@pytest.mark.parametrize("motion", MOTION_FACTORS)
def test_motion_changes_its_region_monotonically(motion):
    spec = FACTOR_SPECS[motion]
    base = Factors.neutral(1).replace(hair_style=0, glasses=0)
    start = spec.neutral if motion == "head_turn" else spec.low
    values = torch.linspace(start, spec.high, 5)
    imgs = render(Factors.cat([base.replace(**{motion: float(v)}) for v in values]))
    ys, xs = _box(*REGIONS[motion])
    change = (imgs - imgs[:1]).abs()
    inside = change[:, :, ys, xs].mean(dim=(1, 2, 3))
    assert (inside[1:] > inside[:-1]).all(), (motion, inside.tolist())
    assert inside[-1] > 0.02, (motion, inside.tolist())
    if motion in ("smile", "anger", "eyes_closed"):  # local: far more change inside than in the image overall
        assert inside[-1] > 3 * change[-1].mean(), motion


def test_eyes_closed_hides_the_iris():
    base = Factors.neutral(2).replace(eye_color=0.8, glasses=0)  # blue eyes
    img = render(base.replace(eyes_closed=torch.tensor([0.0, 1.0])))
    ys, xs = _box(-0.05, 0.03, -0.30, 0.30)
    blue = (img[:, 2] - img[:, 0])[:, ys, xs]  # blue minus red
    assert blue[0].max() > 0.3 and blue[1].max() < 0.1


def test_head_turn_moves_features_with_the_sign():
    base = Factors.neutral(3).replace(glasses=0)
    img = render(base.replace(head_turn=torch.tensor([-1.0, 0.0, 1.0])))
    ys, _ = _box(0.20, 0.45, 0, 1)
    lips = (img[:, 0] - img[:, 1] - 0.65).clamp(min=0)[:, ys].sum(1)  # red lips in the mouth band, per column
    col = (lips * torch.arange(128)).sum(1) / lips.sum(1)
    assert abs(col[1] - 63.5) < 1  # frontal: centred
    assert col[0] < col[1] - 8 and col[2] > col[1] + 8  # +1 moves the mouth to the image's right


def test_factors_roundtrip_and_errors():
    f = sample_factors(4, torch.Generator().manual_seed(3))
    g = Factors.from_dicts(f.to_dicts())
    assert all(torch.allclose(a, b, atol=1e-5) for (_, a), (_, b) in zip(f.items(), g.items()))
    assert isinstance(f.to_dicts()[0]["hair_style"], int)
    with pytest.raises(InputError, match="unknown factor 'grin'"):
        f.replace(grin=1.0)
    with pytest.raises(InputError, match=r"'smile' must be in \[0, 1\]"):
        f.replace(smile=1.5).validate()
    with pytest.raises(InputError, match="expected 4"):
        Factors(**{k: (v[:3] if k == "jaw" else v) for k, v in f.items()})
    with pytest.raises(InputError, match="takes a Factors"):
        render(torch.zeros(1, 22))


def test_clip_track_eases_and_jitters():
    ident = sample_factors(1, torch.Generator().manual_seed(5), motion="neutral")
    t = motion_track(ident, "smile", 16, jitter=0.03, generator=torch.Generator().manual_seed(0))
    assert len(t) == 16
    assert t.smile[0] == 0 and t.smile[-1] == 1 and (t.smile[1:] >= t.smile[:-1]).all()
    assert t.smile[1] - t.smile[0] < t.smile[8] - t.smile[7]  # eases in
    for k in ("anger", "age", "eyes_closed", "head_turn"):
        v = getattr(t, k)
        assert (v - v[0]).abs().max() < 0.2 * FACTOR_SPECS[k].span, k
    assert (t.anger > 0).any()  # jitter happens
    assert torch.equal(t.face_width, ident.face_width.expand(16))  # identity stays
    t2 = motion_track(ident, "smile", 16, jitter=0.03, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t.head_turn, t2.head_turn)
    with pytest.raises(InputError, match="unknown motion 'smirk'"):
        motion_track(ident, "smirk", 8)


def test_render_clip_frames():
    ident = sample_factors(1, torch.Generator().manual_seed(6), motion="neutral")
    frames, track = render_clip(ident, "eyes_closed", frames=4, size=64, generator=torch.Generator().manual_seed(0))
    assert frames.shape == (4, 3, 64, 64) and len(track) == 4
    assert torch.equal(frames[2:3], render(track[2], 64))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    f = sample_factors(4, torch.Generator().manual_seed(0))
    a = render(f)
    b = render(f.to("cuda")).cpu()
    assert torch.allclose(a, b, atol=2e-3)
