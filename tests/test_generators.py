"""`micromotion.generators`: the interface, its shape checks, and `load_generator` for names and files."""
from __future__ import annotations

import shutil

import pytest
import torch

from micromotion import generators
from micromotion.checkpoint import save_generator
from micromotion.errors import InputError, MicromotionError
from micromotion.generators import GeneratorLike, check_generator, check_ws, load_generator
from micromotion.models.stylegan2 import Generator, GeneratorConfig
from micromotion.weights import cache_path


@pytest.fixture
def tiny_file(tmp_path):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny()).eval()
    G.compute_w_avg(64)
    return save_generator(G, tmp_path / "tiny.safetensors"), G


def test_stylegan2_implements_the_interface():
    G = Generator(GeneratorConfig.tiny())
    assert isinstance(G, GeneratorLike)
    check_generator(G)
    ws = G.mapping(torch.randn(2, G.z_dim))
    assert check_ws(G, ws) is ws
    assert G.synthesis(ws).shape == (2, 3, G.resolution, G.resolution)


def test_a_non_generator_is_named():
    with pytest.raises(TypeError, match="Linear is not a generator: it lacks mapping, synthesis"):
        check_generator(torch.nn.Linear(2, 2))
    G = Generator(GeneratorConfig.tiny())
    G.w_avg = torch.zeros(3)
    with pytest.raises(ValueError, match=r"w_avg must have shape \[16\], got \[3\]"):
        check_generator(G)


def test_wrong_ws_rows_name_both_counts():
    G = Generator(GeneratorConfig.tiny())
    with pytest.raises(InputError, match=r"ws of shape \[1, 5, 16\] does not fit .* \[N, 8, 16\] \(8 W\+ rows of 16\)"):
        check_ws(G, torch.zeros(1, 5, 16))
    with pytest.raises(InputError, match=r"shape \[8, 16\]"):
        check_ws(G, torch.zeros(8, 16))


def test_load_a_file(tiny_file):
    path, G0 = tiny_file
    G = load_generator(path)
    assert G.registry_name is None and not G.training
    assert not any(p.requires_grad for p in G.parameters())
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))
    assert torch.equal(G(z), G0(z))
    assert torch.equal(load_generator(str(path), device="cpu").w_avg, G0.w_avg)


def test_load_by_name_and_by_the_registry_file(tmp_path):
    G = load_generator("world")
    assert G.registry_name == "world" and (G.resolution, G.num_ws) == (128, 12)
    assert load_generator(cache_path("world")).registry_name == "world"  # the same file given by its path
    copy = shutil.copy(cache_path("world"), tmp_path / "w.safetensors")
    assert load_generator(copy).registry_name is None  # a copy is a file like any other (profiles match it)


def test_unknown_names_and_files_are_one_line(tmp_path):
    with pytest.raises(MicromotionError, match="unknown"):
        load_generator("no-such-model")
    with pytest.raises(MicromotionError):
        load_generator(tmp_path / "missing.safetensors")


def test_a_registered_reader_comes_first(tiny_file, monkeypatch, tmp_path):
    path, G0 = tiny_file
    seen = []

    def read(p):
        seen.append(p)
        return G0

    monkeypatch.setattr(generators, "READERS", [("fake", lambda p: p.suffix == ".fake", read)] + generators.READERS)
    other = tmp_path / "x.fake"
    other.write_bytes(b"")
    assert load_generator(other) is G0 and seen == [other]
    assert load_generator(path) is not G0  # other files still go to StyleGAN2's reader


# ----------------------------------------------------------------------------------------------------------
# MobileStyleGAN: our safetensors of the converted random-face model (tests/weights/test_package.py converts)


@pytest.fixture
def tiny_msg_file(tmp_path):
    from micromotion.models.mobilestylegan import Generator as MSG, MobileStyleGANConfig
    from micromotion.models.mobilestylegan_convert import save_generator as save_msg

    torch.manual_seed(0)
    G = MSG(MobileStyleGANConfig.tiny()).eval()
    G.compute_w_avg(64)
    return save_msg(G, tmp_path / "tiny-msg.safetensors"), G


def test_mobilestylegan_file_loads_with_its_w_avg(tiny_msg_file):
    from micromotion.models.mobilestylegan import Generator as MSG

    path, G0 = tiny_msg_file
    assert [name for name, accepts, _ in generators.READERS if accepts(path)][0] == "mobilestylegan"
    G = load_generator(path)
    assert isinstance(G, MSG) and isinstance(G, GeneratorLike) and G.registry_name is None
    assert torch.equal(G.w_avg, G0.w_avg) and G.w_avg_source == G0.w_avg_source
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), 0.7)
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), G0.synthesis(ws))
    # a StyleGAN2 file is not taken for one
    sg2 = save_generator(Generator(GeneratorConfig.tiny()), path.with_name("sg2.safetensors"))
    assert [name for name, accepts, _ in generators.READERS if accepts(sg2)][0] == "stylegan2"


def test_mobilestylegan_wrong_ws_rows_name_both_counts(tiny_msg_file):
    G = load_generator(tiny_msg_file[0])
    with pytest.raises(InputError, match=rf"ws of shape \[1, 5, 16\] does not fit this generator: 5 W\+ rows, it "
                                         rf"takes \[N, {G.num_ws}, 16\] \({G.num_ws} W\+ rows of 16\)"):
        check_ws(G, torch.zeros(1, 5, 16))


def test_damaged_mobilestylegan_file_is_one_line(tiny_msg_file):
    path, _ = tiny_msg_file
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(MicromotionError, match="tiny-msg.safetensors: not a readable safetensors file"):
        load_generator(path)
