"""dlib's face-recognition network: equality with dlib itself on real face chips, the tiny config's shapes and
gradients, and the reader of dlib's file format (round trip, batch-norm folding, errors).

The round-trip tests write dlib's format with `dlib_bytes` below, a transcription of the `serialize`
functions of dlib/serialize.h, dlib/cuda/tensor.h and dlib/dnn/{core,layers,input,loss}.h; that the reader
reads dlib's own writer is shown by the real file (`test_matches_dlib_*`).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from micromotion.errors import CheckpointError, MissingDependencyError
from micromotion.models.dlib_face import (MODEL_FILE, SAME_PERSON_DISTANCE, DlibFace, DlibFaceConfig, ResBlock,
                                          _add_zero_filled, dlib_layout, load_dlib_face, read_dlib_face)

# Per descriptor component, against dlib: measured ~3e-7; 1e-3 would not notice dividing by 255 instead of 256
# (3e-4), a missing zero fill of dlib's add_prev is 0.3.
TOLERANCE = 1e-5

# ----------------------------------------------------------------------------------------------------------
# dlib's serialization, written


def _int(v: int) -> bytes:
    mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def _float(x: float) -> bytes:
    m, e = math.frexp(float(np.float32(x)))
    return _int(int(m * (1 << 24))) + _int(e - 24)


def _str(s: str) -> bytes:
    return _int(len(s)) + s.encode()


def _tensor(a, shape=None) -> bytes:
    a = np.asarray(a, dtype="<f4")
    shape = shape or (a.size, 1, 1, 1)
    return _int(2) + b"".join(_int(n) for n in shape) + a.tobytes()


def _alias(*shape) -> bytes:
    return _int(1) + b"".join(_int(n) for n in shape)


EMPTY = _tensor(np.zeros(0), (0, 0, 0, 0))


def _details(item, sd: dict, bn: dict) -> bytes:
    _, kind, attrs, tensors = item
    if kind == "con":
        w, b = (sd[tensors[n][0]].numpy() for n in ("weight", "bias"))
        return (_str("con_4") + _tensor(np.concatenate([w.ravel(), b])) +
                b"".join(_int(attrs[k]) for k in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y",
                                                  "padding_x")) +
                _alias(*w.shape) + _alias(1, w.shape[0], 1, 1) + b"".join(_float(v) for v in (1, 1, 1, 0)))
    if kind == "affine":
        key = tensors["gamma"][0].removesuffix(".weight")
        n = tensors["gamma"][1][0]
        if key in bn:  # a bn_con2 layer, as a trained net with bn_con holds it
            gamma, beta, mean, var, eps = bn[key]
            return (_str("bn_con2") + _tensor(np.concatenate([gamma, beta])) + _alias(1, n, 1, 1) * 2 +
                    _tensor(np.zeros(n)) + _tensor(np.ones(n)) + _tensor(mean) + _tensor(var) + _int(1000) +
                    _int(100) + b"".join(_float(v) for v in (1, 1, 1, 0)) + _float(eps))
        g, b = (sd[tensors[k][0]].numpy() for k in ("gamma", "beta"))
        return _str("affine_") + _tensor(np.concatenate([g, b])) + _alias(1, n, 1, 1) * 2 + _int(0)
    if kind == "relu":
        return _str("relu_")
    if kind in ("max_pool", "avg_pool"):
        return _str(f"{kind}_2") + b"".join(_int(attrs[k]) for k in ("nr", "nc", "stride_y", "stride_x",
                                                                       "padding_y", "padding_x"))
    if kind == "add_prev":
        return _str("add_prev_")
    if kind == "fc":
        w = sd[tensors["weight"][0]].numpy().T  # dlib's [inputs, outputs]
        return (_str("fc_2") + _int(w.shape[1]) + _int(w.shape[0]) + _tensor(w) + _alias(*w.shape, 1, 1) +
                _alias(0, 0, 0, 0) + _int(1) + b"".join(_float(v) for v in (1, 1, 1, 0)))
    raise AssertionError(kind)


def dlib_bytes(net: DlibFace, bn: dict | None = None) -> bytes:
    """`serialize(anet_type)` of `net`: loss_metric, the add_layers' versions outermost first, the input layer,
    then each layer's details and state innermost first. `bn`: {affine key: (gamma, beta, mean, var, eps)}
    affine layers to write as batch norms."""
    layout, sd, bn = dlib_layout(net), net.state_dict(), bn or {}
    out = _int(1) + _str("loss_metric_2") + _float(0.04) + _float(0.6)
    for i, item in enumerate(reversed(layout)):
        out += _int((3 if i == len(layout) - 1 else 2) if item[0] == "layer" else 1)
    s = net.cfg.input_size
    out += _str("input_rgb_image_sized") + b"".join(_float(v) for v in net.input_mean.tolist()) + _int(s) + _int(s)
    for i, item in enumerate(it for it in layout if it[0] == "layer"):
        out += _details(item, sd, bn) + b"110" + EMPTY * 3 + (_int(1) if i == 0 else b"")
    return out


def _tiny(seed: int = 0) -> DlibFace:
    torch.manual_seed(seed)
    net = DlibFace(DlibFaceConfig.tiny())
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("affine1.weight") or name.endswith("affine2.weight") or name == "stem_affine.weight":
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.uniform_(-0.2, 0.2)
        net.input_mean.copy_(torch.tensor([120.0, 110.5, 100.25]))
    return net


def _chips(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255


# ----------------------------------------------------------------------------------------------------------
# The module


def test_tiny_shapes_batch_independence_and_input_gradient():
    net = _tiny()
    s = net.cfg.input_size
    x = _chips(3, s).requires_grad_(True)
    out = net(x)
    assert out.shape == (3, net.cfg.embed_dim) and torch.isfinite(out).all()
    torch.testing.assert_close(net(x[1:2]), out[1:2], rtol=1e-5, atol=1e-6)
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[0].abs().sum(0) > 0).float().mean() > 0.5
    with pytest.raises(ValueError, match=r"\[N, 3, 40, 40\]"):
        net(torch.zeros(1, 3, s + 1, s + 1))


def _dlib_size(n: int, k: int, stride: int) -> int:
    return 1 + (n - k) // stride  # dlib's conv/pool output size, no padding


def test_blocks_follow_dlib_sizes_and_zero_filled_addition():
    """dlib's `add_prev` of a down block sums the pooled skip and the conv output over the larger size; the
    tiny net at 40 px has a 3x3 conv output meeting a 4x4 skip, as the real one at 150 px."""
    net = _tiny()
    sizes, n, mismatched = [], _dlib_size(_dlib_size(net.cfg.input_size, net.cfg.stem_kernel, 2), 3, 2), False
    for _, _, stride in net.cfg.blocks():
        if stride > 1:
            conv, pool = _dlib_size(n, 3, 2), _dlib_size(n, 2, 2)
            n, mismatched = max(conv, pool), mismatched or conv != pool
        sizes.append(n)
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1])) for b in net.blocks]
    net(_chips(1, net.cfg.input_size))
    for h in hooks:
        h.remove()
    assert seen == sizes and mismatched

    a, b = torch.randn(2, 4, 4, 4), torch.randn(2, 8, 3, 3)
    want = torch.zeros(2, 8, 4, 4)
    want[:, :4] += a
    want[:, :, :3, :3] += b
    torch.testing.assert_close(_add_zero_filled(a, b), want, rtol=0, atol=0)


def test_down_block_skip_is_avg_pool_with_zero_channels():
    """With the residual branch silenced, a down block is relu(avg_pool(x)) padded with zero channels."""
    block = ResBlock(4, 8, 2)
    with torch.no_grad():
        block.affine2.weight.zero_()
        block.affine2.bias.zero_()
    x = torch.randn(1, 4, 9, 9)
    y = block(x)
    pooled = x[:, :, :8, :8].reshape(1, 4, 4, 2, 4, 2).mean(dim=(3, 5))
    torch.testing.assert_close(y[:, :4], pooled.clamp(min=0))
    assert y.shape == (1, 8, 4, 4) and (y[:, 4:] == 0).all()


def test_embed_takes_crops_in_minus_one_one_of_any_size():
    net = _tiny()
    s = net.cfg.input_size
    crops = _chips(2, s) / 127.5 - 1
    torch.testing.assert_close(net.embed(crops), net((crops + 1) * 127.5))
    big = torch.nn.functional.interpolate(crops, scale_factor=2, mode="nearest").requires_grad_(True)
    out = net.embed(big)
    assert out.shape == (2, net.cfg.embed_dim)
    out.sum().backward()
    assert torch.isfinite(big.grad).all() and big.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="crops"):
        net.embed(torch.zeros(2, 1, s, s))


# ----------------------------------------------------------------------------------------------------------
# The reader


@pytest.fixture
def tiny_file(tmp_path):
    net = _tiny()
    path = tmp_path / "tiny.dat"
    path.write_bytes(dlib_bytes(net))
    return net, path


def test_reader_round_trip(tiny_file):
    net, path = tiny_file
    sd = read_dlib_face(path, DlibFaceConfig.tiny())
    own = net.state_dict()
    assert set(sd) == set(own)
    for k, v in own.items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0, msg=k)
    loaded = load_dlib_face(path, cfg=DlibFaceConfig.tiny())
    assert not any(p.requires_grad for p in loaded.parameters())
    x = _chips(2, net.cfg.input_size)
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_reader_folds_batch_norm_like_torch(tmp_path):
    """A `bn_con2` layer (what a trained net with bn_con holds) is read as dlib's `affine_(bn_)` folds it;
    the result must compute what an eval-mode BatchNorm2d computes."""
    net = _tiny()
    c = net.cfg.stem_width
    rng = np.random.default_rng(3)
    gamma, beta, mean = (rng.uniform(-1, 1, c).astype(np.float32) for _ in range(3))
    var, eps = rng.uniform(0.2, 2, c).astype(np.float32), 1e-5
    path = tmp_path / "bn.dat"
    path.write_bytes(dlib_bytes(net, bn={"stem_affine": (gamma, beta, mean, var, eps)}))
    loaded = load_dlib_face(path, cfg=DlibFaceConfig.tiny())
    bn = torch.nn.BatchNorm2d(c, eps=eps).eval()
    with torch.no_grad():
        for name, v in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
            getattr(bn, name).copy_(torch.from_numpy(v))
        x = torch.randn(2, c, 5, 5)
        torch.testing.assert_close(loaded.stem_affine(x), bn(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keep", [0, 1, 40, 0.5, -1])
def test_reader_truncated_file(tiny_file, keep):
    _, path = tiny_file
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError) as e:
        read_dlib_face(path, DlibFaceConfig.tiny())
    msg = str(e.value)
    assert msg.startswith(f"{path}: not dlib's face recognition network") and "\n" not in msg
    assert "truncated" in msg and msg.endswith(f"give dlib's {MODEL_FILE} (installed by `pip install "
                                                "face-recognition-models`)")


def test_reader_wrong_architecture_and_trailing_bytes(tiny_file):
    _, path = tiny_file
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: not dlib's face recognition network"):
        read_dlib_face(path)  # the tiny file read as the full-size network
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(CheckpointError, match="1 bytes follow the network"):
        read_dlib_face(path, DlibFaceConfig.tiny())


def test_reader_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(tmp_path / 'none.dat'))}: no such file; give dlib's"):
        read_dlib_face(tmp_path / "none.dat")


def test_reader_bzip2_hint(tmp_path):
    path = tmp_path / "model.dat.bz2"
    path.write_bytes(b"BZh91AY&SY" + bytes(100))
    with pytest.raises(CheckpointError, match="bzip2-compressed: decompress it first"):
        read_dlib_face(path)


# ----------------------------------------------------------------------------------------------------------
# dlib's real file, and dlib itself


def _installed(name: str):
    from micromotion.align import _model_file

    try:
        return _model_file(name)
    except MissingDependencyError as e:  # face-recognition-models is absent
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def net():
    return load_dlib_face(_installed(MODEL_FILE))


def test_real_file_truncated(tmp_path):
    path = tmp_path / MODEL_FILE
    with open(_installed(MODEL_FILE), "rb") as f:
        path.write_bytes(f.read(1 << 20))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: not dlib's face recognition.*truncated"):
        read_dlib_face(path)


@pytest.mark.parametrize("other", ["shape_predictor_68_face_landmarks.dat", "shape_predictor_5_face_landmarks.dat",
                                   "mmod_human_face_detector.dat"])
def test_other_dlib_files_are_refused(other):
    path = _installed(other)
    with pytest.raises(CheckpointError) as e:
        load_dlib_face(path)
    assert str(e.value).startswith(f"{path}: not dlib's face recognition network") and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def dlib_recognizer():
    dlib = pytest.importorskip("dlib")
    return dlib.face_recognition_model_v1(_installed(MODEL_FILE))


def _chip(image: np.ndarray, size: int = 150) -> np.ndarray:
    """dlib's aligned chip of the largest face, as `face_recognition_model_v1` cuts it (padding 0.25)."""
    import dlib
    from PIL import Image

    from micromotion.align import _shape_predictor, detect_faces

    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    faces = detect_faces(Image.fromarray(image))
    assert faces, "no face found"
    left, top, right, bottom = (int(round(v)) for v in faces[0].box)
    shape = _shape_predictor()(image, dlib.rectangle(left, top, right, bottom))
    return dlib.get_face_chip(image, shape, size=size, padding=0.25)


