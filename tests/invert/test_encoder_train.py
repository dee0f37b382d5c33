"""micromotion.invert.encoder_train: the real-face encoder's trainer on a tiny generator, CPU: steps that learn and
are reproducible, sharded checkpoints that resume exactly, export -> load_encoder -> the same inversion, the
generator check, the held-out report."""
import json
import math

import pytest
import torch

from micromotion.invert import encoder_train as et
from micromotion.errors import CheckpointError, InputError
from micromotion.invert.augment import Augment
from micromotion.invert.encoder_train import (CHIP_BOX, FaceEncoderConfig, FaceEncoderTrainer, chip_crops,
                                              evaluate_face_encoder, export_face_encoder, read_state,
                                              train_face_encoder)
from micromotion.models.dlib_face import DlibFace, DlibFaceConfig
from micromotion.models.encoder import generator_fingerprint, load_encoder

from invert_helpers import _tiny, one_thread  # noqa: F401  (one_thread: autouse)


@pytest.fixture(scope="module")
def G():
    return _tiny(32)


def _cfg(**kw) -> FaceEncoderConfig:
    return FaceEncoderConfig(**{**FaceEncoderConfig.tiny().to_dict(), "id_weight": 0.0, **kw})


def _weights(tr: FaceEncoderTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in tr.encoder.state_dict().items()}


def _tiny_identity() -> DlibFace:
    torch.manual_seed(7)
    return DlibFace(DlibFaceConfig.tiny()).eval().requires_grad_(False)


def test_config_round_trips_and_refuses_world_only_settings():
    cfg = _cfg(augment=Augment(jpeg_quality=(20, 60), noise=0.5))
    d = json.loads(json.dumps(cfg.to_dict()))  # as state.json holds it
    assert d["augment"]["jpeg_quality"] == [20, 60] and d["head_width"] == 8
    back = FaceEncoderConfig.from_dict(d)
    assert back == cfg and back.augment.jpeg_quality == (20, 60) and isinstance(back.augment, Augment)
    with pytest.raises(InputError, match="samples only"):
        _cfg(render_frac=0.25)
    with pytest.raises(CheckpointError, match=r"unknown augmentation config keys \['sepia'\]"):
        FaceEncoderConfig.from_dict({**d, "augment": {**d["augment"], "sepia": 1.0}})


def test_chip_crops_cut_the_chip_box():
    x = torch.arange(256.0).view(1, 1, 1, 256).expand(1, 3, 256, 256)
    c = chip_crops(x)
    # centre (129, 155), side 177 -> 88 either side
    assert CHIP_BOX == (0.504, 0.605, 0.693) and c.shape == (1, 3, 176, 176)
    assert float(c[0, 0, 0, 0]) == 41 and float(c[0, 0, 0, -1]) == 216
    y = torch.arange(256.0).view(1, 1, 256, 1).expand(1, 3, 256, 256)
    assert float(chip_crops(y)[0, 0, 0, 0]) == 67 and float(chip_crops(y)[0, 0, -1, 0]) == 242


def test_steps_learn(G):
    a = FaceEncoderTrainer(_cfg(lr=3e-3, warmup=1, batch=8), G)
    x, ws = a.targets()
    assert x.shape == (8, 3, 32, 32) and ws.shape == (8, G.num_ws, G.w_dim) and x.abs().max() <= 1

    def held_out_psnr() -> float:
        a.train_mode(False)
        try:
            return evaluate_face_encoder(a.net, None, n=16, n_iters=2, psis=(0.7,), batch=16)["psi0.7_clean"]["psnr"]
        finally:
            a.train_mode(True)

    before, psnr0 = _weights(a), held_out_psnr()
    for _ in range(12):
        s = a.step()
        assert all(math.isfinite(float(v)) for v in s.values())
        assert {"l2_first", "l2", "coarse", "latent", "delta", "loss", "psnr"} <= set(s) and "identity" not in s
        assert float(s["psnr"]) == pytest.approx(10 * math.log10(4 / float(s["l2"])), rel=1e-5)
    # single batches are noisy (random codes, corruptions); the held-out PSNR is not: measured 13.19 -> 14.10 dB
    # (14.44 with seed 1) after 12 steps
    assert held_out_psnr() > psnr0 + 0.4
    assert a.step_count == 12 and a.nimg == 96
    assert all(not p.requires_grad for p in G.parameters())
    assert any(not torch.equal(before[k], v) for k, v in a.encoder.state_dict().items())


