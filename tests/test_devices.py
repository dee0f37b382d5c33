"""`micromotion.devices.resolve_device`: one resolver, the same values and messages in every shell."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from micromotion import devices
from micromotion.cli import main
from micromotion.devices import resolve_device
from micromotion.errors import InputError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if devices._mps_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name", ["gpus", "cuda:x", "cuda:-1", "tpu", "", "cpu:0"])
def test_unknown_names_list_the_choices(name):
    with pytest.raises(InputError, match=r"unknown device .*; choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


def test_unavailable_devices_say_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(InputError, match="no CUDA device is available.*use --device cpu"):
            resolve_device(name)
    with pytest.raises(InputError, match="no Apple GPU.*use --device cpu"):
        resolve_device("mps")


def test_cuda_index_must_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"cuda:2: this machine has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("args", [
    ["world", "render", "-o", "{tmp}/faces"],
    ["world", "clip", "--motion", "smile", "-o", "{tmp}/c.mp4"],
    ["world", "measure", "{tmp}"],
    ["extract", "--text", "a person with {{degree}} smile", "--model", "world", "-o", "{tmp}/a.safetensors"],
    ["evaluate", "smile", "--model", "world"],
    ["invert", "{tmp}/face.png", "--model", "world", "-o", "{tmp}/w.safetensors"],
    ["animate", "{tmp}/face.png", "-m", "smile", "-o", "{tmp}/o.mp4"],
])
def test_every_shell_refuses_a_bad_device_in_one_line(args, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "face.png")
    argv = [a.format(tmp=tmp_path) for a in args] + ["--device", "gpu"]
    r = CliRunner().invoke(main, argv)
    assert r.exit_code == 1, r.output
    assert "unknown device 'gpu'; choose auto, cpu, cuda, cuda:N or mps" in r.output
    assert len(r.output.strip().splitlines()) == 1
