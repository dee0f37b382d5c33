"""micromotion.io.files: the one header convention, atomic writer, fingerprint and cache root."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from micromotion.errors import CheckpointError, InputError
from micromotion.io import files
from micromotion.models.stylegan2 import Generator, GeneratorConfig

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "formats"


def _tiny(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(GeneratorConfig.tiny(16)).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------
# Header convention


def test_header_writes_version_and_reads_both_spellings(tmp_path):
    assert files.header("micromotion-x", 3, a=1) == {"format": "micromotion-x", "version": "3", "a": "1"}
    assert files.header_version({"version": "2"}) == 2
    assert files.header_version({"format_version": "1"}) == 1  # motions written before the convention
    assert files.header_version({}) == 0
    with pytest.raises(ValueError):
        files.header_version({"version": "x"})


@pytest.mark.parametrize("key", ["version", "format_version"])
def test_read_safetensors_accepts_either_key(tmp_path, key):
    from safetensors.torch import save_file

    p = tmp_path / "x.safetensors"
    save_file({"t": torch.ones(2)}, str(p), metadata={"format": "micromotion-x", key: "1"})
    sd, meta = files.read_safetensors(p, "micromotion-x", 1, "thing")
    assert torch.equal(sd["t"], torch.ones(2)) and meta[key] == "1"


def test_read_safetensors_refusals(tmp_path):
    p = files.save_safetensors({"t": torch.zeros(1)}, tmp_path / "x.safetensors", files.header("micromotion-x", 5))
    with pytest.raises(CheckpointError, match="newer than this micromotion supports"):
        files.read_safetensors(p, "micromotion-x", 4, "thing")
    with pytest.raises(CheckpointError, match="not a micromotion thing"):
        files.read_safetensors(p, "micromotion-y", 9, "thing")
    with pytest.raises(InputError, match="bad thing format version 5"):
        files.read_safetensors(p, "micromotion-x", 9, "thing", error=InputError, minimum=6)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        files.read_safetensors(tmp_path / "junk.safetensors", "micromotion-x", 1, "thing")


def test_check_header_and_config_from_dict():
    assert files.check_header(files.header("x", 2), "f", "x", 3, "thing") == 2
    with pytest.raises(InputError, match="f: safetensors file is not a micromotion thing"):
        files.check_header(files.header("y", 1), "f", "x", 3, "thing", error=InputError)
    with pytest.raises(CheckpointError, match="bad thing format version 0"):
        files.check_header({"format": "x"}, "f", "x", 3, "thing", minimum=1)
    assert files.config_from_dict(GeneratorConfig, {"resolution": 32}, "generator").resolution == 32
    with pytest.raises(CheckpointError, match=r"unknown generator config keys \['nope'\]"):
        files.config_from_dict(GeneratorConfig, {"nope": 1}, "generator", CheckpointError)


def test_every_writer_uses_the_one_header(tmp_path):
    """Files written now carry `version` (motions used to write `format_version`); old ones still load."""
    from safetensors import safe_open

    from micromotion.anchors import Anchors
    from micromotion.checkpoint import save_generator
    from micromotion.decompose import Motion

    G = _tiny()
    a = Anchors(torch.randn(4, G.num_ws, G.w_dim), ["start", "a", "b", "c"], {"kind": "test"})
    paths = [save_generator(G, tmp_path / "g.safetensors"), a.save(tmp_path / "a.safetensors"),
             Motion.from_anchors(a, rank=2, generator=G).save(tmp_path / "m.safetensors")]
    for p in paths:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata()
        assert meta["version"] == "1" and "format_version" not in meta, p.name
    m_old = Motion.load(FIX / "motion.safetensors")  # written with `format_version`
    assert m_old.meta.name == "fixture"


# ----------------------------------------------------------------------------------------------------------
# Atomic writer


def test_atomic_output_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_output(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".bin" and tmp != target
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with files.atomic_output(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_checks_the_target_first(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        with files.atomic_output(tmp_path):
            pass
    with pytest.raises(CheckpointError, match="does not exist; create it first"):
        with files.atomic_output(tmp_path / "no" / "x.bin", error=CheckpointError):
            pass


def test_failed_safetensors_write_leaves_nothing(tmp_path):
    with pytest.raises(Exception):
        files.save_safetensors({"t": "not a tensor"}, tmp_path / "x.safetensors", {})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_files_honour_the_umask(tmp_path, umask_027):
    """Written files get 0o666 & ~umask, like any file a program creates (not a temp file's 0600)."""
    from micromotion.anchors import Anchors
    from micromotion.checkpoint import save_generator
    from micromotion.io.images import save_image
    from micromotion.render import save_png

    G = _tiny()
    img = np.zeros((8, 8, 3), np.uint8)
    made = [save_generator(G, tmp_path / "g.safetensors"), save_png(img, tmp_path / "p.png"),
            save_image(img, tmp_path / "i.jpg"), files.write_text(tmp_path / "t.json", "{}"),
            Anchors(torch.zeros(2, G.num_ws, G.w_dim), ["a", "b"]).save(tmp_path / "a.safetensors")]
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == umask_027, p.name


# ----------------------------------------------------------------------------------------------------------
# Fingerprint


def test_fingerprint_identifies_config_and_weights():
    G1, G1_again, G2 = _tiny(0), _tiny(0), _tiny(1)
    fp = files.fingerprint(G1)
    assert fp.startswith("sha256:") and len(fp) == 7 + 64
    assert files.fingerprint(G1_again) == fp and files.fingerprint(G2) != fp
    with torch.no_grad():
        next(iter(G1_again.parameters())).add_(1e-3)  # remembered value is dropped once a tensor changes
    assert files.fingerprint(G1_again) != fp


def test_every_old_fingerprint_is_accepted_and_the_new_one_written():
    from micromotion.anchors import module_fingerprint
    from micromotion.checkpoint import load_generator
    from micromotion.decompose import generator_fingerprint
    from micromotion.models import encoder

    G = load_generator(FIX / "generator.safetensors")
    old = json.loads((FIX / "expected.json").read_text())["fingerprints"]
    for form in old.values():
        assert files.fingerprint_matches(form, G), form
    assert not files.fingerprint_matches(None, G) and not files.fingerprint_matches("", G)
    assert not any(files.fingerprint_matches(form, _tiny(7)) for form in old.values())
    new = files.fingerprint(G)
    assert files.fingerprint_matches(new[7:23], G)  # the preset cache folder's name
    assert files.legacy_fingerprints(G) == {new, new[7:23], *old.values()}
    assert generator_fingerprint(G) == encoder.generator_fingerprint(G) == module_fingerprint(G) == new
    assert new == old["decompose.generator_fingerprint"]  # motion files always stored this form


# ----------------------------------------------------------------------------------------------------------
# Cache root


def test_home_precedence_and_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    monkeypatch.delenv("MICROMOTION_HOME", raising=False)
    assert files.home() == tmp_path / "h" / ".cache" / "micromotion"
    monkeypatch.setenv("MM_BASE", str(tmp_path / "base"))
    monkeypatch.setenv("MICROMOTION_HOME", "$MM_BASE/mm")
    assert files.home() == tmp_path / "base" / "mm"
    monkeypatch.setenv("MICROMOTION_HOME", "~/mm")
    assert files.home() == tmp_path / "h" / "mm"
    assert files.home(tmp_path / "arg") == tmp_path / "arg"
    assert files.home("~/x") == tmp_path / "h" / "x"
    assert files.home("") == tmp_path / "h" / "mm"
    monkeypatch.chdir(tmp_path)
    assert files.home("rel") == tmp_path / "rel"  # absolute


def test_every_cache_user_goes_through_home(tmp_path, monkeypatch):
    from micromotion import presets, weights
    from micromotion.anchors import anchors_cache_dir

    monkeypatch.setenv("MM_BASE", str(tmp_path))
    monkeypatch.setenv("MICROMOTION_HOME", "$MM_BASE/c")
    root = tmp_path / "c"
    assert weights.cache_root() == root and weights.weights_dir() == root / "weights"
    assert anchors_cache_dir() == root / "anchors"
    assert presets.cache_path("smile", _tiny(), None).parents[1] == root / "presets"  # was not expanded


# ----------------------------------------------------------------------------------------------------------
# Sharded tensor sets (checkpoints whose every file stays under a size limit)


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a": torch.randn(10, generator=g), "big": torch.randn(100, generator=g),  # 40 and 400 bytes
            "b": torch.randn(5, generator=g).half(), "n": torch.tensor([3, 4], dtype=torch.int64),
            "c": torch.randn(20, generator=g)}


