"""World encoder (issue 10): ReStyle training steps on CPU, checkpoint/resume, export -> load_encoder -> invert,
file and generator mismatch errors, the held-out report, the CLI."""
import json
import logging
import math

import pytest
import torch

from micromotion.errors import CheckpointError, InputError
from micromotion.models.encoder import ReStyle, load_encoder, load_restyle
from micromotion.models.stylegan2 import Generator, GeneratorConfig
from micromotion.world.train.encoder import (EncoderTrainer, WorldEncoderConfig, evaluate_encoder, export_encoder,
                                             load_world_encoder, main, read_state, train_encoder)
from micromotion.world.oracle import Oracle, OracleConfig


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _generator(seed: int = 0, resolution: int = 32) -> Generator:
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig.tiny(resolution))
    G.compute_w_avg(n=256)
    return G.eval().requires_grad_(False)


def _oracle() -> Oracle:
    torch.manual_seed(0)
    return Oracle(OracleConfig.tiny()).eval()


@pytest.fixture(scope="module")
def G():
    return _generator()


def _cfg(**kw) -> WorldEncoderConfig:
    return WorldEncoderConfig(**{**WorldEncoderConfig.tiny().to_dict(), "oracle": "none", **kw})


def test_default_config_fits_16_mb():
    G = Generator(GeneratorConfig(resolution=128, z_dim=256, w_dim=256, mapping_layers=2,
                                  channels={4: 8, 8: 8, 16: 8, 32: 8, 64: 8, 128: 8}))
    from micromotion.models.encoder import build_encoder

    cfg = WorldEncoderConfig().encoder_config(G)
    assert (cfg.n_styles, cfg.w_dim, cfg.input_size, cfg.feature_size) == (12, 256, 128, 2)
    with torch.device("meta"):
        n = sum(p.numel() for p in build_encoder(cfg).parameters())
    assert 3e6 < n and n * 4 < 15.5e6


