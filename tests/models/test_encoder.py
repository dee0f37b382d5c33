"""ReStyle encoders (pSp and e4e variants): equality with the reference implementation on deterministic weights
(golden numbers), loading official-layout checkpoints, tiny configs, bad checkpoints.

`tests/golden/restyle_{psp,e4e}.safetensors` were written by running yuval-alaluf/restyle-encoder (HEAD
5e80276) from a scratch folder outside this repository: its `models/`, `configs/`, `utils/`, with the
stylegan2 CUDA ops replaced by the pure-PyTorch paths of the same code (`upfirdn2d_native`, the CPU formula
of `fused_leaky_relu`) and torchvision stubbed (only its ResNet34 encoders need it). That script imports this
module: it takes the reference encoder's own `state_dict()` as the template of `encoder_weights` (and asserts
its keys and shapes equal ours, recorded as `encoder_keys` in the golden metadata), saves
`reference_checkpoint(...)` with torch.save, builds `pSp(opts)` / `e4e(opts)` from that file through the
reference's `load_weights` (checking that every encoder tensor arrived, as it loads with strict=False), then
runs `utils/inference_utils.get_average_image` (its `.to('cuda')` mapped to the CPU) and `run_on_batch` with
`n_iters_per_batch=2`, `resize_outputs=False`, in fp32 on one CPU thread, on `golden_images(1)`. The decoder
is 256² (`Generator(256, 512, 8, channel_multiplier=2)`, 14 W+ layers); the encoder is the real IR-SE50.
Measured: codes agree to ~6e-6, images to ~3e-5 (relative).
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest
import torch

from micromotion.errors import CheckpointError
from micromotion.models.encoder import (BackboneEncoder, EncoderConfig, ProgressiveBackboneEncoder, ReStyle,
                                        build_encoder, infer_config, load_restyle)
from micromotion.models.stylegan2 import Generator, GeneratorConfig
from reference_layouts import deterministic_weights as generator_weights
from reference_layouts import rosinality_spec, summarize

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
WEIGHT_SEED = 5
DECODER_SIZE = 256  # ReStyle's FFHQ decoder is 1024²; 256² keeps the test fast and changes nothing in the encoder
N_ITERS = 2
ENCODER_TYPES = {"psp": "BackboneEncoder", "e4e": "ProgressiveBackboneEncoder"}
LATENT_TOL, IMAGE_TOL = 1e-4, 1e-3  # relative


def encoder_weights(template: dict[str, torch.Tensor], seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """Non-trivial weights for a ReStyle IR-SE encoder state dict, each tensor a function of (seed, key, shape).

    Convolutions are He-scaled so activations stay O(1) through the 24 units; BatchNorm affine parameters and
    running statistics are far from their defaults (so ignoring one, or train-mode BatchNorm, would show);
    the heads' equalized linear layers are stored without the 1/sqrt(fan_in) that EqualLinear applies when it
    runs, at a scale that makes each refinement step move the codes by about a third of `latent_avg`'s spread.
    """
    out = {}
    for key in sorted(template):
        shape = tuple(template[key].shape)
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 1 and key.endswith("weight") and not key.endswith("layer.2.weight"):
            out[key] = 0.6 + 0.8 * torch.rand(shape, generator=g)  # BatchNorm gamma
        else:
            n = torch.randn(shape, generator=g)
            if key.endswith("running_mean"):
                out[key] = 0.2 * n
            elif key.endswith("linear.weight"):
                out[key] = 0.3 * n
            elif key.endswith("linear.bias"):
                out[key] = 0.05 * n
            elif key.endswith("bias"):
                out[key] = 0.1 * n  # BatchNorm beta, conv bias
            elif len(shape) == 1:
                out[key] = 0.25 + 0.1 * n  # PReLU slopes (input_layer.2, res_layer.2)
            else:
                out[key] = n * math.sqrt(1.0 / math.prod(shape[1:]))
    return out


def reference_checkpoint(encoder_template: dict[str, torch.Tensor], variant: str) -> dict:
    """An official-layout ReStyle checkpoint (`state_dict` with `encoder.*`/`decoder.*`, `latent_avg`, `opts`)
    on deterministic weights: the encoder's from `encoder_weights`, a 256² config-f rosinality decoder, and a
    `latent_avg` with a different vector on each of the 14 layers."""
    enc = encoder_weights(encoder_template)
    dec = generator_weights(rosinality_spec(DECODER_SIZE), seed=DECODER_SIZE)
    n_styles = 2 * int(math.log2(DECODER_SIZE)) - 2
    g = torch.Generator().manual_seed(WEIGHT_SEED + 1)
    latent_avg = 0.5 * torch.randn(n_styles, 512, generator=g)
    sd = {**{f"encoder.{k}": v for k, v in enc.items()}, **{f"decoder.{k}": v for k, v in dec.items()}}
    opts = {"encoder_type": ENCODER_TYPES[variant], "input_nc": 6, "output_size": DECODER_SIZE,
            "dataset_type": "ffhq_encode", "n_iters_per_batch": 5, "checkpoint_path": None}
    return {"state_dict": sd, "latent_avg": latent_avg, "opts": opts}


def golden_images(n: int = 2) -> torch.Tensor:
    """Smooth face-sized images [n, 3, 256, 256] in [-1, 1]."""
    g = torch.Generator().manual_seed(123)
    coarse = torch.randn(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(256, 256), mode="bilinear", align_corners=False)
    return (x + 0.1 * torch.randn(n, 3, 256, 256, generator=g)).clamp(-1, 1)


def key_digest(keys_and_shapes) -> str:
    """crc32 of the sorted `key:shape` list: the golden file records the reference encoder's layout."""
    text = "\n".join(f"{k}:{list(s)}" for k, s in sorted(keys_and_shapes))
    return f"{zlib.crc32(text.encode()):08x}"