def test_sharded_round_trip_and_split(tmp_path):
    t = _tensors()
    assert files.save_sharded(t, tmp_path, "one", {"format": "x"}) == 1
    back = files.load_sharded(tmp_path, "one", 1)
    assert set(back) == set(t) and all(torch.equal(back[k], t[k]) and back[k].dtype == t[k].dtype for k in t)

    # 100 bytes a shard: a (40) | big (400, alone although over the limit) | b + n (10 + 16) | c (80)
    n = files.save_sharded(t, tmp_path, "many", {"format": "x", "step": "7"}, max_bytes=100)
    assert n == 4
    from safetensors import safe_open

    keys, metas = [], []
    for i in range(n):
        with safe_open(str(tmp_path / f"many.{i:02d}.safetensors"), "pt") as f:
            keys.append(sorted(f.keys()))
            metas.append(f.metadata())
    assert keys == [["a"], ["big"], ["b", "n"], ["c"]]
    assert [m["shard"] for m in metas] == ["0/4", "1/4", "2/4", "3/4"]
    assert all(m["format"] == "x" and m["step"] == "7" and m["stem"] == "many" for m in metas)
    back = files.load_sharded(tmp_path, "many", 4, expect={"format": "x", "step": 7})
    assert set(back) == set(t) and all(torch.equal(back[k], t[k]) for k in t)


