"""`micromotion demo` runs offline and reports what it ran, the full method on the shipped world model."""
import json

from click.testing import CliRunner

from micromotion.cli import main
from micromotion.demo import rpca_vs_raw


def test_rpca_beats_raw_endpoints():
    r = rpca_vs_raw()
    assert r["cos_rpca"] > 0.95 and r["cos_raw_endpoints"] < 0.5


def test_demo_cli(tmp_path):
    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "d"), "--frames", "4", "--text-steps", "2"])
    assert r.exit_code == 0, r.output
    assert "ran:" in r.output and "robust PCA" in r.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert set(report["numbers"]["world_clips"]) == {"smile", "angry", "aging", "eyes_close", "head_turn"}
    for row in report["numbers"]["world_clips"].values():  # the oracle reads the clip's motion
        assert row["oracle_end"] - row["oracle_start"] > 0.5
    assert (tmp_path / "d" / "world_clip_smile.mp4").stat().st_size > 1000


def test_demo_refuses_bad_counts(tmp_path):
    for opt, value in (("--text-steps", "0"), ("--frames", "1"), ("--identities", "0")):
        r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "d"), opt, value])
        assert r.exit_code == 1 and opt in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "d").exists()


def test_demo_runs_the_whole_method_on_the_shipped_world(tmp_path):
    """Video and text anchors -> motion -> transfer to unseen encoded renders; the smile preset must smile."""
    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "d"), "--frames", "4", "--identities", "3"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    tr = report["numbers"]["transfer"]
    assert set(tr) == {f"video/{m}" for m in ("smile", "angry", "aging", "eyes_close", "head_turn")} | {"text/smile"}
    assert tr["video/smile"]["target_change_mean"] > 0.4  # measured +0.70 of range on 50 faces
    assert tr["video/aging"]["target_change_mean"] > 0.4
    # re-inverted text anchors from the smile preset's start face transfer (40 steps: +0.63 on 50 faces, CPU)
    assert tr["text/smile"]["target_change_mean"] > 0.3
    for name in ("transfer_smile.mp4", "photo.png", "photo_smile.mp4", "motion_text_smile.safetensors"):
        assert (tmp_path / "d" / name).stat().st_size > 500, name
    assert "not run" not in r.output