def test_inputs_are_corrupted_and_runs_reproducible(G):
    # the encoder sees corrupted inputs, the losses the clean targets (the first forward of a step is on x_in)
    x_clean, _ = FaceEncoderTrainer(_cfg(), G).targets()
    for aug, corrupted in ((Augment(), True), (Augment.off(), False)):
        seen = []
        tr = FaceEncoderTrainer(_cfg(augment=aug), G)
        tr.encoder.register_forward_pre_hook(lambda m, inp: seen.append(inp[0][:, :3].detach().clone()))
        tr.step()
        assert seen[0].shape == x_clean.shape and torch.equal(seen[0], x_clean) != corrupted

    # the same seed gives the same weights, another seed others
    runs = []
    for seed in (0, 0, 1):
        tr = FaceEncoderTrainer(_cfg(seed=seed), G)
        tr.step(), tr.step()
        runs.append(_weights(tr))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_identity_loss_with_a_given_network(G):
    ident = _tiny_identity()
    tr = FaceEncoderTrainer(_cfg(id_weight=0.5), G, identity=ident)
    assert tr.identity is ident
    s = tr.step()
    assert float(s["identity"]) > 0 and math.isfinite(float(s["identity"]))
    # the loss is the sum of its weighted parts (last refinement step)
    cfg = tr.cfg
    want = (cfg.l2_weight * s["l2"] + cfg.coarse_weight * s["coarse"] + cfg.latent_weight * s["latent"]
            + cfg.id_weight * s["identity"] + cfg.delta_weight * s["delta"])
    assert float(s["loss"]) == pytest.approx(float(want), rel=1e-5)
    assert all(not p.requires_grad for p in ident.parameters())


@pytest.mark.parametrize("shard_bytes", [15_000_000, 40_000])
def test_checkpoint_resume_continues_exactly(tmp_path, G, monkeypatch, shard_bytes):
    monkeypatch.setattr(et, "SHARD_BYTES", shard_bytes)
    cfg = _cfg()
    straight = FaceEncoderTrainer(cfg, G)
    for _ in range(4):
        straight.step()
    first = FaceEncoderTrainer(cfg, G)
    first.step(), first.step()
    first.save(tmp_path / "run")
    state = read_state(tmp_path / "run")
    assert state["step"] == 2 and state["nimg"] == 8 and state["adam_step"] == 2
    assert state["config"] == cfg.to_dict()
    assert state["generator"]["fingerprint"] == generator_fingerprint(G)
    n = {k: v["count"] for k, v in state["shards"].items()}
    assert {k: v["stem"] for k, v in state["shards"].items()} == {k: f"{k}-s2" for k in n}
    if shard_bytes < 1e6:
        assert n["encoder"] > 1 and n["optim_avg"] > 1  # ~90 kB of encoder weights, 40 kB a shard
    else:
        assert n == {"encoder": 1, "optim_avg": 1, "optim_avg_sq": 1}
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == sorted([f"{s}-s2.{i:02d}.safetensors" for s, k in n.items() for i in range(k)]
                           + ["samples.png", "state.json"])
    resumed, _ = FaceEncoderTrainer.load(tmp_path / "run", G)
    assert (resumed.step_count, resumed.nimg) == (2, 8)
    resumed.step(), resumed.step()
    assert resumed.step_count == 4 and resumed.nimg == 16
    for k, v in straight.encoder.state_dict().items():
        assert torch.equal(v, resumed.encoder.state_dict()[k]), k
    assert torch.equal(straight.gen.get_state(), resumed.gen.get_state())


def test_saves_remove_their_old_shards_and_nothing_else(tmp_path, G):
    """A save deletes the shards of the step it supersedes (and first-format ones), never a user's file that
    happens to start like them (an encoder exported into the checkpoint folder)."""
    tr = FaceEncoderTrainer(_cfg(), G)
    run = tmp_path / "run"
    run.mkdir()
    mine = ["encoder.safetensors", "encoder-final.safetensors", "optim_avg_notes.safetensors", "encoder.00.png"]
    for name in mine + ["encoder.00.safetensors"]:  # the last: a shard of the first format, superseded
        (run / name).write_bytes(b"x")
    tr.step()
    tr.save(run)
    tr.step()
    tr.save(run)
    names = sorted(p.name for p in run.iterdir())
    assert names == sorted(mine + [f"{s}-s2.00.safetensors" for s in ("encoder", "optim_avg", "optim_avg_sq")]
                           + ["samples.png", "state.json"])


