"""micromotion.invert.projector: the optimization projector, its losses (LPIPS, pixel), image <-> tensor."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from micromotion.errors import InputError, MicromotionError
from micromotion.invert import (LPIPSVGG, PixelLoss, get_lr, image_to_tensor, make_loss, project, projector, psnr,
                                synthesize, tensor_to_image, w_stats)

from invert_helpers import _tiny, _w_plus_targets, one_thread  # noqa: F401  (one_thread: autouse)


# ----------------------------------------------------------------------------------------------------------
# Projector


def test_projector_recovers_w_plus_images():
    G = _tiny(32)
    _, target = _w_plus_targets(G, 3)
    result = project(G, target, steps=200, loss="pixel", progress=False)
    assert result.ws.shape == (3, G.num_ws, G.w_dim) and result.noise is None and result.loss == "pixel"
    with torch.no_grad():
        p = psnr(synthesize(G, result.ws), target)
    assert (p >= 30).all(), p
    assert result.distance.shape == (3,)
    assert not any(t.grad is not None for t in G.parameters())  # G untouched


def test_projector_w_mode_gives_one_w_for_all_layers():
    G = _tiny(32)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)), 0.5))
    result = project(G, target, steps=120, w_plus=False, loss="pixel", progress=False)
    ws = result.ws
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    assert psnr(synthesize(G, ws), target).item() > 25


def test_projector_steps_are_deterministic_and_move_from_the_mean():
    G = _tiny(32)
    _, target = _w_plus_targets(G, 1)
    a = project(G, target, steps=5, loss="pixel", progress=False, seed=7)
    b = project(G, target, steps=5, loss="pixel", progress=False, seed=7)
    assert torch.equal(a.ws, b.ws)
    w_avg, _ = w_stats(G)
    assert not torch.allclose(a.ws, w_avg.expand_as(a.ws))


def test_projector_noise_optimization_and_regularization():
    G = _tiny(32)
    for layer in G.synthesis_net.layers:  # make noise matter
        layer.noise_strength.data.fill_(0.3)
    _, target = _w_plus_targets(G, 2)
    result = project(G, target, steps=30, loss="pixel", optimize_noise=True, progress=False)
    layers = G.synthesis_net.layers
    assert result.noise is not None and len(result.noise) == len(layers)
    for n, layer in zip(result.noise, layers):
        assert n.shape == (2, 1, layer.resolution, layer.resolution)
        # renormalized after every step, per image
        torch.testing.assert_close(n.mean((1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(n.square().mean((1, 2, 3)), torch.ones(2), atol=1e-4, rtol=0)
    with torch.no_grad():
        with_noise = synthesize(G, result.ws, result.noise)
        const = synthesize(G, result.ws)
    assert not torch.allclose(with_noise, const)
    torch.testing.assert_close(PixelLoss()(with_noise, target), result.distance)  # distance is of this render
    torch.testing.assert_close(layers[0].noise_const.shape, torch.Size([4, 4]))  # buffers not replaced


def test_projector_rejects_wrong_shapes():
    G = _tiny(32)
    with pytest.raises(ValueError, match=r"target must have shape \[N, 3, 32, 32\]"):
        project(G, torch.zeros(1, 3, 64, 64), steps=1, progress=False)
    with pytest.raises(InputError, match="steps must be at least 1"):
        project(G, torch.zeros(1, 3, 32, 32), steps=0, progress=False)


def test_init_ws_starts_there():
    G = _tiny(32)
    ws, target = _w_plus_targets(G, 1)
    result = project(G, target, steps=1, loss="pixel", init_ws=ws, progress=False)
    torch.testing.assert_close(result.ws, ws)  # the first step's learning rate is 0 (ramp-up)


def test_one_learning_rate_ramp_for_the_projector_and_text_anchors(monkeypatch):
    from micromotion.anchors import text

    assert text.get_lr is get_lr  # StyleCLIP's text optimization uses the projector's schedule

    def as_written(t, lr, down, up):  # NVIDIA's projector.py and StyleCLIP's optimization/run_optimization.py
        ramp = min(1.0, (1.0 - t) / down)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        return lr * ramp * min(1.0, t / up)

    for t in (0.0, 0.01, 0.05, 0.3, 0.75, 0.8, 0.99):
        for down, up in ((0.25, 0.05), (0.5, 0.1)):
            assert get_lr(t, 0.1, down, up) == as_written(t, 0.1, down, up)
    assert get_lr(0.0, 0.1) == 0 and get_lr(0.5, 0.1) == 0.1 and get_lr(0.875, 0.1) == pytest.approx(0.05)
    G = _tiny(32)
    _, target = _w_plus_targets(G, 1)
    seen = []
    monkeypatch.setattr(projector, "get_lr", lambda t, lr, down, up: seen.append((t, lr, down, up)) or lr)
    project(G, target, steps=4, loss="pixel", initial_learning_rate=0.07, lr_rampdown_length=0.5, progress=False)
    assert seen == [(i / 4, 0.07, 0.5, 0.05) for i in range(4)]


# ----------------------------------------------------------------------------------------------------------
# Losses


def _golden_lpips_state():
    g = torch.Generator().manual_seed(2024)
    vgg, lin, ch, i = {}, {}, 3, 0
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            i += 1
            continue
        vgg[f"features.{i}.weight"] = torch.randn(v, ch, 3, 3, generator=g) * math.sqrt(2 / (ch * 9))
        vgg[f"features.{i}.bias"] = torch.randn(v, generator=g) * 0.01
        ch, i = v, i + 2
    for k, c in enumerate((64, 128, 256, 512, 512)):
        lin[f"lin{k}.model.1.weight"] = torch.rand(1, c, 1, 1, generator=g) * 0.1
    x = torch.rand(2, 3, 48, 48, generator=g) * 2 - 1
    y = torch.rand(2, 3, 48, 48, generator=g) * 2 - 1
    return vgg, lin, x, y


def test_lpips_matches_the_reference_implementation():
    """Golden values from richzhang's `lpips` 0.1.4 (`LPIPS(net='vgg')`) with these deterministic weights."""
    vgg, lin, x, y = _golden_lpips_state()
    m = LPIPSVGG.from_state_dicts(vgg, lin)
    with torch.no_grad():
        d = m(x, y)
        same = m(x, x)
    torch.testing.assert_close(d, torch.tensor([0.07816273719072342, 0.07812780141830444]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(same, torch.zeros(2))


def test_lpips_weights_errors():
    vgg, lin, _, _ = _golden_lpips_state()
    with pytest.raises(MicromotionError, match="lack lin2.model.1.weight"):
        LPIPSVGG.from_state_dicts(vgg, {k: v for k, v in lin.items() if not k.startswith("lin2")})
    with pytest.raises(MicromotionError, match=r"lack features\.0\.bias"):
        LPIPSVGG.from_state_dicts({k: v for k, v in vgg.items() if k != "features.0.bias"}, lin)


def test_loss_falls_back_to_pixel_without_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    assert isinstance(make_loss("auto"), PixelLoss)
    with pytest.raises(MicromotionError, match="the LPIPS loss needs cached weights"):
        make_loss("lpips")
    with pytest.raises(InputError, match="unknown loss 'l1'"):
        make_loss("l1")


def test_loss_uses_lpips_when_weights_are_cached(tmp_path, monkeypatch):
    weights = pytest.importorskip("micromotion.weights")
    vgg, lin, _, _ = _golden_lpips_state()
    files = {"vgg16-imagenet": tmp_path / "vgg.pth", "lpips-vgg": tmp_path / "lin.pth"}
    torch.save(vgg, files["vgg16-imagenet"])
    torch.save(lin, files["lpips-vgg"])
    calls = []

    def fake_resolve(name, cache_dir=None, download=True, **kw):
        calls.append((name, download))
        return files[name]

    monkeypatch.setattr(weights, "resolve", fake_resolve)
    loss = make_loss("auto")
    assert isinstance(loss, LPIPSVGG)
    assert all(download is False for _, download in calls)  # never downloads on its own
    G = _tiny(32)
    _, target = _w_plus_targets(G, 1)
    result = project(G, target, steps=3, loss="lpips", progress=False)
    assert result.loss == "lpips" and torch.isfinite(result.distance).all()


def test_pixel_loss_is_zero_for_identical_images_and_per_image():
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    loss = PixelLoss()
    torch.testing.assert_close(loss(x, x), torch.zeros(3))
    y = x.clone()
    y[1] += 0.1
    d = loss(y, x)
    assert d[0] == 0 and d[2] == 0 and d[1] > 0


# ----------------------------------------------------------------------------------------------------------
# Image <-> tensor


def test_image_tensor_round_trip():
    a = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    t = image_to_tensor(Image.fromarray(a))
    assert t.shape == (1, 3, 16, 16) and -1 <= t.min() and t.max() <= 1
    np.testing.assert_array_equal(np.asarray(tensor_to_image(t[0])), a)
    assert len(tensor_to_image(t.repeat(2, 1, 1, 1))) == 2
