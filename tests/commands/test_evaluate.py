"""`micromotion evaluate` as users run it, on the tiny generator of tests/test_evaluate.py: JSON, the table,
one-line errors."""
import json

import pytest
import torch
from click.testing import CliRunner

from micromotion import Generator, GeneratorConfig
from micromotion.cli import main
from micromotion.decompose import Motion
from test_evaluate import KEYS, one_thread, setup  # noqa: F401  (shared fixtures)


def _cli(*args):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)])


def test_cli_json(setup):
    r = _cli(setup["mpath"], "--model", setup["gen"], "--identities", 2, "--strengths", "0,0.5,1", "--device", "cpu",
             "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert KEYS <= set(report) and report["model"] == str(setup["gen"]) and report["identities"] == 2


def test_cli_table_and_ablation(setup):
    r = _cli(setup["mpath"], "--model", setup["gen"], "--identities", 2, "--strengths", "0,1", "--device", "cpu",
             "--anchors", setup["apath"], "--ablation")
    assert r.exit_code == 0, r.output
    for name in ("motion", "rpca-k4", "pca-k1", "endpoints", "success", "id drift"):
        assert name in r.output


@pytest.mark.parametrize("args, message", [
    (["smirk"], "unknown motion 'smirk'"),
    (["smile", "--identities", "0"], "--identities must be at least 1"),
    (["smile", "--ablation"], "--ablation needs the anchors"),
    (["smile", "--strengths", "1,0"], "--strengths: strengths must be increasing"),
    (["smile", "--target", "grin"], "unknown --target 'grin'"),
])
def test_cli_bad_input_is_one_line(args, message):
    r = _cli(*args)
    assert r.exit_code == 1
    assert message in r.output and r.output.count("\n") == 1


def test_cli_motion_for_another_generator(setup, tmp_path):
    other = Generator(GeneratorConfig.tiny(32))
    mpath = Motion.from_direction(torch.randn(other.num_ws, other.w_dim), name="smile",
                                  generator=other).save(tmp_path / "other.safetensors")
    r = _cli(mpath, "--model", setup["gen"], "--identities", 1, "--device", "cpu")
    assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1