def fingerprint(refinement_steps: torch.Tensor, final: torch.Tensor, average: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the golden files hold: per-iteration codes (the first 32 values of every layer and every layer's
    norm), fingerprints (`summarize`) of the final reconstruction and of the average image."""
    out = {"ws_slice": refinement_steps[..., :32].float().contiguous(),
           "ws_norm": refinement_steps.double().norm(dim=-1).float().contiguous()}
    out.update({f"image.{k}": v.contiguous() for k, v in summarize(final).items()})
    out.update({f"average.{k}": v.contiguous() for k, v in summarize(average).items()})
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# ----------------------------------------------------------------------------------------------------------
# Golden equivalence with restyle-encoder


@pytest.fixture(scope="module")
def encoder_template() -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes only
        return BackboneEncoder(EncoderConfig(n_styles=2 * int(math.log2(DECODER_SIZE)) - 2)).state_dict()


@pytest.mark.parametrize("variant", ["psp", "e4e"])
def test_matches_reference(variant, encoder_template, tmp_path):
    from safetensors import safe_open

    torch.set_num_threads(1)
    with safe_open(str(GOLDEN_DIR / f"restyle_{variant}.safetensors"), framework="pt") as f:
        golden = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    assert meta["encoder_keys"] == key_digest((k, v.shape) for k, v in encoder_template.items()), \
        "our encoder's state-dict layout differs from the reference's"
    path = tmp_path / f"restyle_{variant}.pt"
    torch.save(reference_checkpoint(encoder_template, variant), path)
    net = load_restyle(path)
    assert net.variant == variant and net.G.resolution == DECODER_SIZE and net.G.num_ws == 14
    assert type(net.encoder) is (ProgressiveBackboneEncoder if variant == "e4e" else BackboneEncoder)

    images = golden_images(int(meta["n_images"]))
    r = net.invert(images, n_iters=N_ITERS)
    assert r.ws.shape == (images.shape[0], 14, 512) and r.images.shape == (images.shape[0], 3, 256, 256)
    assert torch.equal(r.ws, r.steps[-1])
    ours = fingerprint(r.steps, r.images, net.average_image())
    for k in ("ws_slice", "ws_norm"):
        for it in range(N_ITERS):
            err = _rel(ours[k][it], golden[k][it])
            assert err < LATENT_TOL, f"{variant} {k} iteration {it}: relative error {err:.2e}"
    for k in golden:
        if k.startswith(("image.", "average.")):
            err = _rel(ours[k], golden[k])
            assert err < IMAGE_TOL, f"{variant} {k}: relative error {err:.2e}"
    # the steps really refine: the second iteration moved the codes
    assert _rel(r.steps[1], r.steps[0]) > 1e-3


# ----------------------------------------------------------------------------------------------------------
# Tiny configs


def _tiny_restyle(variant: str, seed: int = 0) -> ReStyle:
    cfg = EncoderConfig.tiny(variant)
    enc = build_encoder(cfg)
    enc.load_state_dict(encoder_weights(enc.state_dict(), seed))
    G = Generator(GeneratorConfig.tiny(16)).eval().requires_grad_(False)
    return ReStyle(enc, G, 0.1 * torch.randn(G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("variant", ["psp", "e4e"])
def test_tiny_shapes_and_batching(variant):
    net = _tiny_restyle(variant)
    cfg = net.encoder.cfg
    assert (cfg.input_size, cfg.feature_size, cfg.n_styles, cfg.w_dim) == (32, 2, 6, 16)
    x = torch.rand(3, 3, 40, 40) * 2 - 1  # resized to 32² as ReStyle's transform does
    r = net.invert(x, n_iters=3)
    assert r.ws.shape == (3, 6, 16) and r.images.shape == (3, 3, 16, 16) and r.steps.shape == (3, 3, 6, 16)
    one = net.invert(x[1:2], n_iters=3)
    assert _rel(one.ws, r.ws[1:2]) < 1e-5  # eval-mode BatchNorm: items are independent
    deltas = net.encoder(torch.zeros(2, 6, 32, 32))
    assert deltas.shape == (2, 6, 16)
    if variant == "e4e":  # one shared w from head 0, deltas from the other heads
        f = net.encoder.features(torch.zeros(2, 6, 32, 32))
        assert torch.allclose(deltas[:, 0], net.encoder.styles[0](f))
    with pytest.raises(ValueError, match=r"\[N, 6, 32, 32\]"):
        net.encoder(torch.zeros(1, 3, 32, 32))


def test_tiny_config_is_inferred_from_shapes():
    for variant in ("psp", "e4e"):
        cfg = EncoderConfig.tiny(variant)
        assert infer_config(build_encoder(cfg).state_dict(), variant) == cfg
    full = EncoderConfig()
    with torch.device("meta"):  # shapes only
        assert infer_config(BackboneEncoder(full).state_dict()) == full


# ----------------------------------------------------------------------------------------------------------
# Loading and bad checkpoints


def _tiny_checkpoint(variant: str = "psp") -> dict:
    net = _tiny_restyle(variant)
    dec = generator_weights(rosinality_spec(16, style_dim=16, n_mlp=2), seed=16)
    sd = {**{f"encoder.{k}": v for k, v in net.encoder.state_dict().items()},
          **{f"decoder.{k}": v for k, v in dec.items()}}
    return {"state_dict": sd, "latent_avg": torch.zeros(6, 16),
            "opts": {"encoder_type": ENCODER_TYPES[variant], "output_size": 16}}


def test_tiny_checkpoint_round_trip(tmp_path):
    ckpt = _tiny_checkpoint("e4e")
    path = tmp_path / "tiny.pt"
    torch.save(ckpt, path)
    net = load_restyle(path)
    assert net.variant == "e4e" and net.G.resolution == 16 and net.opts["encoder_type"] == "ProgressiveBackboneEncoder"
    for k, v in net.encoder.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][f"encoder.{k}"])
    assert net.invert(torch.zeros(1, 3, 16, 16), n_iters=1).ws.shape == (1, 6, 16)


@pytest.mark.parametrize("damage, message", [
    (lambda c: c["state_dict"].pop("encoder.body.2.res_layer.5.fc2.weight"),
     "missing key 'encoder.body.2.res_layer.5.fc2.weight'"),
    (lambda c: c["state_dict"].pop("encoder.input_layer.0.weight"), "missing key 'encoder.input_layer.0.weight'"),
    (lambda c: c["state_dict"].pop("decoder.to_rgbs.0.conv.weight"),
     r"\(decoder\.\*\): missing key 'to_rgbs.0.conv.weight'"),
    (lambda c: c["state_dict"].update({"encoder.extra.weight": torch.zeros(1)}), "unexpected key 'encoder.extra"),
    (lambda c: c["state_dict"].update({"discriminator.w": torch.zeros(1)}), "unexpected key 'discriminator.w'"),
    (lambda c: c["opts"].update(encoder_type="GradualStyleEncoder"), "encoder_type 'GradualStyleEncoder' is not"),
    (lambda c: c.pop("opts"), "no 'opts' with an 'encoder_type'"),
    (lambda c: c.pop("latent_avg"), "no 'latent_avg' tensor"),
    (lambda c: c["state_dict"].update({"encoder.styles.0.linear.bias": torch.zeros(3)}),
     r"'encoder.styles.0.linear.bias' has shape \[3\], expected \[16\]"),
])
def test_bad_checkpoints_name_file_and_key(tmp_path, damage, message):
    ckpt = _tiny_checkpoint()
    damage(ckpt)
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=message) as e:
        load_restyle(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_not_a_restyle_file(tmp_path):
    plain = tmp_path / "g.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, plain)
    with pytest.raises(CheckpointError, match=f"{plain}: no 'state_dict' entry; not a ReStyle checkpoint"):
        load_restyle(plain)
    psp = _tiny_checkpoint()  # an original pSp / e4e encoder takes 3 channels
    psp["state_dict"]["encoder.input_layer.0.weight"] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / "psp.pt"
    torch.save(psp, path)
    with pytest.raises(CheckpointError, match="takes 3 input channels, not 6"):
        load_restyle(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=f"{junk}: "):
        load_restyle(junk)


# ----------------------------------------------------------------------------------------------------------
# As an inversion method


def test_invert_methods(tmp_path):
    from PIL import Image

    from micromotion.errors import InputError
    from micromotion.invert import METHODS, invert

    path = tmp_path / "tiny_e4e.pt"
    torch.save(_tiny_checkpoint("e4e"), path)
    G = load_restyle(path).G  # the encoder's own decoder
    face = Image.fromarray((torch.rand(20, 20, 3) * 255).to(torch.uint8).numpy())
    inv = invert(G, face, method="restyle-e4e", align=False, model=path, n_iters=2)
    assert inv.ws.shape == (1, 6, 16) and inv.method == "restyle-e4e" and inv.details["loss"] == "mse"
    assert inv.reconstruction.shape == (1, 3, 16, 16) and inv.noise is None
    targets = torch.zeros(1, 3, 16, 16)
    with pytest.raises(InputError, match="a ReStyle-e4e checkpoint; use method restyle-e4e"):
        METHODS["restyle-psp"](G, targets, model=path)
    with pytest.raises(InputError, match="option 'steps' does not apply"):
        METHODS["restyle-e4e"](G, targets, model=path, steps=10)
    other = Generator(GeneratorConfig.tiny(32))
    with pytest.raises(InputError, match=r"16x16 generator \(6 x 16\), this generator takes 8 x 16"):
        METHODS["restyle-e4e"](other, torch.zeros(1, 3, 32, 32), model=path)


def test_invert_cli_with_restyle(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from micromotion.checkpoint import save_generator
    from micromotion.cli import main
    from micromotion.invert import load_latent

    ckpt = tmp_path / "tiny_e4e.pt"
    torch.save(_tiny_checkpoint("e4e"), ckpt)
    gen = save_generator(load_restyle(ckpt).G, tmp_path / "g.safetensors")
    face = tmp_path / "face.png"
    Image.fromarray((torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy()).save(face)
    out = tmp_path / "latent.safetensors"
    r = CliRunner().invoke(main, ["invert", str(face), "--model", str(gen), "--method", "restyle-e4e",
                                  "--encoder", str(ckpt), "--iters", "2", "--no-align", "-o", str(out),
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    ws, meta = load_latent(out)
    assert ws.shape[-2:] == (6, 16)
    r = CliRunner().invoke(main, ["invert", str(face), "--model", str(gen), "--method", "restyle-psp",
                                  "--encoder", str(ckpt), "--no-align", "-o", str(tmp_path / "x.safetensors"),
                                  "--device", "cpu"])
    assert r.exit_code == 1 and "use method restyle-e4e" in r.output and not (tmp_path / "x.safetensors").exists()


# ----------------------------------------------------------------------------------------------------------
# Narrow map2style heads (EncoderConfig.head_width)


@pytest.fixture
def one_thread():
    # tiny networks on a shared 2-core machine: thread hand-offs cost more than the arithmetic
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("variant", ["psp", "e4e"])
def test_narrow_heads_are_inferred_and_round_trip(tmp_path, variant, one_thread):
    from micromotion.models.encoder import encoder_from_state_dict, load_encoder, save_encoder

    cfg = EncoderConfig(**{**EncoderConfig.tiny(variant).to_dict(), "head_width": 6})
    torch.manual_seed(2)
    enc = build_encoder(cfg)
    head = enc.styles[0]
    assert head.convs[0].weight.shape == (6, 24, 3, 3) and head.linear.weight.shape == (16, 6)
    wide = build_encoder(EncoderConfig.tiny(variant))
    assert sum(p.numel() for p in enc.parameters()) < sum(p.numel() for p in wide.parameters())
    assert infer_config(enc.state_dict(), variant) == cfg
    again = encoder_from_state_dict(enc.state_dict(), variant)
    assert again.cfg.head_width == 6
    x = torch.rand(2, 6, 32, 32) * 2 - 1
    assert torch.equal(again(x), enc(x))

    G = Generator(GeneratorConfig.tiny(16)).eval().requires_grad_(False)
    net = ReStyle(enc, G, 0.1 * torch.randn(G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(3)))
    path = save_encoder(net, tmp_path / "narrow.safetensors")
    back = load_encoder(path, G)
    assert back.encoder.cfg == cfg and back.encoder.cfg.head_width == 6
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(back.invert(images, n_iters=2).ws, net.invert(images, n_iters=2).ws)


def test_head_width_of_w_dim_is_the_default_and_negative_is_refused():
    # a head as wide as w_dim is pSp's own; it reads back as 0 (w_dim), the same network
    cfg = EncoderConfig(**{**EncoderConfig.tiny().to_dict(), "head_width": 16})
    inferred = infer_config(build_encoder(cfg).state_dict())
    assert inferred.head_width == 0 and inferred == EncoderConfig.tiny()
    with pytest.raises(ValueError, match="head_width must be >= 0"):
        EncoderConfig(**{**EncoderConfig.tiny().to_dict(), "head_width": -1})