def test_sharded_missing_or_foreign_shard_is_named(tmp_path):
    t = _tensors()
    n = files.save_sharded(t, tmp_path, "s", {"format": "x", "step": "2"}, max_bytes=100)
    shard2 = tmp_path / "s.02.safetensors"
    # a count other than the one recorded
    with pytest.raises(CheckpointError, match=r"s\.00\.safetensors: shard of another set \(shard '0/4', expected "
                                              r"'0/3'\)"):
        files.load_sharded(tmp_path, "s", 3)
    # a shard written by another save (another step) in the set's place
    (tmp_path / "old").mkdir()
    files.save_sharded(t, tmp_path / "old", "s", {"format": "x", "step": "1"}, max_bytes=100)
    good = shard2.read_bytes()
    shard2.write_bytes((tmp_path / "old" / "s.02.safetensors").read_bytes())
    assert files.load_sharded(tmp_path, "s", n)  # without `expect` nothing tells them apart
    with pytest.raises(CheckpointError, match=r"s\.02\.safetensors: shard of another set \(step '1', expected '2'\)"):
        files.load_sharded(tmp_path, "s", n, expect={"step": "2"})
    # another set's file renamed into this one
    files.save_sharded(t, tmp_path, "other", {"format": "x", "step": "2"}, max_bytes=100)
    shard2.write_bytes((tmp_path / "other.02.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"s\.02\.safetensors: shard of another set \(stem 'other'"):
        files.load_sharded(tmp_path, "s", n)
    shard2.write_bytes(good)
    assert set(files.load_sharded(tmp_path, "s", n, expect={"step": "2"})) == set(t)
    # missing, truncated
    shard2.unlink()
    with pytest.raises(CheckpointError, match=r"s\.02\.safetensors: missing or unreadable shard"):
        files.load_sharded(tmp_path, "s", n)
    shard2.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"s\.02\.safetensors: missing or unreadable shard"):
        files.load_sharded(tmp_path, "s", n)
