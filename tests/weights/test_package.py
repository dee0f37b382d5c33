"""Models shipped inside a PyPI package (weights.package): the mobilestylegan-ffhq-1024 entry, locating the
installed random-face without importing it, `weights import` of a wheel or folder, `weights download` through
pip (faked: no network in tests), one conversion, a damaged converted file, and the one-line refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import micromotion.weights as W
import micromotion.weights.package as package
import weights_helpers as H
from micromotion.cli import main
from micromotion.errors import WeightsError
from micromotion.models import mobilestylegan_convert as conv
from weights_helpers import build_wheel, cache_files, hide_random_face, package_spec

NAME = "mobilestylegan-ffhq-1024"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))
    monkeypatch.delenv("MICROMOTION_OFFLINE", raising=False)
    return tmp_path


@pytest.fixture
def fake(home):
    """A registered package entry of the fake package (never installed), its wheel, the converter's calls."""
    spec = W.register(package_spec())
    H.CONVERTED.clear()
    wheel = build_wheel(home / spec.package.wheel, spec.package.distribution, spec.package.version,
                        spec.package.data_dir, H.FAKE_FILES)
    yield spec, wheel
    W.unregister(spec.name)


def _one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


# ----------------------------------------------------------------------------------------------------------
# The registry entry


def test_registry_entry_carries_the_converters_constants():
    spec = W.get_spec(NAME)
    assert spec.kind == "generator" and spec.package is not None and spec.urls == ()
    pkg = spec.package
    assert dict(pkg.files) == conv.FILE_SHA256 and dict(pkg.sizes) == conv.FILE_SIZES
    assert (pkg.distribution, pkg.version, pkg.wheel, pkg.data_dir) == (
        conv.RANDOM_FACE_DISTRIBUTION, conv.RANDOM_FACE_VERSION, conv.RANDOM_FACE_WHEEL, conv.RANDOM_FACE_DATA_DIR)
    assert spec.license == conv.LICENSE and pkg.how_to_get == conv.HOW_TO_GET
    assert pkg.converter == "micromotion.models.mobilestylegan_convert:convert_files"


def test_weights_list_shows_the_licence(home):
    r = CliRunner().invoke(main, ["weights", "list"])
    assert r.exit_code == 0, r.output
    row = next(line for line in r.output.splitlines() if line.startswith(NAME))
    assert "Apache-2.0 package" in row and "NVIDIA Source Code License-NC" in row and "non-commercial" in row
    r = CliRunner().invoke(main, ["weights", "list", "--json"])
    entry = next(json.loads(line) for line in r.output.splitlines() if json.loads(line)["name"] == NAME)
    assert "NVIDIA Source Code License-NC, non-commercial" in entry["license"]


# ----------------------------------------------------------------------------------------------------------
# The installed distribution


def test_installed_random_face_is_found_without_importing_it():
    for mod in [m for m in sys.modules if m == "random_face" or m.startswith("random_face.")]:
        del sys.modules[mod]
    try:
        files = package.find_installed(W.get_spec(NAME).package)
    except WeightsError as e:
        pytest.skip(str(e))
    assert sorted(files) == sorted(conv.FILE_SHA256)
    assert all(p.is_file() and p.stat().st_size == conv.FILE_SIZES[n] for n, p in files.items())
    assert "random_face" not in sys.modules  # its __init__ imports openvino


def test_absent_and_offline_says_how_to_get_it(home, monkeypatch):
    hide_random_face(monkeypatch)
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    r = CliRunner().invoke(main, ["weights", "path", NAME])
    line = _one_line(r.output)
    assert r.exit_code == 1
    assert "random-face is not installed" in line and "MICROMOTION_OFFLINE" not in line  # `path` never downloads
    assert conv.HOW_TO_GET in line
    with pytest.raises(WeightsError, match=r"MICROMOTION_OFFLINE is set.*pip install --no-deps "
                                           r"random-face==2021.7.21.1.*weights download mobilestylegan-ffhq-1024"):
        W.resolve(NAME)
    assert not W.available(NAME) and cache_files(home) == []


# ----------------------------------------------------------------------------------------------------------
# Import of a wheel or a folder; refusals


def test_import_wheel_converts_once_and_loads(fake):
    from micromotion.generators import load_generator
    from micromotion.models.mobilestylegan import Generator

    spec, wheel = fake
    path = W.import_file(spec.name, wheel)
    assert path == W.cache_path(spec.name) and len(H.CONVERTED) == 1
    assert sorted(H.CONVERTED[0]) == sorted(H.FAKE_FILES)
    assert (package.source_dir(spec) / "Net.bin").read_bytes() == H.FAKE_FILES["Net.bin"]
    mtime = path.stat().st_mtime_ns
    for _ in range(2):  # later uses read the converted file: no second conversion
        G = load_generator(spec.name)
        assert isinstance(G, Generator) and G.registry_name == spec.name
    assert len(H.CONVERTED) == 1 and path.stat().st_mtime_ns == mtime
    assert torch.count_nonzero(G.w_avg) > 0  # the converted w_avg travels with the file
    assert W.available(spec.name)


