"""micromotion.weights: registry, download (resume, verify, lock), import, resolve. All on 127.0.0.1.

`LocalServer` is a threaded http.server with Range/If-Range support that can cut a connection mid-body,
serve HTML, ignore Range, or be slowed down; it is reused by test_weights_cli.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from micromotion import weights as W
from micromotion.errors import WeightsError
from micromotion.weights import WeightSpec
from weights_helpers import (LocalServer, Route, _clean_env, cache_files, lpips_bytes, payload,  # noqa: F401
                             registry, server, sha, spec_for)




# ----------------------------------------------------------------------------------------------------------
# Download


def test_download_verifies_and_caches(server, registry, tmp_path):
    data = payload(300_000)
    registry(spec_for("t-basic", server.add("/basic.bin", data), data))
    path = W.download("t-basic", tmp_path)
    assert path == tmp_path / "weights" / "t-basic.bin"
    assert path.read_bytes() == data
    assert cache_files(tmp_path) == ["t-basic.bin"]  # no .part or temp files left
    assert len(server.gets("/basic.bin")) == 1
    # cache hits (download and resolve) make no request
    assert W.download("t-basic", tmp_path) == path
    assert W.resolve("t-basic", tmp_path) == path
    assert len(server.gets("/basic.bin")) == 1
    st = {s.spec.name: s for s in W.list_weights(tmp_path)}["t-basic"]
    assert st.cached and st.verified and st.check == "sha256" and st.sha256 == sha(data)


def test_resolve_downloads_when_missing(server, registry, tmp_path, monkeypatch):
    data = payload(10_000)
    registry(spec_for("t-resolve", server.add("/r.bin", data), data))
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))  # cache dir from the environment
    path = W.resolve("t-resolve")
    assert path == tmp_path / "weights" / "t-resolve.bin" and path.read_bytes() == data


def test_resume_after_connection_cut(server, registry, tmp_path):
    data = payload(400_000, seed=1)
    registry(spec_for("t-cut", server.add("/cut.bin", data, cuts=[150_000, 100_000]), data))
    path = W.download("t-cut", tmp_path)
    assert path.read_bytes() == data
    reqs = server.gets("/cut.bin")
    assert [r["range"] for r in reqs] == [None, "bytes=150000-", "bytes=250000-"]
    assert all(r["if_range"] for r in reqs[1:])  # resumes are guarded against a changed file
    assert cache_files(tmp_path) == ["t-cut.bin"]


def test_partial_from_earlier_run_is_resumed(server, registry, tmp_path):
    data = payload(200_000, seed=2)
    registry(spec_for("t-part", server.add("/part.bin", data), data))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "t-part.bin.part").write_bytes(data[:120_000])
    (tmp_path / "weights" / ".4242-77-t-part.bin").write_bytes(b"staged by a process that crashed")
    assert W.download("t-part", tmp_path).read_bytes() == data
    assert [r["range"] for r in server.gets("/part.bin")] == ["bytes=120000-"]
    assert cache_files(tmp_path) == ["t-part.bin"]


def test_server_ignoring_range_restarts_cleanly(server, registry, tmp_path):
    data = payload(200_000, seed=3)
    registry(spec_for("t-norange", server.add("/norange.bin", data, ignore_range=True), data))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "t-norange.bin.part").write_bytes(b"\0" * 50_000)  # would corrupt if appended to
    assert W.download("t-norange", tmp_path).read_bytes() == data
    assert [r["range"] for r in server.gets("/norange.bin")] == ["bytes=50000-"]


def test_file_changed_between_attempts_restarts(server, registry, tmp_path):
    old, new = payload(200_000, seed=4), payload(200_000, seed=5)
    # the connection is cut while the server has the old file; then the new file is published
    url = server.add("/changing.bin", old, cuts=[80_000], then=Route(new))
    registry(spec_for("t-change", url, new))
    assert W.download("t-change", tmp_path).read_bytes() == new
    reqs = server.gets("/changing.bin")
    assert len(reqs) == 2 and reqs[1]["range"] == "bytes=80000-"
    assert reqs[1]["if_range"] == '"%s"' % hashlib.md5(old).hexdigest()  # so the server sent the new file whole


def test_complete_partial_is_not_downloaded_again(server, registry, tmp_path):
    data = payload(50_000, seed=6)
    registry(spec_for("t-full", server.add("/full.bin", data), data))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "t-full.bin.part").write_bytes(data)  # a crash after the last byte
    assert W.download("t-full", tmp_path).read_bytes() == data
    assert [r["range"] for r in server.gets("/full.bin")] == ["bytes=50000-"]  # answered 416, nothing sent


def test_checksum_mismatch_leaves_nothing_in_cache(server, registry, tmp_path):
    data = payload(100_000, seed=7)
    registry(spec_for("t-bad", server.add("/bad.bin", data), payload(100_000, seed=8)))
    with pytest.raises(WeightsError) as e:
        W.download("t-bad", tmp_path)
    msg = str(e.value)
    assert "sha256 mismatch" in msg and "partial file was removed" in msg and "\n" not in msg
    assert "micromotion weights import t-bad FILE" in msg
    assert cache_files(tmp_path) == []
    with pytest.raises(WeightsError):
        W.resolve("t-bad", tmp_path, download=False)


def test_stale_partial_that_fails_verification_is_downloaded_again(server, registry, tmp_path):
    data = payload(100_000, seed=9)
    registry(spec_for("t-stale", server.add("/stale.bin", data), data))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "t-stale.bin.part").write_bytes(b"x" * 30_000)  # from some other file
    assert W.download("t-stale", tmp_path).read_bytes() == data
    assert [r["range"] for r in server.gets("/stale.bin")] == ["bytes=30000-", None]


def test_concurrent_downloads_give_one_good_file(server, registry, tmp_path):
    data = payload(256 * 1024, seed=10)
    registry(spec_for("t-conc", server.add("/conc.bin", data, delay=0.01), data))
    results, errors = [], []
    start = threading.Barrier(3)

    def run():
        start.wait()
        try:
            results.append(W.download("t-conc", tmp_path, progress=False))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 3 and len(set(results)) == 1
    assert results[0].read_bytes() == data
    assert len(server.gets("/conc.bin")) == 1  # the others waited on the lock, then found the verified file
    assert cache_files(tmp_path) == ["t-conc.bin"]


def test_second_url_used_when_first_fails(server, registry, tmp_path):
    data = payload(20_000, seed=11)
    server.routes["/gone.bin"] = Route(b"", status=404)
    registry(spec_for("t-mirror", [server.url("/gone.bin"), server.add("/mirror.bin", data)], data))
    assert W.download("t-mirror", tmp_path).read_bytes() == data


def test_html_content_type_refused(server, registry, tmp_path):
    page = b"Google Drive can't scan this file for viruses."  # no markup: only the header says HTML
    registry(spec_for("t-html", server.add("/page", page, content_type="text/html; charset=utf-8"),
                      payload(10)))
    with pytest.raises(WeightsError, match="web page"):
        W.download("t-html", tmp_path)
    assert cache_files(tmp_path) == []


def test_html_body_refused_even_with_binary_content_type(server, registry, tmp_path):
    page = b"\n  <!DOCTYPE html><html><head><title>Sign in</title></head></html>"
    registry(spec_for("t-html2", server.add("/page2", page), payload(10)))
    with pytest.raises(WeightsError, match="web page"):
        W.download("t-html2", tmp_path)
    assert cache_files(tmp_path) == []
    registry(spec_for("t-html3", server.url("/page2")))  # without a checksum: nothing is trusted either
    with pytest.raises(WeightsError, match="web page"):
        W.download("t-html3", tmp_path)
    assert cache_files(tmp_path) == [] and W.expected_sha256("t-html3", tmp_path) is None


def test_offline_mode_names_file_and_import_command(server, registry, tmp_path, monkeypatch):
    data = payload(1000)
    registry(spec_for("t-off", server.add("/off.bin", data), data))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    for call in (lambda: W.resolve("t-off", tmp_path), lambda: W.download("t-off", tmp_path)):
        with pytest.raises(WeightsError) as e:
            call()
        msg = str(e.value)
        assert "MICROMOTION_OFFLINE" in msg and str(tmp_path / "weights" / "t-off.bin") in msg
        assert "micromotion weights import t-off FILE" in msg and "\n" not in msg
    assert server.requests == []


def test_no_network_names_file_and_import_command(registry, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    registry(spec_for("t-nonet", f"http://127.0.0.1:{port}/x.bin", payload(10)))
    t0 = time.monotonic()
    with pytest.raises(WeightsError) as e:
        W.resolve("t-nonet", tmp_path)
    assert time.monotonic() - t0 < 5  # refused connections fail fast
    msg = str(e.value)
    assert "cannot download 't-nonet'" in msg and "cannot reach" in msg
    assert str(tmp_path / "weights" / "t-nonet.bin") in msg and "micromotion weights import t-nonet FILE" in msg


# ----------------------------------------------------------------------------------------------------------
# Verification of cached files, TOFU


def test_corrupted_cached_file_is_detected_and_repaired(server, registry, tmp_path):
    data = payload(100_000, seed=12)
    registry(spec_for("t-rot", server.add("/rot.bin", data), data))
    path = W.download("t-rot", tmp_path)
    st = path.stat()
    with open(path, "r+b") as f:  # flip one byte, then put the old mtime back
        f.seek(5000)
        f.write(bytes([data[5000] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(WeightsError, match="does not match its sha256"):
        W.resolve("t-rot", tmp_path, download=False)
    assert W.resolve("t-rot", tmp_path).read_bytes() == data  # downloads a good copy
    assert len(server.gets("/rot.bin")) == 2


def test_forced_download_keeps_good_copy_until_replaced(server, registry, tmp_path):
    data = payload(20_000, seed=15)
    registry(spec_for("t-force", server.add("/force.bin", data), data))
    path = W.download("t-force", tmp_path)
    server.routes["/force.bin"] = Route(payload(20_000, seed=16))  # upstream now serves something else
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        W.download("t-force", tmp_path, force=True)
    assert path.read_bytes() == data and W.resolve("t-force", tmp_path, download=False) == path
    server.routes["/force.bin"] = Route(data)
    assert W.download("t-force", tmp_path, force=True) == path
    assert len(server.gets("/force.bin")) == 3


def test_tofu_recorded_on_first_download_then_enforced(server, registry, tmp_path):
    first, other = lpips_bytes(tmp_path, 0), lpips_bytes(tmp_path, 1)
    url = server.add("/lpips.pth", first)
    registry(spec_for("t-tofu", url, kind="lpips", format="torch"))
    assert W.expected_sha256("t-tofu", tmp_path) is None
    assert {s.spec.name: s for s in W.list_weights(tmp_path)}["t-tofu"].check == "TOFU (not yet recorded)"
    W.download("t-tofu", tmp_path)
    rec = json.loads((tmp_path / "weights" / "sha256.json").read_text())["t-tofu"]
    assert rec["sha256"] == sha(first) and rec["origin"] == url
    assert {s.spec.name: s for s in W.list_weights(tmp_path)}["t-tofu"].check == "TOFU"
    # upstream silently changes: the recorded checksum catches it
    W.remove("t-tofu", tmp_path)
    server.routes["/lpips.pth"] = Route(other)
    with pytest.raises(WeightsError, match="recorded on first use"):
        W.download("t-tofu", tmp_path)
    assert cache_files(tmp_path) == []
    W.remove("t-tofu", tmp_path, forget=True)
    assert W.download("t-tofu", tmp_path).read_bytes() == other


def test_tofu_download_with_wrong_structure_refused(server, registry, tmp_path):
    registry(spec_for("t-tofu-bad", server.add("/junk.pth", payload(5000)), kind="lpips", format="torch"))
    with pytest.raises(WeightsError, match="not a valid 't-tofu-bad' file"):
        W.download("t-tofu-bad", tmp_path)
    assert cache_files(tmp_path) == [] and W.expected_sha256("t-tofu-bad", tmp_path) is None


def test_sha256_prefix_checked_for_tofu(server, registry, tmp_path):
    data = lpips_bytes(tmp_path)
    registry(spec_for("t-prefix", server.add("/p.pth", data), kind="lpips", format="torch",
                      sha256_prefix="0" * 8 if not sha(data).startswith("0" * 8) else "f" * 8))
    with pytest.raises(WeightsError, match="published prefix"):
        W.download("t-prefix", tmp_path)


def test_file_placed_by_hand_is_checked_and_recorded(registry, tmp_path):
    registry(spec_for("t-hand", "http://127.0.0.1:9/never", kind="lpips", format="torch"))
    target = W.cache_path("t-hand", tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(payload(3000))
    with pytest.raises(WeightsError, match="not a valid 't-hand' file"):
        W.resolve("t-hand", tmp_path, download=False)
    target.write_bytes(lpips_bytes(tmp_path))
    assert W.resolve("t-hand", tmp_path, download=False) == target
    assert W.expected_sha256("t-hand", tmp_path) == sha(target.read_bytes())


# ----------------------------------------------------------------------------------------------------------
# Import


def test_import_with_known_checksum(registry, tmp_path):
    data = payload(30_000, seed=13)
    registry(spec_for("t-imp", "http://127.0.0.1:9/never", data))
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(payload(30_000, seed=14))
    with pytest.raises(WeightsError, match="refused as 't-imp'.*does not match"):
        W.import_file("t-imp", wrong, tmp_path / "c")
    assert cache_files(tmp_path / "c") == []
    good = tmp_path / "good.bin"
    good.write_bytes(data)
    path = W.import_file("t-imp", good, tmp_path / "c")
    assert path.read_bytes() == data and W.resolve("t-imp", tmp_path / "c", download=False) == path
    assert good.exists()  # copied, not moved


def test_import_tofu_generator_checks_architecture(registry, tmp_path):
    from micromotion import Generator, GeneratorConfig, save_generator

    torch.manual_seed(0)
    gfile = save_generator(Generator(GeneratorConfig.tiny(resolution=32)), tmp_path / "g.safetensors")
    registry(WeightSpec(name="t-gen", purpose="tiny generator", filename="g.safetensors", kind="generator",
                        format="safetensors", license="MIT", urls=("http://127.0.0.1:9/never",),
                        expect={"resolution": 32}))
    registry(WeightSpec(name="t-gen-1024", purpose="needs 1024", filename="g1024.safetensors", kind="generator",
                        format="safetensors", license="MIT", urls=("http://127.0.0.1:9/never",),
                        expect={"resolution": 1024}))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}        ")
    with pytest.raises(WeightsError, match="refused as 't-gen'"):
        W.import_file("t-gen", junk, tmp_path)
    with pytest.raises(WeightsError, match="32x32, expected 1024x1024"):
        W.import_file("t-gen-1024", gfile, tmp_path)
    path = W.import_file("t-gen", gfile, tmp_path)
    assert W.expected_sha256("t-gen", tmp_path) == sha(gfile.read_bytes())
    assert cache_files(tmp_path) == ["g.safetensors"] and path.name == "g.safetensors"


def _save(tmp_path: Path, name: str, obj) -> Path:
    p = tmp_path / name
    torch.save(obj, p)
    return p


def test_import_refuses_wrong_files_for_builtin_entries(tmp_path):
    cache = tmp_path / "cache"
    html = tmp_path / "download.html"
    html.write_text("<!doctype html><html><title>Google Drive - Virus scan warning</title></html>")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    lpips = tmp_path / "lpips.pth"
    lpips.write_bytes(lpips_bytes(tmp_path))
    e4e_like = {"state_dict": {"encoder.body.0.weight": torch.zeros(2), "decoder.style.1.weight": torch.zeros(2)},
                "opts": {"encoder_type": "Encoder4Editing"}, "latent_avg": torch.zeros(18, 512)}
    cases = [
        ("clip-vit-b-32", html, "does not match"),  # published sha256
        ("stylegan2-ffhq-1024", html, "web page"),
        ("arcface-ir-se50", empty, "empty"),
        ("restyle-psp-ffhq", lpips, "no 'state_dict'"),
        ("restyle-psp-ffhq", _save(tmp_path, "e4e.pt", e4e_like), "encoder_type is 'Encoder4Editing'"),
        ("arcface-ir-se50", lpips, "no tensor 'input_layer.0.weight'"),
        ("stylegan2-ffhq-1024", lpips, "refused as 'stylegan2-ffhq-1024'"),
        ("lpips-vgg", lpips, "does not match the published"),
        ("vgg16-imagenet", lpips, "refused"),
    ]
    for name, f, why in cases:
        with pytest.raises(WeightsError, match=re.escape(why)) as e:
            W.import_file(name, f, cache)
        assert str(f) in str(e.value) and "\n" not in str(e.value)
    assert cache_files(cache) == []
    assert all(W.expected_sha256(n, cache) in (None, W.get_spec(n).sha256) for n, _, _ in cases)


def test_import_accepts_plausible_encoder_and_arcface(tmp_path):
    cache = tmp_path / "cache"
    e4e = _save(tmp_path, "e4e_ffhq_encode.pt", {
        "state_dict": {"encoder.body.0.weight": torch.zeros(2), "decoder.style.1.weight": torch.zeros(2)},
        "opts": {"encoder_type": "Encoder4Editing", "output_size": 1024}, "latent_avg": torch.zeros(18, 512)})
    assert W.import_file("e4e-ffhq", e4e, cache).name == "e4e_ffhq_encode.pt"
    sd = {"input_layer.0.weight": torch.zeros(64, 3, 3, 3),
          "output_layer.3.weight": torch.zeros(1).expand(512, 512 * 7 * 7)}  # stride 0: tiny on disk
    sd.update({f"body.{i}.res_layer.0.weight": torch.zeros(1) for i in range(24)})
    af = _save(tmp_path, "model_ir_se50.pth", sd)
    assert W.import_file("arcface-ir-se50", af, cache).name == "model_ir_se50.pth"
    sd.pop("body.23.res_layer.0.weight")
    with pytest.raises(WeightsError, match="23 units, IR-SE50 has 24"):
        W.import_file("arcface-ir-se50", _save(tmp_path, "ir34.pth", sd), tmp_path / "other")
    # recorded: a different file for the same entry is now refused
    with pytest.raises(WeightsError, match="recorded on first use"):
        W.import_file("e4e-ffhq", af, cache)


def _torchscript_like(path: Path, code: bool = True) -> Path:
    """The layout of a TorchScript archive (as OpenAI's ViT-B-32.pt), built without torch.jit."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("ViT-B-32/data.pkl", b"\x80\x02}q\x00." + b"\x00" * 64)
        z.writestr("ViT-B-32/constants.pkl", b"\x80\x02).")
        if code:
            z.writestr("ViT-B-32/code/__torch__/model.py", b"class CLIP(Module):\n  pass\n" * 4)
        z.writestr("ViT-B-32/version", b"3\n")
    return path


def test_import_tofu_torchscript_checks_archive(registry, tmp_path):
    registry(WeightSpec(name="t-clip", purpose="clip", filename="t-clip.pt", kind="clip", format="torchscript",
                        license="MIT", urls=("http://127.0.0.1:9/never",)))
    state_dict = _save(tmp_path, "sd.pt", {"visual.proj": torch.zeros(2)})
    with pytest.raises(WeightsError, match="not a CLIP TorchScript model"):
        W.import_file("t-clip", state_dict, tmp_path / "c")
    with pytest.raises(WeightsError, match="not a TorchScript archive"):
        W.import_file("t-clip", lpips_legacy(tmp_path), tmp_path / "c")  # a legacy (non-zip) torch file
    broken = _torchscript_like(tmp_path / "broken.pt")
    raw = bytearray(broken.read_bytes())
    raw[raw.index(b"class CLIP")] ^= 0x20  # one flipped bit inside a stored member
    broken.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="bad CRC"):
        W.import_file("t-clip", broken, tmp_path / "c")
    assert cache_files(tmp_path / "c") == []
    good = _torchscript_like(tmp_path / "ViT-B-32.pt")
    assert W.import_file("t-clip", good, tmp_path / "c").read_bytes() == good.read_bytes()


