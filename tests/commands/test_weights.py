"""`micromotion weights ...` as a user runs it: exit codes, messages, files. Downloads go to 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from micromotion.cli import main
from weights_helpers import (LocalServer, _clean_env, lpips_bytes, payload, registry, server, sha,  # noqa: F401
                             spec_for)




def run(*args, env=None):
    return CliRunner().invoke(main, ["weights", *map(str, args)], env=env, catch_exceptions=False)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in result.output
    return err


def test_list_shows_every_model(tmp_path):
    r = run("list", "--cache-dir", tmp_path)
    assert r.exit_code == 0, r.output
    header = r.stdout.splitlines()[0].split()
    assert header == ["NAME", "PURPOSE", "SIZE", "LICENSE", "CHECK", "CACHED", "PATH"]
    for name in ("stylegan2-ffhq-1024", "clip-vit-b-32", "restyle-psp-ffhq", "restyle-e4e-ffhq", "e4e-ffhq",
                 "arcface-ir-se50", "lpips-vgg", "world"):
        assert any(line.startswith(name + " ") for line in r.stdout.splitlines()), name
    sg2 = next(line for line in r.stdout.splitlines() if line.startswith("stylegan2-ffhq-1024 "))
    assert "TOFU (not yet recorded)" in sg2 and "NVIDIA" in sg2 and " no " in sg2
    assert str(tmp_path / "weights" / "stylegan2-ffhq-1024x1024.pkl") in sg2
    assert "micromotion weights import e4e-ffhq e4e_ffhq_encode.pt" in r.stdout
    assert "https://drive.google.com/file/d/1cUv_reLE6k3604or78EranS7XzuVMWeO" in r.stdout


def test_list_json_reports_cached_state(server, registry, tmp_path):
    data = payload(5000)
    registry(spec_for("t-cli-list", server.add("/l.bin", data), data))
    assert run("download", "t-cli-list", "--cache-dir", tmp_path).exit_code == 0
    r = run("list", "--json", "--cache-dir", tmp_path)
    rows = {d["name"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert rows["t-cli-list"]["cached"] and rows["t-cli-list"]["verified"]
    assert rows["t-cli-list"]["sha256"] == sha(data) and rows["t-cli-list"]["check"] == "sha256"
    assert not rows["clip-vit-b-32"]["cached"]


def test_download_path_remove(server, registry, tmp_path):
    data = payload(70_000)
    registry(spec_for("t-cli", server.add("/c.bin", data, cuts=[30_000]), data))
    expected = tmp_path / "weights" / "t-cli.bin"
    err = one_line_error(run("path", "t-cli", "--cache-dir", tmp_path))
    assert "not cached" in err and str(expected) in err and "micromotion weights download t-cli" in err
    r = run("path", "t-cli", "--expected", "--cache-dir", tmp_path)
    assert r.exit_code == 0 and r.stdout.strip() == str(expected)

    r = run("download", "t-cli", "--cache-dir", tmp_path)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(expected) and expected.read_bytes() == data

    r = run("path", "t-cli", "--cache-dir", tmp_path)
    assert r.exit_code == 0 and r.stdout.strip() == str(expected)
    r = run("remove", "t-cli", "--cache-dir", tmp_path)
    assert r.exit_code == 0 and not expected.exists()


def test_download_uses_micromotion_home(server, registry, tmp_path):
    data = payload(1000)
    registry(spec_for("t-cli-home", server.add("/h.bin", data), data))
    r = run("download", "t-cli-home", env={"MICROMOTION_HOME": str(tmp_path / "home")})
    assert r.exit_code == 0, r.output
    assert (tmp_path / "home" / "weights" / "t-cli-home.bin").read_bytes() == data


def test_download_errors_are_one_line(server, registry, tmp_path):
    err = one_line_error(run("download", "nope", "--cache-dir", tmp_path))
    assert "unknown model 'nope'" in err and "stylegan2-ffhq-1024" in err

    err = one_line_error(run("download", "restyle-e4e-ffhq", "--cache-dir", tmp_path))
    assert "https://drive.google.com/file/d/1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e" in err
    assert "micromotion weights import restyle-e4e-ffhq FILE" in err

    registry(spec_for("t-cli-bad", server.add("/bad.bin", payload(2000, seed=1)), payload(2000, seed=2)))
    err = one_line_error(run("download", "t-cli-bad", "--cache-dir", tmp_path))
    assert "sha256 mismatch" in err and "partial file was removed" in err
    assert not (tmp_path / "weights" / "t-cli-bad.bin").exists()
    assert not (tmp_path / "weights" / "t-cli-bad.bin.part").exists()

    registry(spec_for("t-cli-html", server.add("/login", b"<html>sign in</html>", content_type="text/html")))
    err = one_line_error(run("download", "t-cli-html", "--cache-dir", tmp_path))
    assert "web page" in err and "micromotion weights import t-cli-html FILE" in err


def test_offline(server, registry, tmp_path):
    data = payload(1000)
    registry(spec_for("t-cli-off", server.add("/o.bin", data), data))
    err = one_line_error(run("download", "t-cli-off", "--cache-dir", tmp_path, env={"MICROMOTION_OFFLINE": "1"}))
    assert "MICROMOTION_OFFLINE" in err and str(tmp_path / "weights" / "t-cli-off.bin") in err
    assert "micromotion weights import t-cli-off FILE" in err
    assert server.requests == []


def test_import(registry, tmp_path):
    good, bad = lpips_bytes(tmp_path, 0), payload(3000)
    registry(spec_for("t-cli-imp", "http://127.0.0.1:9/never", kind="lpips", format="torch"))
    (tmp_path / "bad.pth").write_bytes(bad)
    (tmp_path / "good.pth").write_bytes(good)
    err = one_line_error(run("import", "t-cli-imp", tmp_path / "bad.pth", "--cache-dir", tmp_path / "c"))
    assert "refused as 't-cli-imp'" in err and str(tmp_path / "bad.pth") in err

    r = run("import", "t-cli-imp", tmp_path / "good.pth", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 0, r.output
    assert "trust on first use" in r.stdout
    assert (tmp_path / "c" / "weights" / "t-cli-imp.bin").read_bytes() == good
    r = run("import", "t-cli-imp", tmp_path / "good.pth", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 0 and "sha256 verified" in r.stdout

    err = one_line_error(run("import", "lpips-vgg", tmp_path / "good.pth", "--cache-dir", tmp_path / "c"))
    assert "does not match the published" in err
    err = one_line_error(run("import", "lpips-vgg", tmp_path / "missing.pth", "--cache-dir", tmp_path / "c"))
    assert "no such file" in err


def test_subprocess_offline_error_has_no_traceback(tmp_path):
    env = {**os.environ, "MICROMOTION_OFFLINE": "1", "MICROMOTION_HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "micromotion.cli", "weights", "download", "clip-vit-b-32"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("Error: ") and "Traceback" not in p.stderr
    assert str(tmp_path / "weights" / "ViT-B-32.pt") in p.stderr
    assert "micromotion weights import clip-vit-b-32 FILE" in p.stderr