def test_resume_refuses_another_generator_and_a_mixed_checkpoint(tmp_path, G):
    tr = FaceEncoderTrainer(_cfg(), G)
    tr.step()
    tr.save(tmp_path / "run")
    other = _tiny(32, seed=1)
    with pytest.raises(CheckpointError) as e:
        FaceEncoderTrainer.load(tmp_path / "run", other)
    msg = str(e.value)
    assert "another generator" in msg and generator_fingerprint(G) in msg and generator_fingerprint(other) in msg
    with pytest.raises(CheckpointError, match="another generator"):
        train_face_encoder(tmp_path / "run", None, resume=True, max_steps=1, eval_n=0, progress=False, G=other)
    with pytest.raises(CheckpointError, match="another generator"):
        export_face_encoder(tmp_path / "run", tmp_path / "x.safetensors", other)
    # the encoder shard of a later save next to the state.json of step 1: refused, naming the shard
    tr.step()
    tr.save(tmp_path / "later")
    (tmp_path / "run" / "encoder-s1.00.safetensors").write_bytes(
        (tmp_path / "later" / "encoder-s2.00.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"encoder-s1\.00\.safetensors: shard of another set \(stem "
                                              r"'encoder-s2', expected 'encoder-s1'\)"):
        FaceEncoderTrainer.load(tmp_path / "run", G)
    (tmp_path / "later" / "optim_avg_sq-s2.00.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"optim_avg_sq-s2\.00\.safetensors: missing or unreadable shard"):
        FaceEncoderTrainer.load(tmp_path / "later", G)


def test_a_save_killed_half_way_leaves_the_previous_checkpoint(tmp_path, G, monkeypatch):
    tr = FaceEncoderTrainer(_cfg(), G)
    tr.step()
    tr.save(tmp_path / "run")
    saved = {k: v.clone() for k, v in tr.encoder.state_dict().items()}
    tr.step()
    calls = []

    def dies_on_the_second_set(*a, **k):
        calls.append(a[2])
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing step 2's optimizer shards
        return et.save_sharded.__wrapped__(*a, **k)

    dies_on_the_second_set.__wrapped__ = et.save_sharded
    monkeypatch.setattr(et, "save_sharded", dies_on_the_second_set)
    with pytest.raises(KeyboardInterrupt):
        tr.save(tmp_path / "run")
    assert calls == ["encoder-s2", "optim_avg-s2"]
    back, state = FaceEncoderTrainer.load(tmp_path / "run", G)  # step 1's set, whole
    assert state["step"] == 1
    for k, v in saved.items():
        assert torch.equal(v, back.encoder.state_dict()[k]), k
    monkeypatch.undo()
    tr.save(tmp_path / "run")  # the next save completes and removes the superseded and the partial sets
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "run").glob("*.safetensors")) == [
        "encoder-s2", "optim_avg-s2", "optim_avg_sq-s2"]


def test_train_export_load_invert_matches(tmp_path, G):
    out = tmp_path / "run"
    state = train_face_encoder(out, None, cfg=_cfg(), max_steps=2, eval_n=0, progress=False, G=G)
    assert state["step"] == 2 and state["generator"]["num_ws"] == G.num_ws and "evaluation" not in state
    assert len((out / "log.jsonl").read_text().splitlines()) == 1  # the last step logs
    with pytest.raises(InputError, match="--resume"):
        train_face_encoder(out, None, cfg=_cfg(), max_steps=1, eval_n=0, progress=False, G=G)
    state = train_face_encoder(out, None, resume=True, max_steps=1, eval_n=0, progress=False, G=G)
    assert state["step"] == 3 and state["nimg"] == 12
    with pytest.raises(InputError, match="names no generator model"):
        export_face_encoder(out, tmp_path / "e.safetensors")  # trained from a Generator object: pass it

    tr, _ = FaceEncoderTrainer.load(out, G)
    tr.train_mode(False)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    ref = tr.net.invert(x, n_iters=2)
    full = export_face_encoder(out, tmp_path / "e32.safetensors", G, compact=False)
    half = export_face_encoder(out, tmp_path / "e16.safetensors", G)
    net = load_encoder(full, G)
    assert net.encoder.cfg.head_width == 8 and net.encoder.cfg == _cfg().encoder_config(G)
    assert net.opts["trained_by"] == "micromotion.invert.encoder_train" and net.opts["step"] == "3"
    got = net.invert(x, n_iters=2)
    assert torch.allclose(got.ws, ref.ws, atol=1e-5) and torch.allclose(got.images, ref.images, atol=1e-4)
    small = load_encoder(half, G).invert(x, n_iters=2)
    assert (small.ws - ref.ws).abs().max() < 2e-2
    assert half.stat().st_size < 0.7 * full.stat().st_size
    from safetensors import safe_open

    with safe_open(str(half), "pt") as f:
        meta = f.metadata()
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys() if "num_batches" not in k)
    assert meta["step"] == "3" and meta["n_iters"] == "2" and meta["command"].startswith("micromotion encoder train")
    assert json.loads(meta["generator"])["fingerprint"] == generator_fingerprint(G)


