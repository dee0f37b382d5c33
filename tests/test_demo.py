"""`micromotion demo` runs offline and reports what it ran; the full-method branch runs on a stand-in generator."""
import json

import torch
from click.testing import CliRunner

from micromotion import Generator, GeneratorConfig
from micromotion.cli import main
from micromotion.demo import DemoReport, full_method, rpca_vs_raw


def test_rpca_beats_raw_endpoints():
    r = rpca_vs_raw()
    assert r["cos_rpca"] > 0.95 and r["cos_raw_endpoints"] < 0.5


def test_demo_cli(tmp_path):
    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "d"), "--frames", "4"])
    assert r.exit_code == 0, r.output
    assert "ran:" in r.output and "robust PCA" in r.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert set(report["numbers"]["world_clips"]) == {"smile", "angry", "aging", "eyes_close", "head_turn"}
    for row in report["numbers"]["world_clips"].values():  # the oracle reads the clip's motion
        assert row["oracle_end"] - row["oracle_start"] > 0.5
    assert (tmp_path / "d" / "world_clip_smile.mp4").stat().st_size > 1000


def test_full_method_path_runs(tmp_path):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32)).eval()
    G.compute_w_avg(200)
    rep = DemoReport()
    res = full_method(G, tmp_path, rep, identities=2, frames=3, steps=2)
    assert set(res) == {"smile", "angry", "aging", "eyes_close", "head_turn"}
    assert all(torch.isfinite(torch.tensor(v["target_change_mean"])) for v in res.values())
    assert (tmp_path / "motion_smile.safetensors").is_file() and len(rep.files) == 5
