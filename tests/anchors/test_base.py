"""micromotion.anchors.base: the Anchors set and its file format."""
import pytest
import torch

from micromotion.anchors import Anchors
from micromotion.errors import InputError


def test_anchors_file_errors(tmp_path):
    with pytest.raises(InputError, match="2 labels for 3 anchors"):
        Anchors(torch.zeros(3, 4, 8), ["a", "b"])
    with pytest.raises(InputError, match="NaN"):
        Anchors(torch.full((1, 4, 8), float("nan")), ["a"])
    with pytest.raises(InputError, match=r"\[K, num_ws, w_dim\]"):
        Anchors(torch.zeros(4, 8), ["a"] * 4)
    a = Anchors(torch.zeros(2, 4, 8), [0.0, 0.5], {"kind": "video"})
    with pytest.raises(InputError, match=".safetensors"):
        a.save(tmp_path / "x.pt")
    p = a.save(tmp_path / "x.safetensors")
    assert Anchors.load(p).labels == [0.0, 0.5]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temporary file
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(InputError, match="bad.safetensors: not a readable anchors file"):
        Anchors.load(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="no such anchors file"):
        Anchors.load(tmp_path / "missing.safetensors")


def test_load_refuses_another_format_or_version(tmp_path):
    from safetensors.torch import save_file

    for meta, message in (({"format": "other", "version": "1"}, "not a micromotion anchors"),
                          ({"format": "micromotion-anchors", "version": "99"}, "version 99 is newer"),
                          ({"format": "micromotion-anchors", "version": "0"}, "bad anchors format version 0")):
        save_file({"anchors": torch.zeros(2, 4, 8)}, str(tmp_path / "a.safetensors"),
                  metadata={**meta, "labels": "[0, 1]"})
        with pytest.raises(InputError, match=message):
            Anchors.load(tmp_path / "a.safetensors")
