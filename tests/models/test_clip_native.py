"""NativeClip (pure-PyTorch OpenAI CLIP) and ClipTokenizer against open_clip, without open_clip.

The goldens in tests/golden/clip_native.safetensors were computed by open_clip 3.3.0 (`ViT-B-32-quickgelu`
and a tiny CLIP of the same layout, `quick_gelu=True`, CPU, fp32) on the weights of `deterministic_weights`
below and the inputs of `golden_images`, and by open_clip's `SimpleTokenizer` (with ftfy) on `GOLDEN_TEXTS`, in a
scratch folder outside this repository that imported this module. ViT-B/32 (seed 0): the first 16 feature
dims, norms and sums; tiny (seed 1): full features. Here the same weights are rebuilt by key name and loaded
into NativeClip.
"""
from __future__ import annotations

import math
import time
import zlib

import pytest
import torch

from micromotion.errors import CheckpointError
from micromotion.models.clip import Clip, load_native_clip
from micromotion.models.clip_native import NativeClip, NativeClipConfig
from micromotion.tokenizer import ClipTokenizer

GOLDEN = __import__("pathlib").Path(__file__).resolve().parents[1] / "golden" / "clip_native.safetensors"
FEATURE_TEXTS = ["a person with 50% smile", "no smile", "a photo of a cat, 100%!"]
GOLDEN_TEXTS = FEATURE_TEXTS + [
    "",
    "a photo of a smiling person " * 20,  # 121 tokens: truncated to 77 with the end token last
    "Café naïve façade, 東京 😀 ½ Ünïcödé",
    "Tom &amp; Jerry &lt;3 &amp;amp; &#39;quoted&#39;",  # unescaped twice: "&amp;amp;" -> "&"
    "  many\n\tspaces   AND CAPS  ",
    "it's we're they'll I'd don't 3.14 x_y_z #hashtag",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def deterministic_weights(spec: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Non-trivial values for every key of an OpenAI-layout CLIP, seeded by key name (crc32): LayerNorm
    weights around 1, small biases, projections scaled by fan-in, logit_scale log(100)."""
    out = {}
    for key, shape in spec.items():
        g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2 ** 63))
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        name = key.rsplit(".", 1)[-1]
        if key == "logit_scale":
            v = torch.full(shape, math.log(100.0))
        elif ".ln_" in key or key.startswith("ln_"):
            v = 1.0 + 0.1 * r if name == "weight" else 0.1 * r
        elif name.endswith("bias"):
            v = 0.05 * r
        elif key == "visual.conv1.weight":
            v = r / math.sqrt(shape[1] * shape[2] * shape[3])
        elif key in ("visual.proj", "text_projection"):
            v = r / math.sqrt(shape[0])
        elif key.endswith(("class_embedding", "token_embedding.weight")):
            v = 0.5 * r
        elif key.endswith("positional_embedding"):
            v = 0.2 * r
        else:  # [out, in] matrices: attention and MLP
            v = r / math.sqrt(shape[-1])
        out[key] = v.reshape(shape).contiguous()
    return out


def spec(cfg: NativeClipConfig) -> dict[str, tuple]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in NativeClip(cfg).state_dict().items()}


def golden_images(size: int, seed: int = 7) -> torch.Tensor:
    """Two preprocessed inputs [2, 3, size, size]: a smooth image and a noisy one."""
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 3, 5, 5, generator=g), size=(size, size),
                                             mode="bilinear", align_corners=False)
    return torch.cat([smooth * 1.5, torch.randn(1, 3, size, size, generator=g)])


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(GOLDEN))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ----------------------------------------------------------------------------------------------------------
# Tokenizer


def test_tokenizer_matches_open_clip_ids(golden):
    ids = ClipTokenizer(77)(GOLDEN_TEXTS)
    assert torch.equal(ids, golden["tokens77"])
    assert torch.equal(ClipTokenizer(16)(FEATURE_TEXTS), golden["tokens16"])


def test_tokenizer_special_cases():
    tok = ClipTokenizer()
    empty = tok([""])[0]
    assert empty[:2].tolist() == [49406, 49407] and not empty[2:].any()
    long = tok(["a photo of a smiling person " * 20])[0]
    assert long.shape == (77,) and long[0] == 49406 and long[-1] == 49407 and (long[1:-1] != 0).all()
    assert tok("tom &amp;amp; jerry").tolist() == tok("Tom & Jerry").tolist()  # html unescaped twice, lower-cased
    assert tok(["  a \n\t cat "]).tolist() == tok(["a cat"]).tolist()
    assert tok.decode(tok.encode("Café 😀 東京")) == "café 😀 東京 "
    assert tok.vocab_size == 49408 and (tok.sot_token_id, tok.eot_token_id) == (49406, 49407)
    with pytest.raises(ValueError, match="context_length"):
        ClipTokenizer(1)


def test_tokenizer_fallback_pattern_without_regex(monkeypatch, golden):
    """Without the `regex` package the `re` pattern splits the same way (here on the golden texts)."""
    import builtins

    real_import = builtins.__import__

    def no_regex(name, *args, **kwargs):
        if name == "regex":
            raise ImportError("no regex")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_regex)
    tok = ClipTokenizer(77)
    assert tok.pat.__class__.__module__ == "re"
    assert torch.equal(tok(GOLDEN_TEXTS), golden["tokens77"])


# ----------------------------------------------------------------------------------------------------------
# Model equivalence with open_clip


def test_tiny_features_match_open_clip(golden):
    cfg = NativeClipConfig.tiny()
    model = NativeClip.from_state_dict(deterministic_weights(spec(cfg), seed=1))
    assert model.config == cfg
    with torch.no_grad():
        img = model.encode_image(golden_images(32))
        txt = model.encode_text(golden["tokens16"])
    assert rel_err(img, golden["tiny.image"]) < 1e-4
    assert rel_err(txt, golden["tiny.text"]) < 1e-4
    for a, b in zip(img, golden["tiny.image"]):
        assert rel_err(a, b) < 1e-4
    for a, b in zip(txt, golden["tiny.text"]):
        assert rel_err(a, b) < 1e-4


def test_vit_b_32_features_match_open_clip(golden):
    t0 = time.perf_counter()
    cfg = NativeClipConfig.vit_b_32()
    model = NativeClip.from_state_dict(deterministic_weights(spec(cfg), seed=0))
    assert model.config == cfg
    with torch.no_grad():
        img = model.encode_image(golden_images(224))
        txt = model.encode_text(golden["tokens77"][:3])
    for ours, key in ((img, "vitb32.image"), (txt, "vitb32.text")):
        assert ours.shape[1] == 512
        assert torch.allclose(ours.norm(dim=1), golden[f"{key}.norm"], rtol=1e-4)
        assert rel_err(ours[:, :16], golden[f"{key}.head"]) < 1e-4
        assert torch.allclose(ours.sum(1), golden[f"{key}.sum"], rtol=1e-3, atol=1e-3 * float(golden[f"{key}.norm"].max()))
    assert time.perf_counter() - t0 < 20


# ----------------------------------------------------------------------------------------------------------
# Loading errors


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    return deterministic_weights(spec(NativeClipConfig.tiny()), seed=1)


def test_config_inferred_from_shapes(tiny_sd):
    assert NativeClipConfig.from_state_dict(tiny_sd) == NativeClipConfig.tiny()
    openai_extras = dict(tiny_sd, input_resolution=torch.tensor(32), context_length=torch.tensor(16),
                         vocab_size=torch.tensor(49408))
    openai_extras = {f"module.{k}": v.half() for k, v in openai_extras.items()}  # also: DataParallel prefix, fp16
    m = NativeClip.from_state_dict(openai_extras)
    assert m.visual.proj.dtype == torch.float32


@pytest.mark.parametrize("key", ["visual.transformer.resblocks.1.mlp.c_fc.bias", "ln_final.bias", "text_projection",
                                 "visual.conv1.weight"])
def test_missing_key_is_named(tiny_sd, key):
    sd = dict(tiny_sd)
    del sd[key]
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        NativeClip.from_state_dict(sd, path="x.pt")


@pytest.mark.parametrize("key", ["visual.ln_pre.weight", "transformer.resblocks.0.attn.in_proj_weight", "visual.proj"])
def test_wrong_shape_is_named(tiny_sd, key):
    sd = dict(tiny_sd)
    sd[key] = torch.zeros(*[s + 1 for s in sd[key].shape])
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.") + ".*shape"):
        NativeClip.from_state_dict(sd, path="x.pt")


def test_unexpected_key_is_named(tiny_sd):
    with pytest.raises(CheckpointError, match="visual.extra"):
        NativeClip.from_state_dict(dict(tiny_sd, **{"visual.extra": torch.zeros(1)}))


def test_bad_shapes_of_inputs(tiny_sd):
    m = NativeClip.from_state_dict(tiny_sd)
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        m.encode_image(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[N, 16\]"):
        m.encode_text(torch.zeros(1, 77, dtype=torch.long))


# ----------------------------------------------------------------------------------------------------------
# Through the adapter


def test_adapter_wraps_native_clip(tiny_sd, golden):
    model = NativeClip.from_state_dict(tiny_sd)
    clip = Clip.from_open_clip(model, ClipTokenizer(model.context_length))
    assert clip.image_size == 32
    assert torch.allclose(clip.logit_scale, torch.tensor(100.0), rtol=1e-5)
    images = torch.rand(2, 3, 48, 80, requires_grad=True) * 2 - 1
    f = clip.encode_image(images)
    assert f.shape == (2, 32) and torch.allclose(f.norm(dim=1), torch.ones(2), atol=1e-5)
    f.sum().backward()  # gradients reach the images
    t = clip.encode_text(FEATURE_TEXTS)
    assert t.shape == (3, 32)
    expected = torch.nn.functional.normalize(golden["tiny.text"], dim=-1)
    assert torch.allclose(t, expected, atol=1e-5)
    assert clip.encode_image(torch.zeros(1, 3, 256, 256), preprocess="paper").shape == (1, 32)
    other = load_native_clip(tiny_sd)
    assert torch.allclose(other.encode_text(["no smile"]), t[1:2], atol=1e-6)
