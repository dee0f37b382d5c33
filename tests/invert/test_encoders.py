"""micromotion.invert.encoders: the method registry and the one "auto" choice every caller goes through."""
import pytest
import torch
from PIL import Image

import micromotion.anchors.video as video
from micromotion.errors import InputError
from micromotion.invert import (METHODS, Projection, auto_method, invert, inversion, resolve_method, synthesize,
                               tensor_to_image)

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


# ----------------------------------------------------------------------------------------------------------
# The "encoder" method: an encoder file paired with the generator it was trained for (fingerprint)


def _encoder_file(G, path):
    from micromotion.models.encoder import EncoderConfig, ReStyle, build_encoder, save_encoder

    torch.manual_seed(4)
    cfg = EncoderConfig(**{**EncoderConfig.tiny(n_styles=G.num_ws, w_dim=G.w_dim).to_dict(), "head_width": 8})
    return save_encoder(ReStyle(build_encoder(cfg), G, G.w_avg), path)


def test_encoder_method_with_a_file_made_for_the_generator(tmp_path):
    from micromotion.models.encoder import load_encoder

    G = _tiny(32)
    path = _encoder_file(G, tmp_path / "enc.safetensors")
    _, targets = _w_plus_targets(G, 2)
    p = METHODS["encoder"](G, targets, model=str(path), n_iters=2)
    ref = load_encoder(path, G).invert(targets, n_iters=2)
    assert p.loss == "mse" and p.noise is None
    assert torch.allclose(p.ws, ref.ws, atol=1e-6)
    assert torch.allclose(p.distance, (ref.images - targets).square().mean((1, 2, 3)), atol=1e-6)
    inv = invert(G, tensor_to_image(targets[0]), method="encoder", align=False, model=str(path), n_iters=2)
    assert inv.method == "encoder" and inv.ws.shape == (1, G.num_ws, G.w_dim)
    # the encoder's last render is the reconstruction (not rendered a second time), and it is G's render of ws
    assert torch.equal(p.images, ref.images)
    with torch.no_grad():
        assert torch.allclose(inv.reconstruction, synthesize(G, inv.ws), atol=1e-6)
    with pytest.raises(InputError, match="option 'steps' does not apply to the encoder method"):
        METHODS["encoder"](G, targets, model=str(path), steps=3)


def test_encoder_method_refuses_a_file_made_for_other_weights(tmp_path):
    from micromotion.models.encoder import generator_fingerprint

    G, other = _tiny(32), _tiny(32, seed=1)
    path = _encoder_file(G, tmp_path / "enc.safetensors")
    _, targets = _w_plus_targets(other, 1)
    with pytest.raises(InputError) as e:
        METHODS["encoder"](other, targets, model=str(path))
    msg = str(e.value)
    assert generator_fingerprint(G) in msg and generator_fingerprint(other) in msg and str(path) in msg
    assert generator_fingerprint(G) != generator_fingerprint(other)


def test_nothing_ships_for_a_tiny_generator():
    from micromotion.invert.encoders import encoder_for, shipped_encoders

    G = _tiny(32)
    assert {"world-encoder", "mobilestylegan-ffhq-1024-encoder"} <= set(shipped_encoders())
    assert encoder_for(G) is None and auto_method(G) == "projector"
    _, targets = _w_plus_targets(G, 1)
    with pytest.raises(InputError, match=r"no encoder ships for this 32x32 generator .*mobilestylegan-ffhq-1024-enc"):
        METHODS["encoder"](G, targets)


def test_the_real_face_model_gets_its_shipped_encoder():
    from micromotion import weights
    from micromotion.generators import load_generator
    from micromotion.invert.encoders import encoder_for

    if not (weights.available("mobilestylegan-ffhq-1024") and weights.available("mobilestylegan-ffhq-1024-encoder")):
        pytest.skip("mobilestylegan-ffhq-1024 or its encoder is not here")
    G = load_generator("mobilestylegan-ffhq-1024")  # loaded, never rendered: cheap
    assert encoder_for(G) == "mobilestylegan-ffhq-1024-encoder"
    assert auto_method(G) == "encoder"


def test_encoder_refinement_runs_under_no_grad_and_is_recorded(tmp_path):
    """refine_steps are projector steps: they optimize even when the caller disabled gradients, and the
    inversion's details say how many ran."""
    G = _tiny(32)
    path = _encoder_file(G, tmp_path / "enc.safetensors")
    _, targets = _w_plus_targets(G, 1)
    with torch.no_grad():
        plain = METHODS["encoder"](G, targets, model=str(path), n_iters=1)
        refined = METHODS["encoder"](G, targets, model=str(path), n_iters=1, refine_steps=3, progress=False)
        inv = invert(G, tensor_to_image(targets[0]), method="encoder", align=False, model=str(path), n_iters=1,
                     refine_steps=3, progress=False)
    assert not torch.equal(plain.ws, refined.ws)
    assert inv.details["refine_steps"] == 3