def lpips_legacy(tmp_path: Path) -> Path:
    p = tmp_path / "legacy.pt"
    torch.save({"a": torch.zeros(1)}, p, _use_new_zipfile_serialization=False)
    return p


def test_import_errors(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        W.import_file("lpips-vgg", tmp_path / "missing.pth", tmp_path)
    with pytest.raises(WeightsError, match="ships with micromotion"):
        W.import_file("world", __file__, tmp_path)
    with pytest.raises(WeightsError, match="unknown model 'nope'; choose one of: .*lpips-vgg"):
        W.import_file("nope", __file__, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# Registry, paths, manual entries


def test_builtin_registry():
    expected = {"stylegan2-ffhq-1024", "clip-vit-b-32", "restyle-psp-ffhq", "restyle-e4e-ffhq", "e4e-ffhq",
                "arcface-ir-se50", "lpips-vgg", "world"}
    assert expected <= set(W.names())
    clip = W.get_spec("clip-vit-b-32")
    assert clip.sha256 in clip.urls[0]  # OpenAI puts the sha256 in the URL
    for n in ("restyle-psp-ffhq", "restyle-e4e-ffhq", "e4e-ffhq", "arcface-ir-se50"):
        s = W.get_spec(n)
        assert s.manual and not s.urls and s.manual_url.startswith("https://drive.google.com/")
    for s in W.REGISTRY.values():
        assert s.license and s.purpose and (s.sha256 is None or len(s.sha256) == 64)


def test_manual_entry_message(tmp_path):
    with pytest.raises(WeightsError) as e:
        W.resolve("e4e-ffhq", tmp_path)
    msg = str(e.value)
    assert "https://drive.google.com/file/d/1cUv_reLE6k3604or78EranS7XzuVMWeO" in msg
    assert "micromotion weights import e4e-ffhq FILE" in msg
    assert str(tmp_path / "weights" / "e4e_ffhq_encode.pt") in msg


def test_bundled_entry_missing(registry, tmp_path):
    registry(WeightSpec(name="t-bundled", purpose="x", filename="t-not-shipped.safetensors", kind="bundled",
                        format="safetensors", license="MIT"))
    with pytest.raises(WeightsError, match="ships with micromotion but .*t-not-shipped.safetensors is missing"):
        W.resolve("t-bundled", tmp_path)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert W.weights_dir() == tmp_path / "home" / ".cache" / "micromotion" / "weights"
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path / "env"))
    assert W.weights_dir() == tmp_path / "env" / "weights"
    assert W.weights_dir(tmp_path / "arg") == tmp_path / "arg" / "weights"
    assert W.cache_path("lpips-vgg", tmp_path / "arg") == tmp_path / "arg" / "weights" / "lpips-v0.1-vgg.pth"