def test_out_must_be_a_folder(tmp_path, G):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="is a file; --out is the checkpoint folder"):
        train_face_encoder(f, None, cfg=_cfg(), max_steps=1, eval_n=0, progress=False, G=G)
    with pytest.raises(InputError, match="no model"):
        train_face_encoder(tmp_path / "new", None, cfg=_cfg(), max_steps=1, eval_n=0, progress=False)


def test_evaluate_report(G):
    tr = FaceEncoderTrainer(_cfg(), G)
    tr.train_mode(False)
    ev = evaluate_face_encoder(tr.net, None, n=3, n_iters=2, batch=2)
    assert set(ev) == {"psi0.7_clean", "psi0.7_corrupted", "psi1_clean", "psi1_corrupted", "n", "n_iters", "seed"}
    assert (ev["n"], ev["n_iters"], ev["seed"]) == (3, 2, et.EVAL_SEED)
    assert all(set(ev[k]) == {"psnr", "w_mse"} for k in ev if k.startswith("psi"))
    assert evaluate_face_encoder(tr.net, None, n=3, n_iters=2, batch=3) == ev  # fixed held-out set, any batch

    # an encoder that adds nothing: every reconstruction is the average image and every code latent_avg, whatever
    # the input, so the report is the average image's PSNR and latent_avg's error to the held-out samples
    with torch.no_grad():
        for head in tr.encoder.styles:
            head.linear.weight.zero_()
            head.linear.bias.zero_()
    ident = _tiny_identity()
    ev = evaluate_face_encoder(tr.net, ident, n=3, n_iters=2, psis=(0.7,), batch=2)
    assert set(ev) == {"psi0.7_clean", "psi0.7_corrupted", "n", "n_iters", "seed"}
    x, ws = et.held_out(G, 3, 0.7, "cpu")
    x = tr.net._pool(x)
    avg = tr.net.average_image().clamp(-1, 1)  # the report clamps reconstructions as images are
    psnr = (10 * torch.log10(4 / (avg - x).square().mean((1, 2, 3)))).mean()
    d = (ident.embed(chip_crops(avg.expand_as(x))) - ident.embed(chip_crops(x))).norm(dim=1)
    for name in ("clean", "corrupted"):
        r = ev[f"psi0.7_{name}"]
        assert r["psnr"] == pytest.approx(float(psnr), abs=0.006)
        assert r["w_mse"] == pytest.approx(float((tr.net.latent_avg - ws).square().mean()), abs=6e-6)
        assert r["id_distance"] == pytest.approx(float(d.mean()), abs=6e-5)
        assert r["id_under_0.5"] == pytest.approx(float((d < 0.5).float().mean()), abs=1e-3)


def test_train_records_the_evaluation(tmp_path, G):
    state = train_face_encoder(tmp_path / "run", None, cfg=_cfg(), max_steps=1, eval_n=2, progress=False, G=G,
                               identity=_tiny_identity())
    ev = state["evaluation"]
    assert ev["n"] == 2 and ev["n_iters"] == 3 and ev["psi1_clean"]["psnr"] > 0 and "id_distance" in ev["psi1_clean"]