def test_import_folder(fake, tmp_path):
    spec, _ = fake
    folder = tmp_path / "site" / spec.package.data_dir
    folder.mkdir(parents=True)
    for n, b in H.FAKE_FILES.items():
        (folder / n).write_bytes(b)
    r = CliRunner().invoke(main, ["weights", "import", spec.name, str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    assert "files sha256-verified, converted" in r.output and len(H.CONVERTED) == 1


def test_import_refuses_modified_files_naming_the_file(fake, tmp_path):
    spec, _ = fake
    bad = build_wheel(tmp_path / "bad.whl", spec.package.distribution, spec.package.version, spec.package.data_dir,
                      {**H.FAKE_FILES, "Net.bin": b"modified"})
    r = CliRunner().invoke(main, ["weights", "import", spec.name, str(bad)])
    line = _one_line(r.output)
    assert r.exit_code == 1
    assert "bad.whl (micromotion_fake_pkg/data/Net.bin): sha256" in line
    assert f"micromotion weights download {spec.name}" in line
    assert H.CONVERTED == [] and not package.source_dir(spec).exists() and not W.cache_path(spec.name).exists()


def test_real_entry_refuses_fake_ir_files(home, tmp_path):
    names = list(conv.FILE_SHA256)
    wheel = build_wheel(tmp_path / conv.RANDOM_FACE_WHEEL, "random-face", "2021.7.21.1", "random_face/data",
                        {n: b"<fake/>" for n in names})
    r = CliRunner().invoke(main, ["weights", "import", NAME, str(wheel)])
    line = _one_line(r.output)
    assert r.exit_code == 1
    assert f"(random_face/data/{names[0]}): sha256" in line and f"does not match {names[0]} of random-face" in line
    assert "micromotion weights download mobilestylegan-ffhq-1024" in line
    assert cache_files(home) == []


@pytest.mark.parametrize("make,msg", [
    (lambda d: build_wheel(d / "other-1.0-py3-none-any.whl", "other", "1.0", "random_face/data",
                           {n: b"x" for n in conv.FILE_SHA256}), "a wheel of other 1.0, not random-face"),
    (lambda d: build_wheel(d / "random_face-2021.7.21.1-py3-none-any.whl", "random-face", "2021.7.21.1",
                           "elsewhere", {"x": b"x"}), "random-face 2021.7.21.1 lacks random_face/data/MappingNetwork"),
    (lambda d: (d / "notes.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18) and d / "notes.zip",
     "not a wheel (no .dist-info/METADATA)"),
    (lambda d: (d / "model.bin").write_bytes(b"hello") and d / "model.bin", "neither a wheel nor a folder"),
    (lambda d: d, "a folder without MappingNetwork.xml"),
    (lambda d: d / "missing.whl", "no such file or folder"),
])
def test_import_of_something_else_is_one_line(home, tmp_path, make, msg):
    src = tmp_path / "src"
    src.mkdir()
    r = CliRunner().invoke(main, ["weights", "import", NAME, str(make(src))])
    assert r.exit_code == 1 and msg in _one_line(r.output)
    assert cache_files(home) == []


# ----------------------------------------------------------------------------------------------------------
# Download: pip fetches the exact wheel (faked here)


def test_download_runs_pip_for_the_exact_wheel(fake, monkeypatch):
    spec, wheel = fake
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(package.subprocess, "run", run)
    r = CliRunner().invoke(main, ["weights", "download", spec.name])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(W.cache_path(spec.name))
    (cmd,) = calls
    assert cmd[:5] == [sys.executable, "-m", "pip", "download", "--no-deps"] and cmd[-1] == "micromotion-fake-pkg==1.0"
    assert len(H.CONVERTED) == 1 and package.source_dir(spec).is_dir()
    # cached: no pip, no conversion; --force fetches and converts again
    assert CliRunner().invoke(main, ["weights", "download", spec.name]).exit_code == 0 and len(calls) == 1
    assert CliRunner().invoke(main, ["weights", "download", spec.name, "--force"]).exit_code == 0
    assert len(calls) == 2 and len(H.CONVERTED) == 2
    assert [p.name for p in W.weights_dir().iterdir() if p.name.startswith(".pip-")] == []  # temp folder gone
    # offline, nothing cached and nothing installed: one line, pip never runs
    W.remove(spec.name)
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    r = CliRunner().invoke(main, ["weights", "download", spec.name])
    assert r.exit_code == 1 and "pip install micromotion-fake-pkg" in _one_line(r.output) and len(calls) == 2


def test_download_with_the_real_pip_from_a_local_folder(fake, monkeypatch, tmp_path):
    """pip itself, pointed at a folder by its own environment variables (no network)."""
    spec, wheel = fake
    links = tmp_path / "links"
    links.mkdir()
    os.replace(wheel, links / wheel.name)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    assert W.download(spec.name) == W.cache_path(spec.name) and len(H.CONVERTED) == 1
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match=r"pip could not fetch micromotion-fake-pkg==1.0 \(ERROR: .*weights import"):
        W.download(spec.name, force=True)
    assert W.cache_path(spec.name).is_file()  # --force failing keeps the good file


def test_pip_fetching_another_wheel_is_refused(fake, monkeypatch, tmp_path):
    spec, _ = fake
    other = build_wheel(tmp_path / "other-1.0-py3-none-any.whl", "other", "1.0", spec.package.data_dir, H.FAKE_FILES)

    def run(cmd, **kw):
        dest = Path(cmd[cmd.index("--dest") + 1])
        (dest / other.name).write_bytes(other.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(package.subprocess, "run", run)
    with pytest.raises(WeightsError, match="a wheel of other 1.0, not micromotion-fake-pkg"):
        W.download(spec.name)
    assert H.CONVERTED == [] and not W.cache_path(spec.name).exists()


# ----------------------------------------------------------------------------------------------------------
# The converted file in the cache


def test_damaged_converted_file_is_rebuilt_or_named(fake, monkeypatch):
    spec, wheel = fake
    path = W.import_file(spec.name, wheel)
    with open(path, "r+b") as f:  # flip bytes inside the tensor data
        f.seek(path.stat().st_size - 8)
        f.write(b"\xff" * 8)
    assert W.resolve(spec.name) == path and len(H.CONVERTED) == 2  # rebuilt from the kept files
    assert W.resolve(spec.name) == path and len(H.CONVERTED) == 2
    path.write_bytes(b"truncated")
    for p in package.source_dir(spec).iterdir():
        p.unlink()  # and nothing to rebuild from
    hide_random_face(monkeypatch)
    with pytest.raises(WeightsError, match=r"fake-package-model.safetensors is damaged \(sha256 .* and "
                                           r"micromotion-fake-pkg is not installed .*pip install micromotion-fake-pkg"):
        W.resolve(spec.name, download=False)
    assert path.read_bytes() == b"truncated"  # never replaced by a half-written file


def test_failed_conversion_leaves_no_file(fake, monkeypatch):
    spec, wheel = fake

    def broken(files, out):
        Path(out).write_bytes(b"half")
        raise ValueError("the key map met another network")

    monkeypatch.setattr(H, "fake_convert", broken)
    with pytest.raises(WeightsError, match="cannot convert 'fake-package-model' from .*another network"):
        W.import_file(spec.name, wheel)
    leftovers = [p.name for p in W.weights_dir().iterdir() if p.suffix == ".safetensors"]
    assert leftovers == []


def test_remove_deletes_the_converted_file_and_the_kept_files(fake):
    spec, wheel = fake
    W.import_file(spec.name, wheel)
    assert W.remove(spec.name) and not package.source_dir(spec).exists() and not W.cache_path(spec.name).exists()
    assert not W.remove(spec.name)


# ----------------------------------------------------------------------------------------------------------
# The real files (random-face is installed by `make test`)


@pytest.fixture(scope="module")
def real_files():
    try:
        return package.find_installed(W.get_spec(NAME).package)
    except WeightsError as e:
        pytest.skip(str(e))


def test_real_wheel_import_converts_to_the_mobilestylegan_generator(real_files, tmp_path, monkeypatch):
    from micromotion.generators import load_generator
    from micromotion.io.files import fingerprint
    from micromotion.models.mobilestylegan import Generator

    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path / "home"))
    hide_random_face(monkeypatch)  # the wheel is the only source
    wheel = build_wheel(tmp_path / conv.RANDOM_FACE_WHEEL, "random-face", "2021.7.21.1", "random_face/data",
                        dict(real_files))
    r = CliRunner().invoke(main, ["weights", "import", NAME, str(wheel)])
    assert r.exit_code == 0, r.output
    path = W.cache_path(NAME)
    G = load_generator(NAME)
    assert isinstance(G, Generator) and (G.resolution, G.num_ws, G.w_dim) == (1024, 23, 512)
    assert G.registry_name == NAME and "float64" in G.w_avg_source
    G2 = load_generator(path)  # the converted file by its path
    assert G2.registry_name == NAME and torch.equal(G2.w_avg, G.w_avg)
    # the same bytes from a second conversion: the fingerprint shipped motion files carry is reproducible
    again = conv.convert_files(dict(real_files), tmp_path / "again.safetensors")
    # (bytes differ: safetensors writes the metadata in hash order)
    from safetensors.torch import load_file

    A, B = load_file(str(again)), load_file(str(path))
    assert sorted(A) == sorted(B) and all(torch.equal(A[k], B[k]) for k in A)
    assert fingerprint(load_generator(again)) == fingerprint(G)


def test_staging_left_by_a_crash_is_cleaned(fake):
    spec, wheel = fake
    wdir = W.weights_dir()
    wdir.mkdir(parents=True)
    stale = [wdir / ".pip-dead", wdir / f".{package.source_dir(spec).name}-dead"]
    for d in stale:
        d.mkdir()
        (d / "x").write_bytes(b"x")
    (wdir / f".123-456-{spec.filename}").write_bytes(b"half")
    W.import_file(spec.name, wheel)
    assert not any(d.exists() for d in stale[1:]) and not (wdir / f".123-456-{spec.filename}").exists()
