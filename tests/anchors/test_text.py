"""Text anchors: template safety, the schedule and loss formulas of the original, all degrees in one batch equal
to one degree at a time, determinism, the loss going down, the cache, the Anchors file, and `micromotion extract`.
Tiny generator, tiny CLIP (open_clip's when installed, else our pure-PyTorch NativeClip of the same layout) and
tiny ArcFace with random weights, offline, on the CPU."""
from __future__ import annotations

import math

import pytest
import torch

from click.testing import CliRunner  # noqa: E402

from micromotion.anchors import Anchors  # noqa: E402
from micromotion.anchors.text import (DEFAULT_DEGREES, TextAnchorSettings, clip_loss, get_lr,  # noqa: E402
                                      optimize_latents, reinvert_anchors, render_template, start_latent,
                                      text_anchors, validate_template)
from micromotion.checkpoint import save_generator  # noqa: E402
from micromotion.errors import InputError  # noqa: E402
from micromotion.models.arcface import ArcFace, ArcFaceConfig  # noqa: E402
from micromotion.models.clip import Clip, ClipConfig  # noqa: E402
from micromotion.models.stylegan2 import Generator, GeneratorConfig  # noqa: E402

TEMPLATE = "a person with {degree} smile"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # the machine is small and shared: more threads than cores makes these small ops far slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
        G.compute_w_avg(500)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def clip() -> Clip:
    c = Clip.from_config(ClipConfig.tiny(), seed=0)  # open_clip's CLIP when installed, else our NativeClip
    with torch.no_grad():
        c.model.logit_scale.fill_(math.log(100.0))  # OpenAI's value, so "logits" loss = 1 - cos
    return c


@pytest.fixture(scope="module")
def arcface() -> ArcFace:
    torch.manual_seed(1)
    return ArcFace(ArcFaceConfig.tiny()).requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------
# Templates


@pytest.mark.parametrize("bad,why", [
    ("a person with {degree.__class__} smile", "degree.__class__"),
    ("a person with {degree[0]} smile", r"degree\[0\]"),
    ("a person with {0} smile", r"\{0\} is not allowed"),
    ("a person with {} smile", r"\{\} is not allowed"),
    ("a person with {degree!r} smile", r"\{degree!r\} is not allowed"),
    ("a person with {degree:>10} smile", r"\{degree:>10\} is not allowed"),
    ("a person with {other} smile", r"\{other\} is not allowed"),
    ("{degree} and {__import__}", "__import__"),
    ("a person with {degree smile", "unbalanced|expected"),
    ("a person with degree} smile", "Single '}'"),
    ("a person smiling", "no {degree} placeholder"),
    ("a person with {{degree}} smile", "no {degree} placeholder"),
    ("   ", "empty"),
])
def test_unsafe_or_broken_templates_are_refused(bad, why):
    with pytest.raises(InputError, match=why):
        validate_template(bad)


def test_template_rendering():
    assert render_template(TEMPLATE, "30%") == "a person with 30% smile"
    assert render_template("{degree} {degree}!", "no") == "no no!"
    # {{ and }} are literal braces, as in str.format; degrees are inserted verbatim, never interpreted
    assert render_template("{{x}} {degree} }}", "{0.__class__}") == "{x} {0.__class__} }"
    assert [render_template(TEMPLATE, d) for d in DEFAULT_DEGREES][:2] == ["a person with no smile",
                                                                          "a person with 10% smile"]


# ----------------------------------------------------------------------------------------------------------
# The original's formulas


def test_lr_schedule_is_styleclips():
    lrs = [get_lr(i / 40, 0.1) for i in range(40)]
    assert lrs[0] == 0.0  # the original's first step does not move (t = 0)
    assert lrs[1] == pytest.approx(0.1 * 0.5)  # ramp-up: t / 0.05 with t = 1/40
    assert lrs[2:30] == [pytest.approx(0.1)] * 28
    assert lrs[35] == pytest.approx(0.1 * (0.5 - 0.5 * math.cos((1 - 35 / 40) / 0.25 * math.pi)))
    assert lrs[-1] == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.1 * math.pi)))  # never quite 0


