"""`micromotion encoder train` as users run it: a tiny run that writes its checkpoint and export, resumes from any
folder, and one-line errors with a non-zero exit for a bad --out or a resume that cannot be."""
import json

import pytest
import torch
from click.testing import CliRunner

from micromotion.cli import main
from micromotion.models.encoder import generator_fingerprint, load_encoder
from micromotion.models.stylegan2 import Generator, GeneratorConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def _generator(tmp_path, seed: int = 0, name: str = "G.safetensors"):
    from micromotion.checkpoint import save_generator

    torch.manual_seed(seed)
    G = Generator(GeneratorConfig.tiny(32))
    G.compute_w_avg(n=256)
    return G.eval().requires_grad_(False), save_generator(G, tmp_path / name)


def _train(*args):
    return CliRunner().invoke(main, ["encoder", "train", *map(str, args)])


def _one_line_error(r, *fragments):
    assert r.exit_code != 0
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert all(f in lines[0] for f in fragments), lines[0]


def test_train_writes_checkpoint_and_export(tmp_path, monkeypatch):
    G, gpath = _generator(tmp_path)
    out, exported = tmp_path / "run", tmp_path / "enc.safetensors"
    monkeypatch.chdir(tmp_path)
    r = _train("--tiny", "--model", gpath.name, "--out", "run", "--max-steps", 2, "--eval-n", 0, "--id-weight", 0,
               "--device", "cpu", "--export", exported)
    assert r.exit_code == 0, r.output
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 2 and state["config"]["batch"] == 4 and state["config"]["id_weight"] == 0
    assert state["config"]["input_size"] == 32 and state["device"] == "cpu"
    assert state["generator"]["model"] == str(gpath.resolve())  # a file given relatively: stored absolute
    assert state["generator"]["fingerprint"] == generator_fingerprint(G)
    net = load_encoder(exported, G)
    assert net.encoder.cfg.head_width == 8 and net.opts["step"] == "2"
    assert exported.stat().st_size > 0

    # resume from another folder, without --model: the run's generator; --compact export is float16
    monkeypatch.chdir(tmp_path / "run")
    r = _train("--out", out, "--resume", "--max-steps", 1, "--eval-n", 0, "--device", "cpu", "--export",
               tmp_path / "half.safetensors", "--compact")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "state.json").read_text())["step"] == 3
    from safetensors import safe_open

    with safe_open(str(tmp_path / "half.safetensors"), "pt") as f:
        assert f.get_tensor("latent_avg").dtype == torch.float16 and f.metadata()["step"] == "3"

    # --help is argparse's, under the name users type
    r = _train("--help")
    assert r.exit_code == 0 and "usage: micromotion encoder train" in r.output and "--id-weight" in r.output


def test_bad_out_and_bad_resume_are_one_line_errors(tmp_path):
    G, gpath = _generator(tmp_path)
    other, opath = _generator(tmp_path, seed=1, name="other.safetensors")
    common = ("--tiny", "--max-steps", 1, "--eval-n", 0, "--id-weight", 0, "--device", "cpu")

    f = tmp_path / "a-file"
    f.write_text("not a folder")
    _one_line_error(_train("--model", gpath, "--out", f, *common), "a-file: is a file", "--out")
    _one_line_error(_train("--out", tmp_path / "nothing", "--resume", *common), "no model", "--model")

    out = tmp_path / "run"
    assert _train("--model", gpath, "--out", out, *common).exit_code == 0
    _one_line_error(_train("--model", gpath, "--out", out, *common), "already holds a checkpoint", "--resume")
    r = _train("--model", opath, "--out", out, "--resume", *common)
    _one_line_error(r, "another generator", generator_fingerprint(G), generator_fingerprint(other))
    # a folder of another trainer
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "state.json").write_text(json.dumps({"format": "micromotion-world-encoder-train"}))
    _one_line_error(_train("--out", tmp_path / "world", "--resume", *common), "not a face encoder training checkpoint")
    # a damaged checkpoint
    (out / "optim_avg-s1.00.safetensors").write_bytes(b"")
    _one_line_error(_train("--out", out, "--resume", *common),
                    "run/optim_avg-s1.00.safetensors: missing or unreadable shard")
    assert json.loads((out / "state.json").read_text())["step"] == 1
