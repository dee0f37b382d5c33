"""micromotion.invert: the optimization projector, LPIPS, Inversion, latent files and the `invert` command."""
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from micromotion.checkpoint import save_generator
from micromotion.cli import main
from micromotion.errors import InputError, MicromotionError
from micromotion.invert import (LPIPSVGG, Inversion, PixelLoss, image_to_tensor, invert, load_latent, make_loss,
                                project, psnr, save_latent, synthesize, tensor_to_image, w_stats)
from micromotion.models.stylegan2 import Generator, GeneratorConfig


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny networks: on a shared 2-core machine, thread hand-offs cost more than the arithmetic.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(resolution=32, seed=0):
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig.tiny(resolution)).eval().requires_grad_(False)
    G.compute_w_avg()
    return G


def _w_plus_targets(G, n, psi=0.5, seed=1):
    """Images rendered from genuine W+ codes: a different w for every layer, truncated towards the mean."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = G.mapping_net(torch.randn(n * G.num_ws, G.z_dim, generator=g)).view(n, G.num_ws, G.w_dim)
        ws = G.w_avg.lerp(w, psi)
        return ws, G.synthesis(ws)


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
# Inversion of a photo, latent files


def test_image_tensor_round_trip():
    a = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    t = image_to_tensor(Image.fromarray(a))
    assert t.shape == (1, 3, 16, 16) and -1 <= t.min() and t.max() <= 1
    np.testing.assert_array_equal(np.asarray(tensor_to_image(t[0])), a)
    assert len(tensor_to_image(t.repeat(2, 1, 1, 1))) == 2


@pytest.fixture(scope="module")
def astronaut_path(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    pytest.importorskip("dlib")
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def test_invert_a_photo(astronaut_path):
    torch.set_num_threads(1)
    G = _tiny(64)
    inv = invert(G, astronaut_path, steps=20, loss="pixel", progress=False)
    assert isinstance(inv, Inversion) and inv.method == "projector"
    assert inv.ws.shape == (1, G.num_ws, G.w_dim) and inv.reconstruction.shape == (1, 3, 64, 64)
    assert inv.image.size == (64, 64) and inv.aligned.detector == "hog"
    assert inv.details["space"] == "W+" and inv.details["loss"] == "pixel" and inv.details["steps"] == 20
    # The transform maps the render's outer corners onto the quad in the photo.
    corners = np.array([[-0.5, -0.5], [-0.5, 63.5], [63.5, 63.5], [63.5, -0.5]])
    h = corners @ inv.transform[:2, :2].T + inv.transform[:2, 2]
    np.testing.assert_allclose(h, inv.aligned.quad, atol=1e-9)
    pasted = inv.paste_back()
    assert pasted.size == (512, 512)
    assert inv.reconstruction_image().size == (64, 64)


def test_invert_aligned_crop_and_bad_method(tmp_path):
    G = _tiny(32)
    crop = tmp_path / "crop.png"
    Image.new("RGB", (48, 48), (90, 120, 150)).save(crop)
    inv = invert(G, crop, align=False, steps=3, loss="pixel", progress=False)
    assert inv.aligned is None and inv.transform is None and inv.image.size == (32, 32)
    with pytest.raises(InputError, match="no photo to paste into"):
        inv.paste_back()
    wide = tmp_path / "wide.png"
    Image.new("RGB", (64, 32)).save(wide)
    with pytest.raises(InputError, match=r"wide\.png: 64x32 is not square"):
        invert(G, wide, align=False, steps=1, progress=False)
    with pytest.raises(InputError, match="unknown inversion method 'restyle'; choose one of: auto, projector"):
        invert(G, crop, method="restyle", align=False)


def test_latent_files_round_trip(tmp_path):
    G = _tiny(32)
    _, target = _w_plus_targets(G, 1)
    crop = tmp_path / "crop.png"
    tensor_to_image(target[0]).save(crop)
    inv = invert(G, crop, align=False, steps=3, loss="pixel", optimize_noise=True, progress=False)
    st = save_latent(inv, tmp_path / "latent.safetensors", metadata={"model": "tiny"})
    ws, meta = load_latent(st)
    torch.testing.assert_close(ws, inv.ws)
    assert meta["format"] == "micromotion-latent" and meta["method"] == "projector" and meta["model"] == "tiny"
    assert len(meta["noise"]) == len(G.synthesis_net.layers)
    pt = save_latent(inv, tmp_path / "latent.pt")
    plain = torch.load(pt, weights_only=True)  # the original repository's format: a bare tensor
    assert isinstance(plain, torch.Tensor) and plain.shape == (1, G.num_ws, G.w_dim)
    torch.testing.assert_close(load_latent(pt)[0], inv.ws)
    with pytest.raises(InputError, match=r"unknown latent file extension '\.npy'"):
        save_latent(inv, tmp_path / "latent.npy")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"junk\.pt: not a readable torch tensor file"):
        load_latent(tmp_path / "junk.pt")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


# ----------------------------------------------------------------------------------------------------------
# The `invert` command


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(64))
    G.compute_w_avg()
    return save_generator(G, tmp_path_factory.mktemp("models") / "tiny64.safetensors")


def test_cli_invert_writes_latent_and_images(tmp_path, tiny_model, astronaut_path):
    out = tmp_path / "latent.safetensors"
    args = ["invert", str(astronaut_path), "--model", str(tiny_model), "-o", str(out), "--steps", "10",
            "--loss", "pixel", "--device", "cpu", "--reconstruction", str(tmp_path / "rec.png"),
            "--aligned", str(tmp_path / "aligned.png"), "--composite", str(tmp_path / "pasted.jpg")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    ws, meta = load_latent(out)
    assert ws.shape == (1, 10, 16) and meta["detector"] == "hog" and meta["model"] == str(tiny_model)
    assert np.array(json.loads(meta["transform"])).shape == (3, 3)
    assert Image.open(tmp_path / "rec.png").size == (64, 64)
    assert Image.open(tmp_path / "aligned.png").size == (64, 64)
    assert Image.open(tmp_path / "pasted.jpg").size == (512, 512)


def test_cli_invert_w_mode_pt_output(tmp_path, tiny_model, astronaut_path):
    out = tmp_path / "latent.pt"
    r = CliRunner().invoke(main, ["invert", str(astronaut_path), "--model", str(tiny_model), "-o", str(out),
                                  "--steps", "3", "--w", "--loss", "pixel", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    ws = torch.load(out, weights_only=True)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


def test_cli_invert_no_face_writes_nothing(tmp_path, tiny_model):
    pytest.importorskip("dlib")
    src, out = tmp_path / "wall.png", tmp_path / "latent.pt"
    Image.new("RGB", (64, 64), (40, 50, 60)).save(src)
    r = CliRunner().invoke(main, ["invert", str(src), "--model", str(tiny_model), "-o", str(out),
                                  "--reconstruction", str(tmp_path / "rec.png"), "--device", "cpu"])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "wall.png: no face found" in lines[0], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall.png"]


def test_cli_invert_bad_output_fails_before_work(tmp_path, tiny_model):
    src = tmp_path / "missing.png"  # never read: the output is checked first
    r = CliRunner().invoke(main, ["invert", str(src), "--model", str(tiny_model), "-o", str(tmp_path / "l.npy")])
    assert r.exit_code == 1 and "unknown latent file extension '.npy'" in r.output
    r = CliRunner().invoke(main, ["invert", str(src), "--model", str(tiny_model), "-o", str(tmp_path / "l.pt"),
                                  "--composite", str(tmp_path / "nowhere" / "c.png")])
    assert r.exit_code == 1 and "does not exist" in r.output
    assert list(tmp_path.iterdir()) == []