def test_clip_loss_formulas():
    img = torch.nn.functional.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    cos = (img * txt).sum(-1)
    # the original: 1 - model(image, text)[0] / 100 with logits = logit_scale * cos
    assert torch.allclose(clip_loss(img, txt, torch.tensor(100.0)), 1 - cos)
    assert torch.allclose(clip_loss(img, txt, torch.tensor(14.0)), 1 - 0.14 * cos)
    assert torch.allclose(clip_loss(img, txt, torch.tensor(14.0), "cosine"), 1 - cos)


def test_start_latent_is_the_originals_z(G):
    torch.manual_seed(5)
    z = torch.randn(1, G.z_dim)  # what the original draws after torch.manual_seed(seed)
    expected = G.mapping(z, truncation_psi=0.7)[0]
    assert torch.equal(start_latent(G, 5), expected)
    assert start_latent(G, 5).shape == (G.num_ws, G.w_dim)
    assert not torch.equal(start_latent(G, 6), expected)


# ----------------------------------------------------------------------------------------------------------
# The optimization


def test_batch_equals_one_degree_at_a_time(G, clip, arcface):
    """All degrees in one batch follow exactly the trajectories they follow alone (summed losses, per-element
    Adam, nothing coupling samples), with the paper's settings including the identity term."""
    texts = [render_template(TEMPLATE, d) for d in ("no", "50%", "100%")]
    w0 = start_latent(G, 3)
    s = TextAnchorSettings(steps=12)
    wb, lb = optimize_latents(G, clip, texts, w0, s, arcface, progress=False)
    ws, ls = optimize_latents(G, clip, texts, w0, s, arcface, batch_size=1, progress=False)
    assert wb.shape == (3, G.num_ws, G.w_dim) and lb.shape == (12, 3)
    moved = (wb - w0).abs().amax(dim=(1, 2))
    assert (moved > 1e-2).all()  # the samples did move...
    assert (wb - ws).abs().max() <= 1e-5  # ...and along the same paths as one at a time
    assert torch.allclose(lb, ls, atol=1e-5)
    w2, _ = optimize_latents(G, clip, texts, w0, s, arcface, batch_size=2, progress=False)
    assert (wb - w2).abs().max() <= 1e-5
    # one optimizer, the networks run on 2 + 1 samples, gradients accumulated: the same again
    wm, lm = optimize_latents(G, clip, texts, w0, s, arcface, micro_batch=2, progress=False)
    assert (wb - wm).abs().max() <= 1e-5 and torch.allclose(lb, lm, atol=1e-5)


def test_samples_do_not_interact(G, clip, arcface):
    """The loss of sample 0 has no gradient on any other sample (a BatchNorm in train mode, or a mean over the
    batch inside a network, would give one)."""
    from micromotion.anchors.text import clip_loss as closs

    arcface.train()  # must stay frozen
    w = start_latent(G, 4).expand(3, -1, -1).clone() + 0.01 * torch.randn(3, G.num_ws, G.w_dim)
    w.requires_grad_(True)
    img = G.synthesis(w)
    tf = clip.encode_text(["a", "b", "c"])
    per = closs(clip.encode_image(img), tf, clip.logit_scale) + 0.5 * (1 - arcface.embed(img)[:, 0])
    per[0].backward()
    assert w.grad[0].abs().sum() > 0
    assert torch.equal(w.grad[1:], torch.zeros_like(w.grad[1:]))


def test_loss_decreases(G, clip, arcface):
    texts = [render_template(TEMPLATE, d) for d in ("no", "50%", "100%")]
    w0 = start_latent(G, 7)
    _, losses = optimize_latents(G, clip, texts, w0, TextAnchorSettings(steps=25), arcface, progress=False)
    assert (losses[-1] < losses[0] - 5e-3).all(), losses[[0, -1]]
    assert (losses[-5:].mean(0) < losses[:5].mean(0)).all()


def test_image_term_keeps_the_start_image(G, clip):
    # the identity term in image space: the stronger it is, the less the optimized images move from the start's
    texts = [render_template(TEMPLATE, d) for d in ("no", "100%")]
    w0 = start_latent(G, 4)
    with torch.no_grad():
        img0 = G.synthesis(w0[None], noise_mode="const")
    moved = []
    for lam in (0.0, 1000.0):
        ws, losses = optimize_latents(G, clip, texts, w0, TextAnchorSettings(steps=15, id_lambda=0.0, image_lambda=lam),
                                      progress=False)
        with torch.no_grad():
            moved.append(float((G.synthesis(ws, noise_mode="const") - img0).square().mean()))
        assert torch.isfinite(losses).all()
    assert moved[1] < 0.5 * moved[0], moved


