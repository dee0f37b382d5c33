"""Checkpoint readers on bad input: one clear error naming the file, nothing executed, nothing half-loaded."""
import pickle

import pytest
import torch
from click.testing import CliRunner

import micromotion as mm
from micromotion.checkpoint import safe_unpickle
from micromotion.cli import main
from reference_layouts import (deterministic_weights, nvidia_init_kwargs, nvidia_spec, rosinality_spec,
                               write_nvidia_style_pickle)


def _small_ros(tmp_path, mutate=None):
    w = deterministic_weights(rosinality_spec(16, n_mlp=2, style_dim=64), seed=1)
    if mutate:
        mutate(w)
    path = tmp_path / "g.pt"
    torch.save({"g_ema": w}, path)
    return path


def test_rosinality_without_latent_avg_computes_it(tmp_path):
    G = mm.load_generator(_small_ros(tmp_path))
    assert G.resolution == 16 and G.num_ws == 6 and G.w_dim == 64
    assert G.w_avg_source.startswith("computed") and G.w_avg.abs().sum() > 0
    assert not any(p.requires_grad for p in G.parameters()) and not G.training


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(mm.CheckpointError, match="notes.pt: unknown file format"):
        mm.load_generator(p)


def test_missing_file(tmp_path):
    with pytest.raises(mm.CheckpointError, match="no such file"):
        mm.load_generator(tmp_path / "nope.pt")


@pytest.mark.parametrize("fmt", ["pt", "pkl"])
def test_truncated(tmp_path, fmt):
    if fmt == "pt":
        path = _small_ros(tmp_path)
    else:
        path = tmp_path / "g.pkl"
        write_nvidia_style_pickle(path, deterministic_weights(nvidia_spec(16, 2048, 64, 64, 64, 2)),
                                  nvidia_init_kwargs(16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(mm.CheckpointError, match=f"g.{fmt}: not a readable"):
        mm.load_generator(path)


def test_unknown_layout(tmp_path):
    p = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, p)
    with pytest.raises(mm.CheckpointError, match="without a 'g_ema' generator"):
        mm.load_generator(p)


def test_missing_key_is_named(tmp_path):
    path = _small_ros(tmp_path, lambda w: w.pop("convs.1.conv.modulation.bias"))
    with pytest.raises(mm.CheckpointError, match="missing key 'convs.1.conv.modulation.bias'"):
        mm.load_generator(path)


def test_wrong_shape_is_named(tmp_path):
    path = _small_ros(tmp_path, lambda w: w.__setitem__("convs.0.activate.bias", torch.zeros(7)))
    with pytest.raises(mm.CheckpointError, match=r"'convs.0.activate.bias' has shape \[7\]"):
        mm.load_generator(path)


def test_unexpected_key_is_named(tmp_path):
    path = _small_ros(tmp_path, lambda w: w.__setitem__("extra.weight", torch.zeros(1)))
    with pytest.raises(mm.CheckpointError, match="unexpected keys, first 'extra.weight'"):
        mm.load_generator(path)


def test_nan_weights_refused(tmp_path):
    path = _small_ros(tmp_path, lambda w: w["style.1.bias"].__setitem__(0, float("nan")))
    with pytest.raises(mm.CheckpointError, match="NaN"):
        mm.load_generator(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_callable_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}))
    with pytest.raises(mm.CheckpointError, match=r"evil.pkl: refusing to load: the pickle asks for 'io.open'"):
        mm.load_generator(p)
    assert not marker.exists()


def test_torch_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(marker)}, p)
    with pytest.raises(mm.CheckpointError, match="evil.pt: refusing to load"):
        mm.load_generator(p)
    assert not marker.exists()


def test_pickle_without_g_ema(tmp_path):
    p = tmp_path / "d.pkl"
    p.write_bytes(pickle.dumps({"D": 1}))
    with pytest.raises(mm.CheckpointError, match="without a 'G_ema' network"):
        mm.load_generator(p)


def test_safe_unpickle_reads_plain_containers(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"a": [1, 2.0, "x"], "t": torch.arange(3.0)}))
    out = safe_unpickle(p)
    assert out["a"] == [1, 2.0, "x"] and torch.equal(out["t"], torch.arange(3.0))


def test_conditional_nvidia_refused(tmp_path):
    spec = nvidia_spec(16, 2048, 64, 64, 64, 2)
    w = deterministic_weights(spec)
    w["mapping.embed.weight"] = torch.zeros(64, 10)
    p = tmp_path / "cond.pkl"
    write_nvidia_style_pickle(p, w, {**nvidia_init_kwargs(16), "c_dim": 10})
    with pytest.raises(mm.CheckpointError, match="conditional generators"):
        mm.load_generator(p)


def test_safetensors_of_other_kind_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "motion.safetensors"
    save_file({"x": torch.zeros(1)}, str(p), metadata={"format": "something-else"})
    with pytest.raises(mm.CheckpointError, match="not a micromotion generator"):
        mm.load_generator(p)


def test_convert_cli(tmp_path):
    src = _small_ros(tmp_path)
    dst = tmp_path / "g.safetensors"
    r = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert r.exit_code == 0, r.output
    assert "StyleGAN2 16x16" in r.output and dst.exists()
    G1, G2 = mm.load_generator(src), mm.load_generator(dst)
    ws = torch.randn(1, G1.num_ws, G1.w_dim)
    assert torch.equal(G1.synthesis(ws), G2.synthesis(ws))
    r = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert r.exit_code != 0 and "already exists" in r.output


def test_convert_cli_bad_input_writes_nothing(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04garbage")
    dst = tmp_path / "out.safetensors"
    r = CliRunner().invoke(main, ["convert", str(bad), str(dst)])
    assert r.exit_code == 1
    assert r.output.strip().startswith("Error:") and "bad.pt" in r.output and len(r.output.strip().splitlines()) == 1
    assert not dst.exists() and list(tmp_path.iterdir()) == [bad]