def _photos(reference_dir) -> dict[str, np.ndarray]:
    from PIL import Image

    folder = reference_dir / "paper_examples"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert paths, f"no photos in {folder}"
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in paths}


def _astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


def _assert_matches_dlib(net, recognizer, chips: dict[str, np.ndarray]):
    """The same chips through dlib and through the port, one batch: every component within TOLERANCE."""
    x = torch.from_numpy(np.stack(list(chips.values()))).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ours = net(x).double().numpy()
    diffs = {}
    for name, chip, mine in zip(chips, chips.values(), ours):
        ref = np.array(recognizer.compute_face_descriptor(chip))
        diffs[name] = float(np.abs(mine - ref).max())
    assert max(diffs.values()) <= TOLERANCE, diffs


def test_matches_dlib_on_paper_examples(net, dlib_recognizer, reference_dir):
    chips = {name: _chip(img) for name, img in _photos(reference_dir).items()}
    _assert_matches_dlib(net, dlib_recognizer, chips)


def test_matches_dlib_on_astronaut(net, dlib_recognizer):
    _assert_matches_dlib(net, dlib_recognizer, {"astronaut": _chip(_astronaut())})


@pytest.mark.parametrize("size", [112, 300])
def test_embed_of_other_chip_sizes_stays_close(net, dlib_recognizer, size):
    """dlib's chip at another size, resized by `embed`: the same person by a wide margin (measured 0.03-0.09
    on the paper examples and the astronaut, against 0.6)."""
    image = _astronaut()
    ref = np.array(dlib_recognizer.compute_face_descriptor(_chip(image)))
    crop = torch.from_numpy(_chip(image, size)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        mine = net.embed(crop)[0].double().numpy()
    assert np.linalg.norm(mine - ref) < SAME_PERSON_DISTANCE / 4
