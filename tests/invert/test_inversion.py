"""micromotion.invert.inversion: inverting a photo or an aligned crop, and the `invert` command."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from micromotion.checkpoint import save_generator
from micromotion.cli import main
from micromotion.errors import InputError
from micromotion.invert import Inversion, invert, load_latent
from micromotion.models.stylegan2 import Generator, GeneratorConfig

from invert_helpers import _tiny, one_thread  # noqa: F401  (one_thread: autouse)


# ----------------------------------------------------------------------------------------------------------
# Inversion of a photo


@pytest.fixture(scope="module")
def astronaut_path(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    pytest.importorskip("dlib")
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def test_invert_a_photo(astronaut_path):
    torch.set_num_threads(1)
    G = _tiny(64)
    inv = invert(G, astronaut_path, steps=20, loss="pixel", progress=False)
    assert isinstance(inv, Inversion) and inv.method == "projector"
    assert inv.ws.shape == (1, G.num_ws, G.w_dim) and inv.reconstruction.shape == (1, 3, 64, 64)
    assert inv.image.size == (64, 64) and inv.aligned.detector == "hog"
    assert inv.details["space"] == "W+" and inv.details["loss"] == "pixel" and inv.details["steps"] == 20
    # The transform maps the render's outer corners onto the quad in the photo.
    corners = np.array([[-0.5, -0.5], [-0.5, 63.5], [63.5, 63.5], [63.5, -0.5]])
    h = corners @ inv.transform[:2, :2].T + inv.transform[:2, 2]
    np.testing.assert_allclose(h, inv.aligned.quad, atol=1e-9)
    pasted = inv.paste_back()
    assert pasted.size == (512, 512)
    assert inv.reconstruction_image().size == (64, 64)


def test_invert_aligned_crop_and_bad_method(tmp_path):
    G = _tiny(32)
    crop = tmp_path / "crop.png"
    Image.new("RGB", (48, 48), (90, 120, 150)).save(crop)
    inv = invert(G, crop, align=False, steps=3, loss="pixel", progress=False)
    assert inv.aligned is None and inv.transform is None and inv.image.size == (32, 32)
    with pytest.raises(InputError, match="no photo to paste into"):
        inv.paste_back()
    wide = tmp_path / "wide.png"
    Image.new("RGB", (64, 32)).save(wide)
    with pytest.raises(InputError, match=r"wide\.png: 64x32 is not square"):
        invert(G, wide, align=False, steps=1, progress=False)
    with pytest.raises(InputError, match="unknown inversion method 'restyle'; choose one of: auto, projector"):
        invert(G, crop, method="restyle", align=False)


# ----------------------------------------------------------------------------------------------------------
# The `invert` command


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(64))
    G.compute_w_avg()
    return save_generator(G, tmp_path_factory.mktemp("models") / "tiny64.safetensors")


def test_cli_invert_writes_latent_and_images(tmp_path, tiny_model, astronaut_path):
    out = tmp_path / "latent.safetensors"
    args = ["invert", str(astronaut_path), "--model", str(tiny_model), "-o", str(out), "--steps", "10",
            "--loss", "pixel", "--device", "cpu", "--reconstruction", str(tmp_path / "rec.png"),
            "--aligned", str(tmp_path / "aligned.png"), "--composite", str(tmp_path / "pasted.jpg")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    ws, meta = load_latent(out)
    assert ws.shape == (1, 10, 16) and meta["detector"] == "hog" and meta["model"] == str(tiny_model)
    assert np.array(json.loads(meta["transform"])).shape == (3, 3)
    assert Image.open(tmp_path / "rec.png").size == (64, 64)
    assert Image.open(tmp_path / "aligned.png").size == (64, 64)
    assert Image.open(tmp_path / "pasted.jpg").size == (512, 512)


def test_cli_invert_w_mode_pt_output(tmp_path, tiny_model, astronaut_path):
    out = tmp_path / "latent.pt"
    r = CliRunner().invoke(main, ["invert", str(astronaut_path), "--model", str(tiny_model), "-o", str(out),
                                  "--steps", "3", "--w", "--loss", "pixel", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    ws = torch.load(out, weights_only=True)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


def test_cli_invert_no_face_writes_nothing(tmp_path, tiny_model):
    pytest.importorskip("dlib")
    src, out = tmp_path / "wall.png", tmp_path / "latent.pt"
    Image.new("RGB", (64, 64), (40, 50, 60)).save(src)
    r = CliRunner().invoke(main, ["invert", str(src), "--model", str(tiny_model), "-o", str(out),
                                  "--reconstruction", str(tmp_path / "rec.png"), "--device", "cpu"])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "wall.png: no face found" in lines[0], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall.png"]


def test_cli_invert_bad_output_fails_before_work(tmp_path, tiny_model):
    src = tmp_path / "missing.png"  # never read: the output is checked first
    r = CliRunner().invoke(main, ["invert", str(src), "--model", str(tiny_model), "-o", str(tmp_path / "l.npy")])
    assert r.exit_code == 1 and "unknown latent file extension '.npy'" in r.output
    r = CliRunner().invoke(main, ["invert", str(src), "--model", str(tiny_model), "-o", str(tmp_path / "l.pt"),
                                  "--composite", str(tmp_path / "nowhere" / "c.png")])
    assert r.exit_code == 1 and "does not exist" in r.output
    assert list(tmp_path.iterdir()) == []
