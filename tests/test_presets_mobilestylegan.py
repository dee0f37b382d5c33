"""The authors' StyleGAN2 directions carried to MobileStyleGAN's rows (presets.carry_direction and friends),
`micromotion motion carry-paper`, and `evaluate_motions` (several motions on the same faces)."""
import pytest
import torch
from click.testing import CliRunner

from micromotion import Generator as StyleGAN2, GeneratorConfig
from micromotion.cli import main
from micromotion.decompose import Motion, load_motion
from micromotion.evaluate import evaluate_motion, evaluate_motions
from micromotion.io.files import fingerprint
from micromotion.models.mobilestylegan import Generator, MobileStyleGANConfig
from micromotion.presets import (PAPER_CREDIT, PRESETS, SHIPPED_ROWS, carried_paper_motion, carry_direction,
                                 mobilestylegan_row_map, shipped_dir_for, write_carried_presets)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(MobileStyleGANConfig.tiny()).eval()  # 2 blocks: 8 rows, like a StyleGAN2 of 8 rows


@pytest.fixture
def direction_file(tmp_path, G):
    d = torch.randn(1, 8, G.w_dim, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "smile.pt"
    torch.save(d, path)  # a torch zip file, as the authors' d_latent
    return path, d[0]


def test_row_map_of_the_1024_model_pairs_resolutions():
    rows = mobilestylegan_row_map(23)
    assert len(rows) == 23 and rows[0] == (0,)
    for b in range(7):  # block b works at 8·2^b, StyleGAN2's rows 2b+1, 2b+2 (convs), 2b+3 (ToRGB)
        assert rows[3 * b + 1] == (2 * b + 1,) and rows[3 * b + 2] == (2 * b + 2,)
        if b < 6:
            assert rows[3 * b + 3] == (2 * b + 3,)
    assert rows[21] == rows[22] == (15, 16, 17)  # the final image layer does the 1024² convs' and ToRGB's work
    assert {i for r in rows for i in r} == set(range(18))  # every StyleGAN2 row is used
    with pytest.raises(Exception, match="3 rows per block"):
        mobilestylegan_row_map(18)


def test_carry_direction_schemes():
    d = torch.randn(18, 512)
    res = carry_direction(d, 23, "resolution")
    assert res.shape == (23, 512)
    assert torch.equal(res[4], d[3]) and torch.equal(res[20], d[14])
    assert torch.allclose(res[21], d[15:18].mean(0))
    mean = carry_direction(d[None], 23, "wmean")
    assert mean.shape == (23, 512) and torch.allclose(mean, d.mean(0).expand(23, -1))
    with pytest.raises(Exception, match="has 18 rows"):
        carry_direction(torch.randn(14, 512), 23)
    with pytest.raises(Exception, match="unknown row scheme"):
        carry_direction(d, 23, "nearest")


@pytest.mark.parametrize("rows", ["resolution", "wmean"])
def test_carried_motion_is_normalised_on_the_stylegan2_rows_and_credited(G, direction_file, rows):
    path, d = direction_file
    m = carried_paper_motion(path, G, rows=rows)
    scale = PRESETS["smile"].unit_norm / float(d.norm())
    assert m.meta.name == "smile" and m.meta.generator_hash == fingerprint(G)
    assert torch.allclose(m.direction, carry_direction(d * scale, G.num_ws, rows), atol=1e-6)
    src = m.meta.source
    assert src["rows"] == rows and src["credit"] == PAPER_CREDIT and src["license"] == "MIT"
    assert src["paper_scale"] == pytest.approx(scale) and src["kind"] == "paper-carried"


def test_write_carried_presets_and_cli(G, direction_file, tmp_path, monkeypatch):
    path, _ = direction_file
    [out] = write_carried_presets([path], G, rows="wmean", out_dir=tmp_path / "a")
    assert out.name == "smile.safetensors"
    back = load_motion(out, generator=G)
    assert back.meta.source["rows"] == "wmean"

    import micromotion.commands.motion as cmd

    monkeypatch.setattr(cmd, "_generator", lambda spec: G)  # the real model comes from the weights registry
    r = CliRunner().invoke(main, ["motion", "carry-paper", str(path), "--model", "mobilestylegan-ffhq-1024",
                                  "--rows", "resolution", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and (tmp_path / "b" / "smile.safetensors").is_file()
    m = load_motion(tmp_path / "b" / "smile.safetensors", generator=G)
    assert m.meta.source["rows"] == "resolution"
    r = CliRunner().invoke(main, ["motion", "carry-paper", str(path), "--model", "x", "--rows", "nearest"])
    assert r.exit_code != 0 and "nearest" in r.output


def test_import_paper_direction_carries_to_a_mobilestylegan(tmp_path):
    from micromotion.presets import import_paper_direction

    torch.manual_seed(0)
    G = Generator(MobileStyleGANConfig(z_dim=16, w_dim=16, mapping_layers=2, channels=(16, 16, 16, 8))).eval()
    d = torch.randn(10, 16)  # a StyleGAN2 of the same 64² output has 10 rows; this MobileStyleGAN 11
    torch.save(d[None], tmp_path / "smile.pt")
    out = import_paper_direction(tmp_path / "smile.pt", G, cache_dir=tmp_path)  # `presets import ... --model`
    m = load_motion(out, generator=G)
    assert m.num_ws == G.num_ws and m.meta.source["rows"] == SHIPPED_ROWS["smile"]
    want = carry_direction(d * (PRESETS["smile"].unit_norm / float(d.norm())), G.num_ws, SHIPPED_ROWS["smile"])
    assert torch.allclose(m.direction, want, atol=1e-6)


def test_evaluate_motions_matches_evaluate_motion_on_shared_faces():
    torch.manual_seed(0)
    G = StyleGAN2(GeneratorConfig.tiny(32)).eval()
    G.compute_w_avg(200)
    a = Motion.from_direction(torch.randn(G.num_ws, G.w_dim), name="smile", generator=G)
    b = Motion.from_direction(torch.randn(G.num_ws, G.w_dim), name="aging", generator=G)
    seen = []
    both = evaluate_motions(G, {"a": a, "b": b}, identities=3, seed=4, strengths=[0, 0.5, 1], measure_with="oracle",
                            on_report=lambda k, r: seen.append(k))
    assert seen == ["a", "b"]
    for key, m in (("a", a), ("b", b)):
        one = evaluate_motion(G, m, identities=3, seed=4, strengths=[0, 0.5, 1], measure_with="oracle",
                              with_reference=False)
        for k in ("target_change_mean", "target_success_rate", "smoothness", "per_strength"):
            assert both[key][k] == pytest.approx(one[k]), k


# -- the presets shipped for the real FFHQ-1024 MobileStyleGAN (random-face) --------------------------------


PAPER_FILES = {"smile": "smile", "angry": "angry", "aging": "aging", "eyes_close": "eyesClose",
               "head_turn": "headsTurn"}


@pytest.mark.parametrize("name", list(PRESETS))
def test_shipped_mobilestylegan_presets_are_the_carried_reference_directions(reference_dir, name):
    from micromotion.decompose.formats import read_paper_direction

    shipped = load_motion(shipped_dir_for(None) / f"{name}.safetensors")
    assert shipped.meta.generator_name == "mobilestylegan-ffhq-1024" and shipped.num_ws == 23
    assert shipped.meta.source["rows"] == SHIPPED_ROWS[name] and shipped.meta.source["credit"] == PAPER_CREDIT
    d18 = read_paper_direction(reference_dir / "paper_directions" / f"{PAPER_FILES[name]}.pt")
    want = carry_direction(d18 * (PRESETS[name].unit_norm / float(d18.norm())), 23, SHIPPED_ROWS[name])
    assert torch.allclose(shipped.direction, want, atol=1e-6)


@pytest.fixture(scope="module")
def random_face():
    from micromotion.models.mobilestylegan_convert import find_random_face_files, load_random_face

    try:
        files = find_random_face_files()  # located without importing random_face (it imports openvino)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return load_random_face(files)


def test_shipped_mobilestylegan_presets_are_for_random_faces_model(random_face, tmp_path):
    from micromotion.presets import preset_motion

    fp = fingerprint(random_face)
    for name in PRESETS:
        assert load_motion(shipped_dir_for(None) / f"{name}.safetensors").meta.generator_hash == fp
        m = preset_motion(name, random_face, cache_dir=tmp_path)  # nothing cached: the shipped file is found
        assert m.meta.source["kind"] == "paper-carried" and m.meta.name == name