def test_register_validates_specs(registry):
    ok = dict(name="t-x", purpose="p", filename="x.bin", kind="file", format="any", license="MIT",
              urls=("http://127.0.0.1/x",))
    for bad, msg in [(dict(name="Bad Name"), "lowercase"), (dict(kind="weird"), "unknown kind"),
                     (dict(urls=("ftp://x/y",)), "http"), (dict(urls="http://a/b"), "not a string"),
                     (dict(urls=()), "at least one URL"), (dict(sha256="abc"), "64 hex"),
                     (dict(filename="../x"), "plain file name"), (dict(manual=True), "manual_url")]:
        with pytest.raises(ValueError, match=msg):
            WeightSpec(**{**ok, **bad})
    registry(WeightSpec(**ok))
    with pytest.raises(WeightsError, match="already registered"):
        W.register(WeightSpec(**ok))
    W.register(WeightSpec(**{**ok, "purpose": "replaced"}), replace=True)
    assert W.get_spec("t-x").purpose == "replaced"


def test_resolve_model_accepts_path_or_name(server, registry, tmp_path):
    f = tmp_path / "my.pt"
    f.write_bytes(b"x")
    assert W.resolve_model(f) == f and W.resolve_model(str(f)) == f
    data = payload(100)
    registry(spec_for("t-model", server.add("/m.bin", data), data))
    assert W.resolve_model("t-model", cache_dir=tmp_path).read_bytes() == data
    with pytest.raises(WeightsError, match="'t-model' is a file model, a encoder is needed"):
        W.resolve_model("t-model", kind="encoder", cache_dir=tmp_path)
    with pytest.raises(WeightsError, match="no such file .*missing.pt"):
        W.resolve_model(tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="unknown model 'psp'; give an existing file or one of: "
                                           "restyle-psp-ffhq, restyle-e4e-ffhq, e4e-ffhq, world-encoder, "
                                           "mobilestylegan-ffhq-1024-encoder$"):
        W.resolve_model("psp", kind="encoder")


def test_remove(server, registry, tmp_path):
    data = payload(1000)
    registry(spec_for("t-rm", server.add("/rm.bin", data), data))
    path = W.download("t-rm", tmp_path)
    assert W.remove("t-rm", tmp_path) is True and not path.exists()
    assert W.remove("t-rm", tmp_path) is False
    with pytest.raises(WeightsError, match="not cached"):
        W.resolve("t-rm", tmp_path, download=False)