def test_training_steps_are_finite_and_learn(G):
    tr = EncoderTrainer(_cfg(batch=6, lr=3e-3, warmup=1), G, "cpu", oracle=_oracle())
    assert tr.n_render == 2
    x, ws = tr.targets()
    assert x.shape == (6, 3, 32, 32) and ws.shape == (4, G.num_ws, G.w_dim)
    assert not torch.equal(ws[:, 0], ws[:, -1])  # mixed codes
    before = [p.detach().clone() for p in tr.encoder.parameters()]
    losses = []
    for _ in range(12):
        s = tr.step()
        assert all(math.isfinite(float(v)) for v in s.values())
        assert {"l2", "oracle_feat", "factor_l1", "latent", "delta", "loss", "psnr"} <= set(s)
        losses.append(float(s["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.encoder.parameters()))
    assert all(not p.requires_grad for p in G.parameters())
    assert sum(losses[-4:]) < sum(losses[:4])
    assert tr.step_count == 12 and tr.nimg == 72


def test_render_pairs_share_identity_and_add_a_pair_loss(G, monkeypatch):
    import micromotion.world.train.encoder as et
    from micromotion.world.faces import IDENTITY_FACTORS, MOTION_FACTORS

    drawn = []
    real_render = et.render

    def spy(f, size):
        img = real_render(f, size)
        drawn.append((f, img))
        return img

    monkeypatch.setattr(et, "render", spy)
    tr = EncoderTrainer(_cfg(batch=8, render_frac=0.25, pair_frac=0.5, warmup=1), G, "cpu", oracle=_oracle())
    assert (tr.n_render, tr.n_pair) == (2, 2)
    x, ws = tr.targets()
    assert x.shape == (8, 3, 32, 32) and ws.shape == (2, G.num_ws, G.w_dim)
    (a, img_a), (b, img_b) = drawn[-2:]  # the pairs' two halves
    assert torch.equal(x[-4:-2], img_a[:2]) and torch.equal(x[-2:], img_b[:2])  # [a_1, a_2, b_1, b_2] last
    assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in IDENTITY_FACTORS)
    assert any(not torch.equal(getattr(a, k), getattr(b, k)) for k in MOTION_FACTORS)

    # the pair loss is |(r(y_b) - r(y_a)) - (r(x_b) - r(x_a))|: with readings r = mean pixel per channel it is
    # exactly that of the step's last reconstructions, whatever the other losses do
    seen = []

    def readings(oracle, images):
        seen.append(images.detach())
        return [images], images.mean((2, 3))

    monkeypatch.setattr(et, "_oracle_outputs", readings)
    monkeypatch.setattr(tr, "targets", lambda: (x, ws))
    s = tr.step()
    r_x, r_y = seen[0].mean((2, 3)), seen[-1].mean((2, 3))
    want = ((r_y[-2:] - r_y[-4:-2]) - (r_x[-2:] - r_x[-4:-2])).abs().mean()
    assert float(s["pair"]) == pytest.approx(float(want), rel=1e-5) and float(want) > 0

    with pytest.raises(InputError, match="pair_frac"):
        _cfg(render_frac=0.5, pair_frac=0.6)
    with pytest.raises(InputError, match="pair_weight"):
        _cfg(pair_frac=0.25, pair_weight=float("nan"))
    with pytest.raises(InputError, match="oracle"):
        EncoderTrainer(_cfg(batch=8, pair_frac=0.5), G, "cpu", oracle=None)


def test_checkpoint_resume_continues_exactly(tmp_path, G):
    cfg = _cfg()
    a = EncoderTrainer(cfg, G)
    for _ in range(3):
        a.step()
    b = EncoderTrainer(cfg, G)
    b.step(), b.step()
    b.save(tmp_path / "run")
    state = read_state(tmp_path / "run")
    assert state["step"] == 2 and state["nimg"] == 8 and state["adam_step"] == 2
    assert (tmp_path / "run" / "samples.png").is_file()
    c, _ = EncoderTrainer.load(tmp_path / "run", G)
    assert c.step_count == 2
    c.step()
    assert c.step_count == 3 and c.nimg == 12
    for (k, p), q in zip(a.encoder.state_dict().items(), c.encoder.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-6), k


def test_resume_refuses_another_generator(tmp_path, G):
    tr = EncoderTrainer(_cfg(), G)
    tr.save(tmp_path / "run")
    with pytest.raises(CheckpointError, match="another generator"):
        EncoderTrainer.load(tmp_path / "run", _generator(seed=5))


def test_train_export_load_invert_matches(tmp_path, G):
    out = tmp_path / "run"
    state = train_encoder(out, G, minutes=5, cfg=_cfg(), max_steps=2, eval_n=0, progress=False)
    assert state["step"] == 2 and state["generator"]["num_ws"] == G.num_ws
    with pytest.raises(InputError, match="--resume"):
        train_encoder(out, G, cfg=_cfg(), max_steps=1, eval_n=0, progress=False)
    state = train_encoder(out, G, cfg=_cfg(), resume=True, max_steps=1, eval_n=0, progress=False)
    assert state["step"] == 3

    tr, _ = EncoderTrainer.load(out, G)
    tr.train_mode(False)
    path = export_encoder(out, tmp_path / "enc.safetensors", G)
    assert path.stat().st_size < 1_000_000
    net = load_world_encoder(path, G)
    assert isinstance(net, ReStyle) and net.variant == "psp" and not net.encoder.training
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    ref = tr.net.invert(x, n_iters=2)
    got = net.invert(x, n_iters=2)
    assert got.ws.shape == (3, G.num_ws, G.w_dim) and got.steps.shape == (2, 3, G.num_ws, G.w_dim)
    assert torch.allclose(ref.ws, got.ws, atol=1e-5)
    assert torch.allclose(load_restyle(path, G=G).invert(x, 2).ws, got.ws)
    with pytest.raises(CheckpointError, match="load_encoder"):
        load_restyle(path)

    # a new run from the exported weights (--init): the same network at step 0, then it trains on
    st = train_encoder(tmp_path / "ft", G, cfg=_cfg(), max_steps=0, eval_n=0, progress=False, init=path)
    assert st["step"] == 0
    ft, _ = EncoderTrainer.load(tmp_path / "ft", G)
    ft.train_mode(False)
    assert torch.allclose(ft.net.invert(x, n_iters=2).ws, got.ws, atol=1e-5)
    with pytest.raises(InputError, match="not the one of this config"):
        train_encoder(tmp_path / "ft2", G, cfg=_cfg(widths=(8, 12, 16, 32)), max_steps=0, eval_n=0, progress=False,
                      init=path)


def test_bad_and_truncated_files(tmp_path, G):
    tr = EncoderTrainer(_cfg(), G)
    tr.save(tmp_path / "run")
    good = (tmp_path / "run" / "encoder.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_encoder(cut, G)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_world_encoder(junk, G)
    with pytest.raises(CheckpointError, match="not a micromotion encoder"):
        load_encoder(tmp_path / "run" / "optim_avg_sq.safetensors", G)
    assert EncoderTrainer.load(tmp_path / "run", G)[0].step_count == 0  # a checkpoint before any step
    (tmp_path / "run" / "optim_avg.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="incomplete"):
        EncoderTrainer.load(tmp_path / "run", G)


def test_mismatched_generator_is_a_clear_error(tmp_path, G):
    tr = EncoderTrainer(_cfg(), G)
    tr.save(tmp_path / "run")
    path = tmp_path / "run" / "encoder.safetensors"
    wide = Generator(GeneratorConfig(**{**GeneratorConfig.tiny(32).to_dict(), "w_dim": 24, "z_dim": 24}))
    with pytest.raises(CheckpointError, match=r"8 x 16 W\+ codes .* takes 8 x 24"):
        load_encoder(path, wide)
    small = Generator(GeneratorConfig.tiny(16))
    with pytest.raises(CheckpointError, match=r"takes 6 x 16 \(16²\)"):
        load_encoder(path, small)


def test_evaluate_report(G):
    tr = EncoderTrainer(_cfg(), G)
    tr.train_mode(False)
    ev = evaluate_encoder(tr.net, _oracle(), n=4, n_iters=2, batch_size=3)
    for name in ("renders", "samples"):
        r = ev[name]
        assert r["mse"] > 0 and math.isfinite(r["psnr"])
        assert set(r["factor_mae"]) == set(OracleConfig.tiny().factors)
        assert 0 <= r["mean_factor_mae"] <= 1
    assert {"mean_factor_mae_vs_true", "oracle_floor", "average_face_mean_factor_mae"} <= set(ev["renders"])
    assert ev["samples"]["latent_mse"] >= 0
    assert evaluate_encoder(tr.net, _oracle(), n=4, n_iters=2) == ev  # fixed held-out set
    assert "factor_mae" not in evaluate_encoder(tr.net, False, n=2, n_iters=1)["renders"]


def test_cli_train_eval_export(tmp_path, G, caplog):
    from micromotion.checkpoint import save_generator

    caplog.set_level(logging.INFO, logger="micromotion.world.train.encoder")
    gpath = save_generator(G, tmp_path / "G.safetensors")
    out = tmp_path / "run"
    main(["--generator", str(gpath), "--out", str(out), "--tiny", "--device", "cpu", "--max-steps", "2",
          "--oracle", "none", "--eval-n", "2", "--log-every", "1", "--export", str(tmp_path / "e.safetensors"),
          "--render-frac", "0.5"])
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 2 and state["evaluation"]["renders"]["psnr"] > 0 and state["config"]["render_frac"] == 0.5
    assert state["generator"]["path"] == str(gpath.resolve())
    assert any("img/s" in r.getMessage() for r in caplog.records)
    load_world_encoder(tmp_path / "e.safetensors", G)
    # resume without --generator uses the run's
    caplog.clear()
    main(["--out", str(out), "--resume", "--device", "cpu", "--max-steps", "1", "--eval-n", "0"])
    assert read_state(out)["step"] == 3
    assert not any("is ignored" in r.getMessage() for r in caplog.records)  # nothing asked, nothing to warn
    main(["--out", str(out), "--resume", "--device", "cpu", "--max-steps", "1", "--eval-n", "0",
          "--pair-frac", "0.25"])  # a new run's setting: the checkpoint keeps its own
    assert any("pair_frac 0.25 is ignored" in r.getMessage() for r in caplog.records)
    assert read_state(out)["step"] == 4 and read_state(out)["config"]["pair_frac"] == 0.0
    main(["--out", str(out), "--eval-only", "--device", "cpu", "--eval-n", "2"])
    with pytest.raises(SystemExit, match="already holds a checkpoint"):
        main(["--generator", str(gpath), "--out", str(out), "--tiny", "--max-steps", "1", "--device", "cpu"])
    with pytest.raises(SystemExit, match="no checkpoint here"):
        main(["--out", str(tmp_path / "none"), "--eval-only", "--device", "cpu"])


def test_compact_export_and_fine_tune_record(tmp_path, G):
    """--compact writes float16 tensors that invert like the fp32 export; a chain of --init runs writes the
    `fine_tuned` record the shipped encoder carries (from, stages, device, command), extending it each time."""
    from safetensors import safe_open

    train_encoder(tmp_path / "e0", G, minutes=5, cfg=_cfg(), max_steps=1, eval_n=0, progress=False)
    e0 = export_encoder(tmp_path / "e0", tmp_path / "e0.safetensors", G)
    with safe_open(str(e0), "pt") as f:
        assert "fine_tuned" not in f.metadata()
    train_encoder(tmp_path / "e1", G, minutes=5, cfg=_cfg(lr=1e-4), max_steps=1, eval_n=0, progress=False, init=e0)
    e1 = export_encoder(tmp_path / "e1", tmp_path / "e1.safetensors", G)
    cfg = _cfg(lr=5e-5, batch=8, render_frac=0.25, pair_frac=0.5, pair_weight=4.0, warmup=1)
    train_encoder(tmp_path / "e2", G, minutes=5, cfg=cfg, max_steps=1, eval_n=0, progress=False, init=e1,
                  oracle=_oracle())
    full = export_encoder(tmp_path / "e2", tmp_path / "e2.safetensors", G)
    half = export_encoder(tmp_path / "e2", tmp_path / "e2h.safetensors", G, compact=True)
    with safe_open(str(full), "pt") as f, safe_open(str(half), "pt") as h:
        assert h.metadata() == f.metadata()
        meta = h.metadata()
        assert all(h.get_tensor(k).dtype == torch.float16 for k in h.keys() if f.get_tensor(k).is_floating_point())
    tuned = json.loads(meta["fine_tuned"])
    assert set(tuned) == {"from", "stages", "device", "command"} and tuned["device"] == "cpu"
    assert tuned["from"] == "e0.safetensors (step 1)"
    assert [(s["lr"], s.get("pair_frac"), s.get("pair_weight")) for s in tuned["stages"]] == [
        (1e-4, None, None), (5e-5, 0.5, 4.0)]
    assert all(isinstance(s["minutes"], float) for s in tuned["stages"])
    assert meta["trained_by"] == "micromotion.world.encoder_train"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a = load_world_encoder(full, G).invert(x, n_iters=2).ws
    b = load_world_encoder(half, G).invert(x, n_iters=2).ws
    assert b.dtype == torch.float32 and (a - b).abs().max() < 2e-2
    assert half.stat().st_size < 0.7 * full.stat().st_size