def test_paper_preprocessing_path_runs_and_differs(G, clip):
    texts = ["a person with 80% smile"]
    w0 = start_latent(G, 2)
    a, la = optimize_latents(G, clip, texts, w0, TextAnchorSettings(steps=6, id_lambda=0.0), progress=False)
    b, lb = optimize_latents(G, clip, texts, w0, TextAnchorSettings.paper(steps=6, id_lambda=0.0), progress=False)
    assert torch.isfinite(b).all() and not torch.allclose(a, b)
    assert not torch.allclose(la[0], lb[0])  # a different CLIP input from the very first step


def test_settings_presets_and_validation():
    assert TextAnchorSettings().to_dict() == {
        "steps": 40, "lr": 0.1, "lr_rampup": 0.05, "lr_rampdown": 0.25, "l2_lambda": 0.008, "id_lambda": 0.005,
        "truncation": 0.7, "clip_preprocess": "correct", "clip_loss": "logits", "noise_mode": "const",
        "precision": "auto"}
    assert TextAnchorSettings.paper().clip_preprocess == "paper"
    sc = TextAnchorSettings.styleclip()
    assert (sc.steps, sc.id_lambda, sc.l2_lambda, sc.lr) == (300, 0.0, 0.008, 0.1)
    assert TextAnchorSettings(image_lambda=3.0).to_dict()["image_lambda"] == 3.0  # in the cache key when on
    for bad in ({"steps": 0}, {"lr": -1.0}, {"clip_preprocess": "nope"}, {"clip_loss": "mse"}, {"image_lambda": -1.0},
                {"image_lambda": float("nan")},
                {"noise_mode": "random"}, {"precision": "fp8"}):
        with pytest.raises(InputError):
            TextAnchorSettings(**bad)


# ----------------------------------------------------------------------------------------------------------
# text_anchors: Anchors, determinism, the cache


def test_text_anchors_shapes_labels_and_file(G, clip, arcface, tmp_path):
    degrees = ["no", "50%", "100%"]
    a = text_anchors(G, clip, TEMPLATE, degrees=degrees, seed=3, arcface=arcface,
                     settings=TextAnchorSettings(steps=4), progress=False, generator_name="tiny")
    assert isinstance(a, Anchors) and len(a) == 4
    assert a.latents.shape == (4, G.num_ws, G.w_dim) and a.latents.dtype == torch.float32
    assert a.labels == ["start", "no", "50%", "100%"]
    assert torch.equal(a.latents[0], start_latent(G, 3))
    src = a.source
    assert src["kind"] == "text" and src["template"] == TEMPLATE and src["seed"] == 3
    assert src["texts"] == ["a person with no smile", "a person with 50% smile", "a person with 100% smile"]
    assert src["identity_loss"] is True and src["generator"] == "tiny" and src["generator_hash"].startswith("sha256:")
    path = a.save(tmp_path / "smile.safetensors")
    back = Anchors.load(path)
    assert torch.equal(back.latents, a.latents) and back.labels == a.labels and back.source == a.source
    # the decomposition's reader takes the same file
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(path))["anchors"], a.latents)
    png = a.save_preview(G, tmp_path / "smile.png", size=32)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 4 * 32 and im.mode == "RGB"


