"""micromotion.world.train.common: what the three trainers share (command line, step loop, checkpoint state)."""
import json

import pytest
import torch

from micromotion.errors import CheckpointError, InputError
from micromotion.world.train import common


def test_step_loop_logs_checkpoints_and_stops_at_max_steps(tmp_path):
    clock, calls, saves = common.Clock(12.0), [], []

    def step():
        calls.append(1)
        return {"loss": torch.tensor(float(len(calls)))}

    def record(means, n, seconds):
        return {"n": n, **means}, f"loss {means['loss']}"

    steps = common.run_steps(step, tmp_path / "log.jsonl", clock, desc="t", minutes=5, max_steps=5,
                             checkpoint_minutes=-1, log_every=2, progress=False, record=record,
                             save=lambda: saves.append(1))
    assert steps == 5 and len(saves) == 5
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == [{"n": 2, "loss": 1.5}, {"n": 2, "loss": 3.5}, {"n": 1, "loss": 5.0}]  # the last at max_steps
    assert clock.train_seconds() >= 12.0
    assert common.run_steps(step, tmp_path / "log.jsonl", clock, desc="t", minutes=5, max_steps=None,
                            checkpoint_minutes=9, log_every=2, progress=False, record=record, save=lambda: None,
                            more=lambda: len(calls) < 7) == 2


def test_existing_checkpoint_override_and_state(tmp_path):
    assert not common.existing_checkpoint(tmp_path, resume=False)
    (tmp_path / "state.json").write_text(json.dumps({"format": "f", "version": 1}))
    with pytest.raises(InputError, match="--resume"):
        common.existing_checkpoint(tmp_path, resume=False)
    assert common.existing_checkpoint(tmp_path, resume=True)
    assert common.read_checkpoint_state(tmp_path, "f", 1, "test")["version"] == 1
    with pytest.raises(CheckpointError, match="not a test checkpoint"):
        common.read_checkpoint_state(tmp_path, "g", 1, "test")

    class Cfg:
        a, b = 1, 2

    cfg = Cfg()
    common.override(cfg, a=None, b=5)
    assert (cfg.a, cfg.b) == (1, 5)


def test_main_errors_are_one_line(tmp_path):
    p = common.trainer_parser("prog", "d", "prog --out x", what="net", batch=8, export="it", compact="half")

    def body(a, device):
        assert device == "cpu" and a.out == "x" and a.checkpoint_minutes == 3.0
        raise InputError("bad thing")

    with pytest.raises(SystemExit, match="^error: bad thing$"):
        common.run_main(p, ["--out", "x", "--device", "cpu"], body)
    with pytest.raises(SystemExit, match="^error: unknown device 'tpu'"):
        common.run_main(p, ["--out", "x", "--device", "tpu"], body)
