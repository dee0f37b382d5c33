"""The oracle: API on a tiny config, file format, training loop; the shipped oracle reads renders back."""
import pytest
import torch

from micromotion.errors import CheckpointError, InputError
from micromotion.world.oracle import (DEFAULT_PATH, ORACLE_FACTORS, Oracle, OracleConfig, augment, load_oracle,
                                      measure, read_oracle_report, save_oracle, train_oracle)
from micromotion.world.faces import FACTOR_SPECS, MOTION_FACTORS, Factors, render, sample_factors


def _tiny():
    torch.manual_seed(0)
    return Oracle(OracleConfig.tiny()).eval()


def test_tiny_oracle_measures_any_size():
    o = _tiny()
    imgs = render(sample_factors(3, torch.Generator().manual_seed(0)), size=64)
    m = o.measure(imgs)
    assert list(m) == list(ORACLE_FACTORS)
    for k, v in m.items():
        s = FACTOR_SPECS[k]
        assert v.shape == (3,) and (v >= s.low).all() and (v <= s.high).all(), k
    # other sizes are resized to the oracle's resolution
    assert torch.allclose(o.measure(imgs)["smile"], measure(imgs, oracle=o)["smile"])
    assert o.measure(torch.zeros(2, 3, 100, 100))["age"].shape == (2,)
    with pytest.raises(InputError, match=r"\[N, 3, H, W\]"):
        o.measure(torch.zeros(3, 32, 32))


def test_save_load_roundtrip(tmp_path):
    o = _tiny()
    p = save_oracle(o, tmp_path / "o.safetensors", report={"max_mae": 0.5})
    o2 = load_oracle(p)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = o.measure(x), o2.measure(x)
    assert all(torch.allclose(a[k], b[k], atol=2e-2) for k in a)  # fp16 storage
    assert read_oracle_report(p) == {"max_mae": 0.5}
    assert o2.cfg == o.cfg and not any(q.requires_grad for q in o2.parameters())


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such oracle file"):
        load_oracle(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "something"})
    with pytest.raises(CheckpointError, match="not a micromotion world oracle"):
        load_oracle(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_oracle(tmp_path / "junk.safetensors")


def test_augment_keeps_shape_and_range():
    x = render(sample_factors(4, torch.Generator().manual_seed(1)), size=32)
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert (y - x).abs().mean() < 0.3


def test_train_oracle_runs(tmp_path):
    oracle, report = train_oracle(steps=2, batch_size=4, cfg=OracleConfig.tiny(), eval_every=0, eval_n=8,
                                  out=tmp_path / "o.safetensors", progress=False)
    assert set(report["mae"]) == set(ORACLE_FACTORS)
    assert report["steps"] == 2 and report["images"] == 8
    assert 0 < report["max_mae"] < 1
    assert load_oracle(tmp_path / "o.safetensors").cfg == OracleConfig.tiny()


shipped = pytest.mark.skipif(not DEFAULT_PATH.is_file(), reason="no trained oracle shipped in micromotion/data/world")


@shipped
def test_shipped_oracle_reads_renders():
    report = read_oracle_report()
    assert report["mean_mae"] <= 0.05  # training's held-out error, fraction of range
    f = sample_factors(48, torch.Generator().manual_seed(11))
    m = measure(render(f))
    for k, v in m.items():
        err = (v - getattr(f, k)).abs().mean() / FACTOR_SPECS[k].span
        assert err < 0.09, (k, float(err))


@shipped
@pytest.mark.parametrize("motion", MOTION_FACTORS)
def test_shipped_oracle_moves_monotonically(motion):
    spec = FACTOR_SPECS[motion]
    base = sample_factors(2, torch.Generator().manual_seed(4), motion="neutral")
    values = torch.linspace(spec.low, spec.high, 5)
    f = Factors.cat([base[i].replace(**{motion: float(v)}) for i in range(2) for v in values])
    reading = measure(render(f))[motion].reshape(2, 5)
    assert (reading[:, 1:] > reading[:, :-1]).all(), (motion, reading.tolist())
    assert ((reading[:, -1] - reading[:, 0]) > 0.7 * spec.span).all(), (motion, reading.tolist())