def test_reinvert_anchors(G, clip, monkeypatch):
    a = text_anchors(G, clip, TEMPLATE, degrees=("no", "50%", "100%"), seed=2, arcface=None,
                     settings=TextAnchorSettings(steps=3), cache=False, progress=False)
    r = reinvert_anchors(G, a, "projector", steps=3, seed=0)
    assert r.labels == ["no", "50%", "100%"] and r.latents.shape == (3, G.num_ws, G.w_dim)
    assert r.source["reinverted"] == {"method": "projector", "drop_start": True, "options": {"steps": 3, "seed": 0}}
    assert r.source["template"] == TEMPLATE  # what the anchors were made from is kept
    assert "cache_key" not in r.source and "loss_last" not in r.source  # those were the optimized latents'
    assert not torch.allclose(r.latents, a.latents[1:])  # new latents: the images' inversions
    # the method gets each anchor's image (start left out), in order, in batches; its codes come back in order
    from micromotion.invert import METHODS, Projection

    seen = []

    def fake(G_, images, progress=True, **kw):
        seen.append(images)
        return Projection(ws=images.mean((1, 2, 3))[:, None, None].expand(-1, G.num_ws, G.w_dim), noise=None,
                          distance=torch.zeros(images.shape[0]), loss="mse")

    monkeypatch.setitem(METHODS, "fake", fake)
    f = reinvert_anchors(G, a, "fake", batch_size=2)
    with torch.no_grad():
        want = G.synthesis(a.latents[1:], noise_mode="const").clamp(-1, 1)
    assert [x.shape[0] for x in seen] == [2, 1] and torch.allclose(torch.cat(seen), want, atol=1e-5)
    assert torch.allclose(f.latents[:, 0, 0], want.mean((1, 2, 3)), atol=1e-5)
    keep = reinvert_anchors(G, a, "fake", drop_start=False)
    assert keep.labels[0] == "start" and len(keep) == 4
    with pytest.raises(InputError, match="unknown inversion method"):
        reinvert_anchors(G, a, "magic")
    with pytest.raises(InputError, match="batch_size"):
        reinvert_anchors(G, a, "fake", batch_size=0)
    two = Anchors(a.latents[:2], a.labels[:2], a.source)
    with pytest.raises(InputError, match="fewer than 2"):
        reinvert_anchors(G, two, "projector", steps=1)


def test_determinism_per_seed(G, clip):
    s = TextAnchorSettings(steps=3, id_lambda=0.0)
    kw = dict(degrees=["no", "100%"], settings=s, arcface=None, cache=False, progress=False)
    a = text_anchors(G, clip, TEMPLATE, seed=11, **kw)
    b = text_anchors(G, clip, TEMPLATE, seed=11, **kw)
    c = text_anchors(G, clip, TEMPLATE, seed=12, **kw)
    assert torch.equal(a.latents, b.latents)
    assert not torch.allclose(a.latents[0], c.latents[0])


def test_start_from_an_inverted_latent(G, clip):
    w = start_latent(G, 21) + 0.05
    a = text_anchors(G, clip, TEMPLATE, degrees=["no", "100%"], start=w[None], arcface=None,
                     settings=TextAnchorSettings(steps=2), cache=False, progress=False)
    assert torch.equal(a.latents[0], w)
    assert a.source["start"]["kind"] == "latent" and a.source["seed"] is None
    with pytest.raises(InputError, match=rf"start latent must have shape \[{G.num_ws}, {G.w_dim}\]"):
        text_anchors(G, clip, TEMPLATE, start=torch.zeros(3, 16), arcface=None, cache=False, progress=False)


def test_cache_hit_is_instant_and_identical(G, clip, tmp_path, caplog, monkeypatch):
    import micromotion.anchors.text as text_module

    kw = dict(degrees=["no", "50%", "100%"], seed=5, arcface=None, settings=TextAnchorSettings(steps=8),
              cache_dir=tmp_path / "cache", progress=False)
    a = text_anchors(G, clip, TEMPLATE, **kw)
    files = list((tmp_path / "cache").glob("text-*.safetensors"))
    assert len(files) == 1

    def no_optimization(*args, **kwargs):  # a cache hit must not optimize anything (instant, not timed)
        raise AssertionError("cache hit ran the optimization")

    with monkeypatch.context() as m:
        m.setattr(text_module, "optimize_latents", no_optimization)
        b = text_anchors(G, clip, TEMPLATE, **kw)
    assert torch.equal(a.latents, b.latents) and a.labels == b.labels
    # anything that changes the result changes the key
    c = text_anchors(G, clip, "a person with {degree} frown", **kw)
    assert len(list((tmp_path / "cache").glob("text-*.safetensors"))) == 2
    assert not torch.equal(c.latents, a.latents)
    # a corrupt cache file is ignored (with a warning) and rewritten
    files[0].write_bytes(b"garbage")
    with caplog.at_level("WARNING"):
        d = text_anchors(G, clip, TEMPLATE, **kw)
    assert "ignoring unreadable cache file" in caplog.text
    assert torch.equal(d.latents, a.latents)
    assert Anchors.load(files[0]).source["cache_key"] == a.source["cache_key"]


