"""The CLIP adapter: preprocessing equal to open_clip's own transform ("correct") and to StyleCLIP's literal
upsample + average pool ("paper"); encoders; loading OpenAI TorchScript archives without running their code;
saving and loading; clear errors. A tiny open_clip CLIP with random weights, on the CPU."""
from __future__ import annotations

import math
import zipfile

import pytest
import torch
import torch.nn.functional as F

try:
    import open_clip
except ImportError:  # our NativeClip stands in; only comparisons with open_clip itself need it
    open_clip = None
needs_open_clip = pytest.mark.skipif(open_clip is None, reason="compares with open_clip, which is not installed")

from micromotion.errors import CheckpointError  # noqa: E402
from micromotion.models.clip import (Clip, ClipConfig, paper_resize_matrix,  # noqa: E402
                                     read_torchscript_weights)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # the machine is small and shared: more threads than cores makes small ops far slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny() -> Clip:
    return Clip.from_config(ClipConfig.tiny(), seed=0)


def smooth_images(n: int, size: int, seed: int = 0, hw: tuple[int, int] | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h, w = hw or (size, size)
    x = F.interpolate(torch.randn(n, 3, 6, 6, generator=g), size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp(-1, 1)


@pytest.mark.parametrize("hw", [(64, 64), (48, 80), (21, 21), (32, 32)])
@needs_open_clip
def test_correct_preprocessing_equals_open_clip_transform_on_tensors(tiny, hw):
    """open_clip's eval transform (Resize shortest side, bicubic, antialias; CenterCrop; Normalize), on tensors."""
    tf = open_clip.image_transform(tiny.image_size, is_train=False)
    x = smooth_images(2, 0, seed=1, hw=hw)
    theirs = torch.stack([tf((img + 1) / 2) for img in x])
    ours = tiny.preprocess(x, "correct")
    assert ours.shape == (2, 3, 32, 32)
    assert torch.allclose(ours, theirs, atol=1e-5)


@needs_open_clip
def test_correct_preprocessing_matches_open_clip_on_pil_images(tiny):
    """The same pipeline on 8-bit PIL images (what CLIP was trained with): equal up to 8-bit rounding."""
    from PIL import Image

    tf = open_clip.image_transform(tiny.image_size, is_train=False)
    x = smooth_images(2, 96, seed=2)
    u8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    theirs = torch.stack([tf(Image.fromarray(a.permute(1, 2, 0).numpy(), "RGB")) for a in u8])
    ours = tiny.preprocess(u8.float() / 127.5 - 1, "correct")
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).reshape(1, 3, 1, 1)
    # PIL resizes in 8 bits and clips the bicubic overshoot to [0, 255]; we keep floats (and gradients)
    ours01, theirs01 = (ours * std + mean).clamp(0, 1), theirs * std + mean
    err = (ours01 - theirs01).abs() * 255  # in 8-bit levels
    assert err.max() <= 1.5 and err.mean() <= 0.3
    # and the features agree closely
    f1 = F.normalize(tiny.model.encode_image(ours), dim=-1)
    f2 = F.normalize(tiny.model.encode_image(theirs), dim=-1)
    assert (f1 * f2).sum(-1).min() > 0.999


@pytest.mark.parametrize("src,dst", [(64, 224), (32, 224), (256, 224), (48, 32), (32, 32)])
def test_paper_preprocessing_equals_literal_upsample_avgpool(tiny, src, dst):
    """StyleCLIP: `AvgPool2d(src // 32)(Upsample(scale_factor=7)(x))` for src >= 32 and dst = 224; here any sizes
    through g = gcd(src, dst)."""
    x = smooth_images(2, src, seed=3)
    g = math.gcd(src, dst)
    literal = F.avg_pool2d(F.interpolate(x, scale_factor=dst // g, mode="nearest"), src // g)
    a = paper_resize_matrix(src, dst)
    ours = torch.einsum("ih,nchw,jw->ncij", a, x, a)
    assert ours.shape == literal.shape == (2, 3, dst, dst)
    assert torch.allclose(ours, literal, atol=1e-6)
    if src >= 32 and dst == 224:  # the original's own constants
        stylegan = F.avg_pool2d(torch.nn.Upsample(scale_factor=7)(x), src // 32)
        assert torch.allclose(ours, stylegan, atol=1e-6)


def test_paper_preprocessing_keeps_the_range_and_skips_normalization(tiny):
    x = smooth_images(1, 64, seed=4)
    y = tiny.preprocess(x, "paper")
    assert y.shape == (1, 3, 32, 32)
    assert torch.allclose(y.mean(), x.mean(), atol=1e-5)  # no mean/std: the [-1, 1] range goes in as it is
    with pytest.raises(ValueError, match="square"):
        tiny.preprocess(torch.zeros(1, 3, 32, 48), "paper")
    with pytest.raises(ValueError, match="correct, paper"):
        tiny.preprocess(x, "fancy")


@needs_open_clip
def test_encoders_shapes_unit_norm_gradients(tiny):
    x = smooth_images(3, 64, seed=5).requires_grad_(True)
    for mode in ("correct", "paper"):
        f = tiny.encode_image(x, mode)
        assert f.shape == (3, 32) and f.dtype == torch.float32
        assert torch.allclose(f.norm(dim=-1), torch.ones(3), atol=1e-5)
    tiny.encode_image(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in tiny.parameters())
    t = tiny.encode_text(["a person with 10% smile", "a person with 90% smile"])
    assert t.shape == (2, 32)
    assert not torch.allclose(t[0], t[1])
    # the open_clip pipeline, by hand
    tok = open_clip.SimpleTokenizer(context_length=16)(["a person with 10% smile"])
    ref = F.normalize(tiny.model.encode_text(tok), dim=-1)
    assert torch.allclose(t[:1], ref, atol=1e-6)
    assert tiny.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)  # open_clip's initial value
    with pytest.raises(ValueError, match="non-empty list"):
        tiny.encode_text("a string, not a list")


def test_build_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = ClipConfig.tiny().build(seed=7)
    after = torch.rand(3)
    b = ClipConfig.tiny().build(seed=7)
    c = ClipConfig.tiny().build(seed=8)
    assert torch.equal(after, expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["visual.proj"], sc["visual.proj"])


@needs_open_clip
def test_vit_b_32_config_is_openai_layout():
    cfg = ClipConfig.vit_b_32()
    assert cfg.image_size == 224 and cfg.embed_dim == 512 and cfg.quick_gelu
    ref = open_clip.get_model_config("ViT-B-32-quickgelu")
    assert ref["embed_dim"] == cfg.embed_dim
    for k in ("image_size", "layers", "width", "patch_size"):
        assert ref["vision_cfg"][k] == cfg.vision_cfg[k]
    for k in ("context_length", "vocab_size", "width", "heads", "layers"):
        assert ref["text_cfg"][k] == cfg.text_cfg[k]


def _trace(model, path):
    """A TorchScript archive of an open_clip model, as OpenAI's ViT-B-32.pt is one (torch.jit.trace)."""
    img = torch.zeros(1, 3, 32, 32)
    txt = torch.zeros(1, 16, dtype=torch.long)
    traced = torch.jit.trace_module(model, {"encode_image": (img,), "encode_text": (txt,)}, check_trace=False)
    torch.jit.save(traced, str(path))
    return traced


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_archive_is_read_without_running_code(tiny, tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    traced = _trace(tiny.model, path)
    sd = read_torchscript_weights(path)
    ref = traced.state_dict()
    assert set(sd) == set(ref)
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    loaded = Clip.load(path)
    assert loaded.config.vision_cfg["image_size"] == 32 and loaded.config.text_cfg["context_length"] == 16
    x = smooth_images(2, 64, seed=6)
    assert torch.allclose(loaded.encode_image(x), tiny.encode_image(x), atol=1e-6)
    texts = ["a person with no smile"]
    assert torch.allclose(loaded.encode_text(texts), tiny.encode_text(texts), atol=1e-6)


def test_torchscript_fp16_and_typed_attributes(tmp_path):
    """OpenAI's archives hold fp16 storages and non-tensor attributes; a scripted module with both."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2).half()
            self.register_buffer("table", torch.arange(6, dtype=torch.int64).reshape(2, 3)[:, 1:])
            self.sizes = [1, 2, 3]
            self.scale = 2.5

        def forward(self, x):
            return x

    m = M()
    torch.jit.save(torch.jit.script(m), str(tmp_path / "m.pt"))
    sd = read_torchscript_weights(tmp_path / "m.pt")
    assert set(sd) == {"lin.weight", "lin.bias", "table"}
    assert sd["lin.weight"].dtype == torch.float16 and torch.equal(sd["lin.weight"], m.lin.weight)
    assert torch.equal(sd["table"], m.table)


def test_torchscript_with_code_objects_is_refused(tmp_path):
    """A pickle in the archive that asks for anything but tensor data is refused, and nothing is run."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(CheckpointError, match="refusing to load.*print"):
        read_torchscript_weights(path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        Clip.load(path)


def test_save_load_roundtrip_and_state_dict_files(tiny, tmp_path):
    p = tiny.save(tmp_path / "tiny.safetensors")
    back = Clip.load(p)
    assert back.config == tiny.config
    x = smooth_images(1, 40, seed=8)
    assert torch.equal(back.encode_image(x), tiny.encode_image(x))
    # a plain torch state dict in OpenAI layout (open_clip training checkpoints: {"state_dict": {"module.*"}})
    sd = {f"module.{k}": v for k, v in tiny.model.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "epoch_3.pt")
    back2 = Clip.load(tmp_path / "epoch_3.pt")
    assert torch.allclose(back2.encode_image(x), tiny.encode_image(x), atol=1e-6)


def test_bad_files_give_clear_errors(tiny, tmp_path):
    sd = dict(tiny.model.state_dict())
    sd["visual.proj"] = torch.zeros(3, 3)
    torch.save(sd, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"wrong\.pt: 'visual\.proj' has shape \[3, 3\]"):
        Clip.load(tmp_path / "wrong.pt")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no tensor 'visual.conv1.weight'"):
        Clip.load(tmp_path / "other.pt")
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.bin: not a TorchScript, torch or safetensors CLIP file"):
        Clip.load(tmp_path / "junk.bin")


def test_missing_registry_weights_offline(tmp_path, monkeypatch):
    from micromotion.errors import WeightsError

    monkeypatch.setenv("MICROMOTION_HOME", str(tmp_path))
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")
    with pytest.raises(WeightsError, match="clip-vit-b-32"):
        Clip.load("clip-vit-b-32")


def test_wraps_any_open_clip_model():
    """What the face world's own CLIP does: any open_clip model + tokenizer through the same class."""
    model = ClipConfig(embed_dim=8, vision_cfg={"image_size": 16, "layers": 1, "width": 64, "patch_size": 4},
                       text_cfg={"context_length": 8, "vocab_size": 49408, "width": 64, "heads": 1,
                                 "layers": 1}).build(seed=3)
    clip = Clip.from_open_clip(model, name="world")
    assert clip.image_size == 16 and clip.name == "world"
    f = clip.encode_image(smooth_images(2, 64, seed=9))
    assert f.shape == (2, 8)
    with pytest.raises(ValueError, match="no ClipConfig"):
        clip.save("unused.safetensors")
