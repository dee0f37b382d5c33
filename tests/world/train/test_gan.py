"""GAN training on renders: the discriminator, one step on CPU, checkpoint/resume/export, the quality report."""
import json
import math

import pytest
import torch

from micromotion.checkpoint import load_generator
from micromotion.errors import CheckpointError, InputError
from micromotion.models.discriminator import Conv2dLayer, Discriminator, DiscriminatorConfig, MinibatchStd
from micromotion.world.oracle import Oracle, OracleConfig
from micromotion.world.train.gan import TrainConfig, Trainer, export, quality_report, read_state, train


def test_discriminator_shapes_and_r1_double_backward():
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorConfig.tiny(32))
    x = torch.randn(6, 3, 32, 32, requires_grad=True)
    logits = D(x)
    assert logits.shape == (6,) and torch.isfinite(logits).all()
    grad, = torch.autograd.grad(logits.sum(), x, create_graph=True)
    grad.square().sum().backward()  # R1 needs the gradient of a gradient
    assert all(p.grad is not None for n, p in D.named_parameters() if n.endswith("weight"))
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        D(torch.zeros(2, 3, 64, 64))


def test_discriminator_layers():
    torch.manual_seed(0)
    for k in (1, 3):
        conv = Conv2dLayer(4, 5, k, down=2)
        assert conv(torch.randn(2, 4, 16, 16)).shape == (2, 5, 8, 8)
    # equalized learning rate: unit-variance weights give unit-variance outputs before the activation
    lin = Conv2dLayer(64, 64, 3, bias=False, activation="linear")
    assert 0.8 < lin(torch.randn(8, 64, 16, 16)).std() < 1.2
    # minibatch std appends one feature map, equal within a group, for any batch size
    y = MinibatchStd(4)(torch.randn(6, 8, 4, 4))
    assert y.shape == (6, 9, 4, 4)
    stats = y[:, 8, 0, 0]  # 6 samples -> groups of 3, strided as in NVIDIA's layer: {0, 2, 4} and {1, 3, 5}
    assert torch.allclose(stats[0], stats[2]) and torch.allclose(stats[0], stats[4])
    assert torch.allclose(stats[1], stats[5]) and not torch.allclose(stats[0], stats[1])


def test_default_config_fits_the_size_budget():
    cfg = TrainConfig()
    from micromotion.models.stylegan2 import Generator

    G_params = sum(p.numel() for p in Generator(cfg.generator_config()).parameters())
    assert G_params * 4 < 15e6  # G_ema as fp32 safetensors under 15 MB
    assert cfg.generator_config().num_ws == 12 and cfg.discriminator_config().resolution == 128


def test_one_training_step_on_cpu():
    tr = Trainer(TrainConfig.tiny(), "cpu")
    before = [p.detach().clone() for p in tr.G.parameters()]
    d_before = [p.detach().clone() for p in tr.D.parameters()]
    stats = tr.step()  # step 0 runs every phase: G main, path length, D main, R1
    assert {"loss_G", "loss_D", "loss_pl", "r1"} <= set(stats)
    assert all(math.isfinite(float(v)) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, tr.D.parameters()))
    assert tr.step_count == 1 and tr.nimg == 4
    assert tr.samples(4).shape == (4, 3, 32, 32)


