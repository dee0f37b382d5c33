"""micromotion.io.pickle: foreign checkpoints are read without running their code."""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import pytest
import torch

from micromotion.errors import CheckpointError
from micromotion.io.pickle import PersistentObject, persistent_state_dict, read_torch_file, safe_unpickle


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def test_callable_in_pickle_is_refused_by_name(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"G_ema": _Evil()}))
    with pytest.raises(CheckpointError, match=r"refusing to load.*(posix|os)\.system"):
        safe_unpickle(p)


def test_tensors_and_containers_come_back(tmp_path):
    p = tmp_path / "ok.pkl"
    data = {"a": [1, 2.5, "x"], "t": torch.arange(3.0), "o": OrderedDict(k=set([1]))}
    p.write_bytes(pickle.dumps(data))
    got = safe_unpickle(p)
    assert got["a"] == [1, 2.5, "x"] and torch.equal(got["t"], torch.arange(3.0)) and got["o"]["k"] == {1}


def test_truncated_pickle_is_one_line(tmp_path):
    p = tmp_path / "cut.pkl"
    p.write_bytes(pickle.dumps({"t": list(range(100))})[:20])
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        safe_unpickle(p)


def test_persistent_state_dict_flattens_module_tree():
    leaf = PersistentObject({"class_name": "Leaf", "state": {"_parameters": {"w": torch.ones(2)}, "_buffers": {}}})
    root = PersistentObject({"class_name": "Root", "state": {"_parameters": {}, "_buffers": {"b": torch.zeros(1)},
                                                             "_modules": {"leaf": leaf}, "_init_kwargs": {"z": 1}}})
    sd = persistent_state_dict(root)
    assert sorted(sd) == ["b", "leaf.w"] and root.init_kwargs() == {"z": 1}


def test_torch_file_with_code_is_refused(tmp_path):
    p = tmp_path / "code.pt"
    torch.save({"x": _Evil()}, p)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_torch_file(p)
    torch.save({"x": torch.ones(1)}, tmp_path / "fine.pt")
    assert torch.equal(read_torch_file(tmp_path / "fine.pt")["x"], torch.ones(1))
