"""micromotion.invert.encoders: the method registry and the one "auto" choice every caller goes through."""
import pytest
import torch
from PIL import Image

import micromotion.anchors.video as video
from micromotion.errors import InputError
from micromotion.invert import METHODS, Projection, auto_method, invert, inversion, resolve_method, tensor_to_image

from invert_helpers import _tiny, _w_plus_targets, one_thread  # noqa: F401  (one_thread: autouse)


def _fake_encoder(served):
    """A method that serves exactly the generator `served` and returns its mean w for every image."""
    calls = []

    def run(G, targets, *, progress=True, **options):
        calls.append(options)
        n = targets.shape[0]
        ws = G.w_avg.view(1, 1, -1).expand(n, G.num_ws, -1).clone()
        return Projection(ws=ws, noise=None, distance=torch.zeros(n), loss="fake")

    run.supports = lambda G: G is served
    run.calls = calls
    return run


def test_auto_is_the_projector_without_an_encoder_for_the_generator():
    G = _tiny(32)
    assert resolve_method(G, "auto") == auto_method(G) == "projector"
    assert resolve_method(G, "projector") == "projector"
    assert resolve_method(G, "restyle-e4e") == "restyle-e4e"  # named methods are not second-guessed


def test_auto_picks_an_encoder_that_serves_the_generator(monkeypatch):
    G, other = _tiny(32), _tiny(32, seed=1)
    fake = _fake_encoder(G)
    monkeypatch.setitem(METHODS, "fake", fake)
    assert resolve_method(G, "auto") == auto_method(G) == "fake"
    assert resolve_method(other, "auto") == "projector"


def test_unknown_method_names_the_choices():
    G = _tiny(32)
    with pytest.raises(InputError, match="unknown inversion method 'restyle'; choose one of: auto, projector, "
                                         "restyle-psp, restyle-e4e, encoder"):
        resolve_method(G, "restyle")
    with pytest.raises(InputError, match="unknown inversion method 'nope'; choose one of: auto, projector"):
        video.invert_frames(G, torch.zeros(2, 3, 32, 32), method="nope")


def test_invert_and_video_frames_share_the_auto_choice(monkeypatch, tmp_path):
    """`invert` and `anchors.video.invert_frames` both resolve "auto" by `resolve_method`: one function."""
    assert inversion.resolve_method is resolve_method and video.resolve_method is resolve_method
    G = _tiny(32)
    fake = _fake_encoder(G)
    monkeypatch.setitem(METHODS, "fake", fake)
    _, targets = _w_plus_targets(G, 2)
    crop = tmp_path / "crop.png"
    tensor_to_image(targets[0]).save(crop)
    # options of the projector are dropped for an encoder chosen by "auto", kept for one named
    inv = invert(G, crop, method="auto", align=False, steps=5, loss="pixel", model="m", progress=False)
    assert inv.method == "fake" and fake.calls[-1] == {"model": "m"}
    ws, details = video.invert_frames(G, targets, method="auto", progress=False)
    assert details["method"] == "fake" and ws.shape == (2, G.num_ws, G.w_dim)
    # "auto" for a generator no encoder serves: the projector, whose encoder options are dropped
    H = _tiny(32, seed=2)
    inv = invert(H, Image.new("RGB", (32, 32)), method="auto", align=False, steps=1, loss="pixel",
                 n_iters=3, progress=False)
    assert inv.method == "projector" and inv.details["steps"] == 1