def test_checkpoint_resume_export(tmp_path):
    out = tmp_path / "run"
    state = train(out, minutes=5, cfg=TrainConfig.tiny(), max_steps=2, progress=False)
    assert state["step"] == 2 and state["nimg"] == 8 and state["adam_step_G"] == 3  # 2 main + 1 path length
    names = {p.name for p in out.iterdir()}
    assert {"G.safetensors", "G_ema.safetensors", "D.safetensors", "optim_G.safetensors", "optim_D.safetensors",
            "state.json", "samples.png", "log.jsonl"} <= names
    assert not any(n.startswith(".") for n in names)  # no temporary files left
    assert not any(p.suffix in (".pt", ".pkl") for p in out.iterdir())
    G = load_generator(out / "G_ema.safetensors")
    assert G.resolution == 32 and G.w_avg_source.startswith("computed")

    with pytest.raises(InputError, match="--resume"):
        train(out, minutes=5, cfg=TrainConfig.tiny(), max_steps=1, progress=False)
    tr, _ = Trainer.load(out)
    state = train(out, minutes=5, cfg=TrainConfig.tiny(), resume=True, max_steps=1, progress=False, batch=2)
    assert state["step"] == 3 and state["train_seconds"] > 0
    assert state["nimg"] == 10 and state["config"]["batch"] == 2  # only the batch size may change on resume
    # resumed optimizer moments and RNG state, not fresh ones
    assert tr.opt_D.state[next(tr.D.parameters())]["exp_avg_sq"].abs().sum() > 0
    assert tr.gen.get_state().sum() != torch.Generator().manual_seed(0).get_state().sum()
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 3]

    p = export(out, tmp_path / "world.safetensors")
    assert load_generator(p).cfg == G.cfg
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_state(tmp_path)


def test_quality_report_shape():
    torch.manual_seed(0)
    tr = Trainer(TrainConfig.tiny(), "cpu")
    q = quality_report(tr.G_ema, Oracle(OracleConfig.tiny()).eval(), n=8, batch_size=4)
    assert "mean_w1" in q and set(q["smile"]) == {"samples_mean", "samples_std", "renders_mean", "renders_std", "w1"}
    assert 0 <= q["mean_w1"] <= 1


def test_cli_tiny_run(tmp_path):
    from micromotion.world.train.gan import main

    main(["--out", str(tmp_path / "r"), "--tiny", "--max-steps", "1", "--device", "cpu",
          "--export", str(tmp_path / "g.safetensors")])
    assert read_state(tmp_path / "r")["step"] == 1
    assert (tmp_path / "g.safetensors").is_file()
    with pytest.raises(SystemExit, match="--resume"):
        main(["--out", str(tmp_path / "r"), "--tiny", "--max-steps", "1", "--device", "cpu"])


def test_sigterm_stops_training_cleanly_with_a_checkpoint(tmp_path):
    """A device's time limit sends SIGTERM: the run finishes its step, checkpoints and returns; handlers restored."""
    import os
    import signal
    import threading
    import time

    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    t0 = time.time()
    timer.start()
    try:
        state = train(tmp_path / "run", minutes=2, cfg=TrainConfig.tiny(), progress=False, oracle=None)
    finally:
        timer.cancel()
    assert time.time() - t0 < 60  # stopped by the signal, not by the 2-minute budget
    assert state["step"] >= 1 and (tmp_path / "run" / "G_ema.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) == before


def test_compact_export_is_float16_with_the_same_metadata_and_outputs(tmp_path):
    from safetensors import safe_open

    out = tmp_path / "run"
    train(out, minutes=5, cfg=TrainConfig.tiny(), max_steps=1, progress=False)
    full = export(out, tmp_path / "full.safetensors")
    half = export(out, tmp_path / "half.safetensors", compact=True)
    with safe_open(str(full), "pt") as f, safe_open(str(half), "pt") as h:
        assert h.metadata() == f.metadata()  # format, config, w_avg_source, kimg, step, trained_by
        assert set(h.keys()) == set(f.keys())
        assert all(h.get_tensor(k).dtype == torch.float16 for k in h.keys() if f.get_tensor(k).is_floating_point())
    assert half.stat().st_size < 0.6 * full.stat().st_size
    G32, G16 = load_generator(full), load_generator(half)
    assert G16.cfg == G32.cfg
    ws = G32.mapping(torch.randn(2, G32.cfg.z_dim, generator=torch.Generator().manual_seed(0)))
    a, b = G32.synthesis(ws), G16.synthesis(ws)  # constant noise: deterministic
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 2e-2 and (a - b).abs().mean() < 2e-3
