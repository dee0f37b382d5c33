"""ArcFace IR-SE50: equality with the reference implementation on deterministic weights (golden numbers), the
identity-loss crop, loading `model_ir_se50.pth`-layout files, bad input.

`tests/golden/arcface_irse50.safetensors` was written by running StyleCLIP's `model_irse.py` + `helpers.py`
and `criteria/id_loss.py` (the copies in wuqiuche/micromotion-styleGAN) from a scratch folder outside this
repository, on the weights of `deterministic_weights` below (that script imports this very function); the
procedure is in docs/text_anchors.md ("Equivalence").
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest
import torch

from micromotion.errors import CheckpointError
from micromotion.models.arcface import ArcFace, ArcFaceConfig, identity_crop, infer_config, load_arcface

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "arcface_irse50.safetensors"
WEIGHT_SEED = 50


def deterministic_weights(template: dict[str, torch.Tensor], seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """Non-trivial weights for a TreB1eN-layout state dict, each tensor a function of (seed, key, shape) only.

    Convolutions and linear layers are He-scaled so that activations stay O(1) through the 24 units;
    BatchNorm affine parameters and running statistics are all far from their defaults (1, 0, 0, 1), so an
    implementation that ignored any of them, or ran BatchNorm in train mode, would disagree.
    """
    out = {}
    for key in sorted(template):
        shape = tuple(template[key].shape)
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.long)
            continue
        r = torch.rand(shape, generator=g, dtype=torch.float64)
        n = torch.randn(shape, generator=g, dtype=torch.float64)
        if key.endswith("running_var"):
            t = 0.5 + r
        elif key.endswith("running_mean"):
            t = 0.2 * n
        elif len(shape) == 1 and ".weight" in key and "res_layer.2" not in key and "input_layer.2" not in key:
            t = 0.6 + 0.8 * r  # BatchNorm gamma
        elif len(shape) == 1 and key.endswith("bias"):
            t = 0.1 * n  # BatchNorm beta / linear bias
        elif len(shape) == 1:
            t = 0.25 + 0.1 * n  # PReLU slopes
        else:
            fan_in = math.prod(shape[1:])
            t = n * math.sqrt(1.0 / fan_in)
        out[key] = t.to(torch.float32)
    return out


def golden_inputs() -> dict[str, torch.Tensor]:
    """Two smooth, face-sized images per resolution: 112 (backbone), 256 and 64 (identity crop)."""
    g = torch.Generator().manual_seed(123)
    out = {}
    for size in (112, 256, 64):
        coarse = torch.randn(2, 3, 8, 8, generator=g)
        x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        out[f"x{size}"] = (x + 0.1 * torch.randn(2, 3, size, size, generator=g)).clamp(-1, 1)
    return out


def irse50_with_deterministic_weights() -> ArcFace:
    net = ArcFace(ArcFaceConfig.ir_se50())
    net.load_state_dict(deterministic_weights(net.state_dict()))
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(GOLDEN))


@pytest.fixture(scope="module")
def irse50() -> ArcFace:
    return irse50_with_deterministic_weights()


def test_architecture_matches_official_layout(irse50):
    sd = irse50.state_dict()
    assert len([k for k in sd if k.startswith("body.") and k.endswith("res_layer.1.weight")]) == 24
    assert sd["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert sd["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert sd["body.0.res_layer.5.fc1.weight"].shape == (4, 64, 1, 1)
    assert "body.0.shortcut_layer.0.weight" not in sd  # 64 -> 64: subsampling shortcut without weights
    assert sd["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    # IR-SE50: 43.8M parameters (the official file's tensors, BatchNorm statistics excluded)
    assert sum(p.numel() for p in irse50.parameters()) == 43_797_696
    assert infer_config(sd) == ArcFaceConfig.ir_se50()


def test_embeddings_match_reference(golden, irse50):
    x = golden_inputs()
    ours = irse50(x["x112"])
    ref = golden["embed112"]
    assert ours.shape == (2, 512)
    assert torch.allclose(ours.norm(dim=1), torch.ones(2), atol=1e-5)
    assert (ours - ref).norm() / ref.norm() <= 1e-4
    # the golden numbers are not degenerate: the two faces differ
    assert (ref[0] @ ref[1]).abs() < 0.9


@pytest.mark.parametrize("size", [256, 64])
def test_identity_crop_and_embed_match_reference_id_loss(golden, irse50, size):
    x = golden_inputs()[f"x{size}"]
    crop = identity_crop(x)
    assert crop.shape == (2, 3, 112, 112)
    assert torch.allclose(torch.nn.functional.adaptive_avg_pool2d(crop, 8), golden[f"crop{size}_pool8"], atol=1e-6)
    ours = irse50.embed(x)
    ref = golden[f"feats{size}"]
    assert (ours - ref).norm() / ref.norm() <= 1e-4


def test_id_loss_value_matches_reference(golden, irse50):
    """StyleCLIP's IDLoss(y_hat=x256, y=x64): mean over samples of 1 - <f(y_hat), f(y)>."""
    x = golden_inputs()
    e_hat, e = irse50.embed(x["x256"]), irse50.embed(x["x64"])
    loss = (1 - (e_hat * e).sum(1)).mean()
    assert abs(loss.item() - golden["id_loss"].item()) <= 1e-4 * max(1.0, abs(golden["id_loss"].item()))


def test_batch_equals_one_at_a_time_and_eval_is_forced():
    torch.manual_seed(0)
    net = ArcFace(ArcFaceConfig.tiny())
    net.load_state_dict(deterministic_weights(net.state_dict(), seed=3))
    net.train()  # stays frozen: BatchNorm must not use batch statistics
    assert not net.training and not any(m.training for m in net.modules())
    x = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    batched = net(x)
    single = torch.cat([net(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6)


def test_load_official_layout_file(tmp_path):
    net = ArcFace(ArcFaceConfig.tiny())
    sd = deterministic_weights(net.state_dict(), seed=5)
    path = tmp_path / "model_ir_se50.pth"
    torch.save(sd, path)
    loaded = load_arcface(path)
    assert loaded.cfg == ArcFaceConfig.tiny()
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    net.load_state_dict(sd)
    assert torch.equal(loaded(x), net.eval()(x))
    # saved from nn.DataParallel ("module." prefix)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pth")
    assert torch.equal(load_arcface(tmp_path / "dp.pth")(x), loaded(x))


def test_bad_files_give_clear_errors(tmp_path):
    net = ArcFace(ArcFaceConfig.tiny())
    sd = deterministic_weights(net.state_dict(), seed=5)
    wrong = dict(sd)
    wrong["body.0.res_layer.3.weight"] = torch.zeros(1, 1, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"wrong\.pth: 'body\.0\.res_layer\.3\.weight' has shape"):
        load_arcface(tmp_path / "wrong.pth")
    extra = dict(sd, **{"head.kernel": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'head.kernel'"):
        load_arcface(tmp_path / "extra.pth")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no tensor 'input_layer.0.weight'"):
        load_arcface(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_arcface(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match=r"\[N, 3, 112, 112\]"):
        net(torch.zeros(1, 3, 64, 64))