def test_identity_term_is_optional_when_weights_are_absent(G, clip, caplog):
    import micromotion.anchors.text as text

    text._WARNED_NO_ARCFACE = False
    with caplog.at_level("WARNING"):
        a = text_anchors(G, clip, TEMPLATE, degrees=["no"], arcface="auto", settings=TextAnchorSettings(steps=2),
                         cache=False, progress=False)
        text_anchors(G, clip, TEMPLATE, degrees=["10%"], arcface="auto", settings=TextAnchorSettings(steps=2),
                     cache=False, progress=False)
    assert a.source["identity_loss"] is False
    assert caplog.text.count("identity loss off") == 1  # warned once


def test_bad_inputs(G, clip):
    with pytest.raises(InputError, match="more than once"):
        text_anchors(G, clip, TEMPLATE, degrees=["no", "no"], cache=False, progress=False)
    with pytest.raises(InputError, match="at least one degree"):
        text_anchors(G, clip, TEMPLATE, degrees=[], cache=False, progress=False)
    with pytest.raises(InputError, match="not allowed"):
        text_anchors(G, clip, "{degree.__class__}", cache=False, progress=False)


# ----------------------------------------------------------------------------------------------------------
# The command line


@pytest.fixture(scope="module")
def model_files(G, clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    save_generator(G, d / "tiny-g.safetensors")
    clip.save(d / "tiny-clip.safetensors")
    return d


def _run(args):
    from micromotion.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_extract_text_writes_anchors_and_preview(model_files, tmp_path):
    out = tmp_path / "smile.safetensors"
    args = ["extract", "--text", TEMPLATE, "--seed", "2", "--degrees", "no,50%,100%", "--model",
            str(model_files / "tiny-g.safetensors"), "--clip", str(model_files / "tiny-clip.safetensors"),
            "--arcface", "none", "--steps", "3", "--device", "cpu", "--micro-batch", "2", "-o", str(out)]
    r = _run(args)
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and out.is_file() and out.with_suffix(".png").is_file()
    a = Anchors.load(out)
    assert a.labels == ["start", "no", "50%", "100%"] and a.source["seed"] == 2
    r = _run(args)
    assert r.exit_code == 1 and "already exists" in r.output
    r = _run(args + ["--overwrite"])  # from the cache
    assert r.exit_code == 0
    assert torch.equal(Anchors.load(out).latents, a.latents)
    # re-inverted with a method: the start is left out and the source says how
    r = _run(args + ["--overwrite", "--reinvert", "projector"])
    assert r.exit_code == 0, r.output
    b = Anchors.load(out)
    assert b.labels == ["no", "50%", "100%"] and b.source["reinverted"]["method"] == "projector"
    r = _run(args + ["--overwrite", "--reinvert", "magic"])
    assert r.exit_code == 2 and "unknown inversion method 'magic'" in r.output
    # refused before any optimization, in one line: no encoder for this model; one degree left without the start
    r = _run(args + ["--overwrite", "--reinvert", "encoder"])
    assert r.exit_code == 2 and "no encoder was trained" in r.output and "--reinvert none" in r.output
    one = [a if a != "no,50%,100%" else "100%" for a in args]
    r = _run(one + ["--overwrite", "--reinvert", "projector"])
    assert r.exit_code == 2 and "at least 2" in r.output
    assert Anchors.load(out).source["reinverted"]["method"] == "projector"  # the earlier file is untouched


@pytest.mark.parametrize("template,msg", [
    ("a person with {degree.__class__} smile", "is not allowed"),
    ("a person with {0} smile", "is not allowed"),
    ("a person smiling", "no {degree} placeholder"),
])
def test_cli_bad_template_is_one_line_error(model_files, tmp_path, template, msg):
    out = tmp_path / "x.safetensors"
    r = _run(["extract", "--text", template, "--model", str(model_files / "tiny-g.safetensors"),
              "--clip", str(model_files / "tiny-clip.safetensors"), "-o", str(out)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and msg in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_missing_clip_weights_is_one_line_error(model_files, tmp_path):
    out = tmp_path / "x.safetensors"
    r = _run(["extract", "--text", TEMPLATE, "--model", str(model_files / "tiny-g.safetensors"), "--device", "cpu",
              "-o", str(out)])  # --clip clip-vit-b-32, not cached, offline
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "clip-vit-b-32" in lines[0]
    assert not list(tmp_path.iterdir())


def test_cli_needs_one_source(tmp_path):
    r = _run(["extract", "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "give one anchor source: --text" in r.output
    r = _run(["extract", "--text", TEMPLATE, "-o", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and ".safetensors" in r.output
