"""MobileStyleGAN: tiny-config shapes and values, noise modes, W+ checks, the OpenVINO IR reader, the key map and
its errors, and equivalence with OpenVINO's runtime on the real random-face files (tests/golden/README.md)."""
from __future__ import annotations

import importlib.metadata
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from micromotion.models import mobilestylegan_convert as conv
from micromotion.models.mobilestylegan import Generator, MobileStyleGANConfig, idwt_haar
from micromotion.models.openvino_ir import parse_ir, read_ir

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mobilestylegan_openvino.safetensors"


def tiny(noise_strength: float = 0.1) -> Generator:
    torch.manual_seed(0)
    G = Generator(MobileStyleGANConfig.tiny()).eval()
    with torch.no_grad():
        for layer in G.synthesis_net.layers:
            layer.noise_strength.fill_(noise_strength)
    return G


# --------------------------------------------------------------------------------------------------------------
# The model


def test_tiny_shapes_and_values():
    G = tiny()
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (16, 16, 8, 32)
    assert MobileStyleGANConfig().num_ws == 23 and MobileStyleGANConfig().resolution == 1024
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img = G(z)
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.float32
    torch.testing.assert_close(img[0, :, 10, 8:12], torch.tensor([
        [0.8214750289916992, 0.3879655599594116, -2.6116130352020264, 1.1137101650238037],
        [-0.24962174892425537, -0.04711034893989563, -0.3502262830734253, -1.442555546760559],
        [0.5361342430114746, -0.18532636761665344, 1.4472169876098633, 0.966623842716217]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(img[1, 2, 20:22, 0:3], torch.tensor([
        [0.16068601608276367, 1.9971034526824951, 0.7450815439224243],
        [-0.4888325035572052, -0.7040047645568848, 0.4626725912094116]]), atol=1e-5, rtol=0)


def test_config_round_trip_and_errors():
    cfg = MobileStyleGANConfig.tiny()
    assert MobileStyleGANConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown MobileStyleGAN config keys"):
        MobileStyleGANConfig.from_dict({**cfg.to_dict(), "resolution": 32})
    with pytest.raises(ValueError, match="divisible by 4"):
        MobileStyleGANConfig(channels=(16, 6, 8))


def test_batch_single_and_autograd_paths_agree():
    """Batch 1 folds the styles into the weights, larger batches multiply; with autograd the IDWT stacks."""
    G = tiny()
    ws = torch.randn(3, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batch = G.synthesis(ws)
        single = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    wg = ws.clone().requires_grad_(True)
    out = G.synthesis(wg)
    torch.testing.assert_close(out.detach(), batch, atol=1e-5, rtol=1e-5)
    out.square().mean().backward()
    # Rows read only by the reference's intermediate (distillation) images, and the spare last row, are dead.
    dead = (wg.grad.abs().sum((0, 2)) == 0).nonzero().flatten().tolist()
    assert dead == [3, 7]  # tiny: 2 blocks -> rows 3 (block 0's image) and 7 (spare)


def test_the_compiler_traces_synthesis_as_one_graph():
    """`torch.compile` sees the whole synthesis network (no graph break): a break once made every StyledConv a
    frame of its own, compiled per shape until dynamo's recompile limit, and the rest ran eagerly."""
    import torch._dynamo

    G = tiny()
    ws = torch.randn(2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(2))
    torch._dynamo.reset()
    with torch.no_grad():
        ex = torch._dynamo.explain(G.synthesis)(ws)
    torch._dynamo.reset()
    assert (ex.graph_count, ex.graph_break_count) == (1, 0), [b.reason[:200] for b in ex.break_reasons]


@pytest.mark.parametrize("fmt", ["nchw", "nhwc"])
def test_both_activation_layouts_give_the_same_frames(fmt):
    """`SynthesisNetwork.memory_format` changes only the layout (NHWC: 1x1 convs as GEMMs), never the frames."""
    G = tiny()
    ws = torch.randn(3, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(4))
    seen = []
    hook = G.synthesis_net.layers[1].register_forward_hook(
        lambda mod, args, out: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        ref = G.synthesis(ws)  # auto: NHWC on the CPU
        assert seen == [True]
        G.synthesis_net.memory_format = fmt
        try:
            for b in (1, 3):
                seen.clear()
                out = torch.cat([G.synthesis(c) for c in ws.split(b)])
                assert set(seen) == {fmt == "nhwc"}  # the layout asked for is the one the layers see
                torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        finally:
            G.synthesis_net.memory_format = "auto"
            hook.remove()
    G.synthesis_net.memory_format = "sideways"
    with pytest.raises(ValueError, match="memory_format must be"):
        G.synthesis(ws)
    G.synthesis_net.memory_format = "auto"


def test_noise_modes():
    G = tiny()
    ws = G.mapping(torch.randn(2, 16, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        assert torch.equal(const, G.synthesis(ws))
        none = G.synthesis(ws, noise_mode="none")
        r1 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r2 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r3 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(6))
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)
    assert (const - none).abs().max() > 1e-3 and (r1 - const).abs().max() > 1e-3
    quiet = tiny(noise_strength=0.0)
    with torch.no_grad():
        torch.testing.assert_close(quiet.synthesis(ws, noise_mode="const"), quiet.synthesis(ws, noise_mode="none"))
    with pytest.raises(ValueError, match="noise_mode must be"):
        G.synthesis(ws, noise_mode="fresh")


def test_wrong_row_count_names_both_counts():
    G = tiny()
    with pytest.raises(ValueError, match=r"\[N, 8, 16\].*8 W\+ rows.*got \[1, 18, 16\]"):
        G.synthesis(torch.zeros(1, 18, 16))
    with pytest.raises(ValueError, match=r"z must have shape \[N, 16\]"):
        G.mapping(torch.zeros(1, 512))


def test_truncation_toward_w_avg():
    G = tiny()
    G.compute_w_avg(256, seed=0)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full, half = G.mapping(z), G.mapping(z, truncation_psi=0.5)
        torch.testing.assert_close(half, G.w_avg + 0.5 * (full - G.w_avg))
        cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, 2:], full[:, 2:])
    assert full.shape == (2, 8, 16) and G.w_avg_source == "computed(256, seed=0)"


def _reference_idwt(ll: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """pytorch_wavelets' SFB2D with db1 / mode 'zero', written out: 1-D synthesis along H, then along W."""
    g0, g1 = torch.tensor([1.0, 1.0]) / math.sqrt(2), torch.tensor([1.0, -1.0]) / math.sqrt(2)

    def sfb1d(lo, hi, dim):
        c = lo.shape[1]
        shape = (2, 1) if dim == 2 else (1, 2)
        k0, k1 = g0.view(1, 1, *shape).repeat(c, 1, 1, 1), g1.view(1, 1, *shape).repeat(c, 1, 1, 1)
        stride = (2, 1) if dim == 2 else (1, 2)
        return F.conv_transpose2d(lo, k0, stride=stride, groups=c) + F.conv_transpose2d(hi, k1, stride=stride, groups=c)

    lh, hl, hh = high.unbind(2)
    return sfb1d(sfb1d(ll, lh, 2), sfb1d(hl, hh, 2), 3)


def test_idwt_haar_matches_the_reference_transform_and_inverts_the_dwt():
    x = torch.randn(2, 4 * 5, 6, 7, generator=torch.Generator().manual_seed(0))
    ll, high = x[:, :5], x[:, 5:].reshape(2, 5, 3, 6, 7)
    ref = _reference_idwt(ll, high)
    torch.testing.assert_close(idwt_haar(x), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(idwt_haar(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(idwt_haar(x.clone().requires_grad_(True)).detach(), ref, atol=1e-6, rtol=0)
    img = torch.randn(1, 3, 8, 8)
    a, b, c, d = img[..., 0::2, 0::2], img[..., 0::2, 1::2], img[..., 1::2, 0::2], img[..., 1::2, 1::2]
    bands = torch.stack([(a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2], 2)  # LH, HL, HH
    coeffs = torch.cat([(a + b + c + d) / 2, bands.reshape(1, 9, 4, 4)], 1)
    torch.testing.assert_close(idwt_haar(coeffs), img, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------------------
# The IR reader, on an IR written here


def _tiny_ir(tmp_path: Path, version: int = 10, truncate: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """y = x @ W^T + b as IR v10: Parameter, two Consts (f32 [3, 4], f32 [1, 3]), MatMul, Add, Result."""
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    b = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    blob = w.tobytes() + b.tobytes()
    xml = f"""<?xml version="1.0" ?>
<net name="Tiny" version="{version}">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1">
      <data shape="1, 4" element_type="f32"/>
      <output><port id="0" precision="FP32" names="x"><dim>1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="1" name="fc.weight" type="Const" version="opset1">
      <data element_type="f32" shape="3, 4" offset="0" size="48"/>
      <output><port id="0" precision="FP32"><dim>3</dim><dim>4</dim></port></output>
    </layer>
    <layer id="2" name="MatMul_0" type="MatMul" version="opset1">
      <data transpose_a="false" transpose_b="true"/>
      <input><port id="0"><dim>1</dim><dim>4</dim></port><port id="1"><dim>3</dim><dim>4</dim></port></input>
      <output><port id="2" precision="FP32"><dim>1</dim><dim>3</dim></port></output>
    </layer>
    <layer id="3" name="fc.bias" type="Const" version="opset1">
      <data element_type="f32" shape="1, 3" offset="48" size="12"/>
      <output><port id="0" precision="FP32"><dim>1</dim><dim>3</dim></port></output>
    </layer>
    <layer id="4" name="Add_1" type="Add" version="opset1">
      <data auto_broadcast="numpy"/>
      <input><port id="0"><dim>1</dim><dim>3</dim></port><port id="1"><dim>1</dim><dim>3</dim></port></input>
      <output><port id="2" precision="FP32" names="y"><dim>1</dim><dim>3</dim></port></output>
    </layer>
    <layer id="5" name="y/sink_port_0" type="Result" version="opset1">
      <input><port id="0"><dim>1</dim><dim>3</dim></port></input>
    </layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="2" to-port="0"/>
    <edge from-layer="1" from-port="0" to-layer="2" to-port="1"/>
    <edge from-layer="2" from-port="2" to-layer="4" to-port="0"/>
    <edge from-layer="3" from-port="0" to-layer="4" to-port="1"/>
    <edge from-layer="4" from-port="2" to-layer="5" to-port="0"/>
  </edges>
</net>
"""
    (tmp_path / "tiny.xml").write_text(xml)
    (tmp_path / "tiny.bin").write_bytes(blob[:len(blob) - truncate])
    return tmp_path / "tiny.xml", w, b


def test_ir_reader_layers_constants_and_edges(tmp_path):
    xml, w, b = _tiny_ir(tmp_path)
    g = read_ir(xml)
    assert (g.name, g.version, len(g.layers), len(g.edges)) == ("Tiny", 10, 6, 5)
    np.testing.assert_array_equal(g.const("fc.weight"), w)
    np.testing.assert_array_equal(g.const(g.layer(3)), b)
    add = g.layer("Add_1")
    assert [x.name for x in g.inputs_of(add)] == ["MatMul_0", "fc.bias"]
    assert g.producer(add, 1) == (g.layer("fc.bias"), 0)
    assert [(x.name, p) for x, p in g.consumers(g.layer("x"))] == [("MatMul_0", 0)]
    assert g.layer("MatMul_0").data == {"transpose_a": "false", "transpose_b": "true"}
    assert g.layer("Add_1").outputs[0].dims == (1, 3) and g.layer("Add_1").outputs[0].names == ("y",)
    assert [x.name for x in g.of_type("Const")] == ["fc.weight", "fc.bias"]
    with pytest.raises(ValueError, match="is a Parameter, not a Const"):
        g.const("x")
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        g.layer("nope")


def test_ir_reader_errors(tmp_path):
    xml, _, _ = _tiny_ir(tmp_path, version=11)
    with pytest.raises(ValueError, match="tiny.xml: IR version 11; this reader reads IR v10"):
        read_ir(xml)
    xml, _, _ = _tiny_ir(tmp_path, truncate=4)
    g = read_ir(xml)
    with pytest.raises(ValueError, match=r"Const 'fc.bias' reads bytes 48..60 of a 56-byte .bin"):
        g.const("fc.bias")
    with pytest.raises(ValueError, match="not an OpenVINO IR"):
        parse_ir(b"<html/>", b"")
    with pytest.raises(ValueError, match="not an XML file"):
        parse_ir(b"\x00\x01", b"")


def test_key_map_names_the_first_missing_weight_of_another_network(tmp_path):
    xml, _, _ = _tiny_ir(tmp_path)
    with pytest.raises(conv.KeyMapError, match=r"tiny.xml: weight 'm.input.input' \(for synthesis_net.const\) "
                                               r"is missing; this is not the SynthesisNetwork IR"):
        conv.synthesis_config_from_ir(read_ir(xml))
    with pytest.raises(conv.KeyMapError, match=r"expected 8 MatMul layers \(fc0..fc7\), found 1"):
        conv.mapping_key_map(read_ir(xml), MobileStyleGANConfig(z_dim=4))


def test_sha256_mismatch_names_the_file_and_the_fix(tmp_path):
    files = {}
    for name in conv.FILE_SHA256:
        (tmp_path / name).write_bytes(b"not the model")
        files[name] = tmp_path / name
    with pytest.raises(ValueError, match=r"MappingNetwork.xml: sha256 .* does not match MappingNetwork.xml of "
                                         r"random-face 2021.7.21.1 .*micromotion weights download "
                                         r"mobilestylegan-ffhq-1024"):
        conv.verify_files(files)


def test_missing_distribution_says_how_to_get_it(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(conv.importlib.metadata, "distribution", absent)
    monkeypatch.setattr(conv.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"random-face is not installed.*pip install --no-deps "
                                                r"random-face==2021.7.21.1.*weights download"):
        conv.find_random_face_files()


# --------------------------------------------------------------------------------------------------------------
# The real files (random-face is installed by `make test`)


@pytest.fixture(scope="module")
def real_files():
    try:
        return conv.find_random_face_files()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def real_G(real_files):
    return conv.load_random_face(real_files, w_avg_samples=0)


def test_find_does_not_import_the_package(real_files):
    assert "random_face" not in sys.modules and "openvino" not in sys.modules
    assert set(real_files) == set(conv.FILE_SHA256)
    assert all(p.stat().st_size == conv.FILE_SIZES[n] for n, p in real_files.items())


def test_equivalence_with_openvino(real_G):
    """Our fp32 model, W+ = 23 copies of w, against OpenVINO's runtime: within 1e-4 max abs (measured: ~6e-5)."""
    gold = load_file(str(GOLDEN))
    z = torch.from_numpy(np.random.RandomState(2021).standard_normal((4, 512)).astype(np.float32))
    torch.testing.assert_close(z[:, :8], gold["z_head"], atol=0, rtol=0)
    G = real_G
    assert (G.num_ws, G.resolution, G.cfg.channels) == (23, 1024, (512, 512, 512, 512, 512, 256, 128, 64))
    with torch.no_grad():
        w = G.mapping_net(z)
        assert (w - gold["w"]).abs().max() < 1e-4
        ws = gold["w"].unsqueeze(1).repeat(1, 23, 1)
        # samples 0, 1 one at a time (styles folded into the weights), 2, 3 as a batch (styles multiplied)
        imgs = torch.cat([G.synthesis(ws[0:1]), G.synthesis(ws[1:2]), G.synthesis(ws[2:4])])
    yx = gold["pixel_yx"]
    got = {"img64": F.avg_pool2d(imgs, 16),
           "stats": torch.stack([imgs.mean((2, 3)), imgs.std((2, 3), correction=0), imgs.amin((2, 3)),
                                 imgs.amax((2, 3))], -1),
           "pixels": imgs[:, :, yx[:, 0], yx[:, 1]]}
    for k, v in got.items():
        err = (v - gold[k]).abs().max().item()
        assert err < 1e-4, f"{k}: max abs {err:.3g} vs OpenVINO"


def test_wrong_row_count_on_the_real_model(real_G):
    with pytest.raises(ValueError, match=r"23 W\+ rows\), got \[1, 18, 512\]"):
        real_G.synthesis(torch.zeros(1, 18, 512))


def _edited_ir(tmp_path: Path, real_files, old: str, new: str) -> Path:
    text = real_files["SynthesisNetwork.xml"].read_text()
    assert old in text
    (tmp_path / "SynthesisNetwork.xml").write_text(text.replace(old, new, 1))
    return tmp_path / "SynthesisNetwork.xml"


def test_key_map_errors_on_real_files(tmp_path, real_files):
    binf = real_files["SynthesisNetwork.bin"]
    cfg = MobileStyleGANConfig()
    # a weight renamed away: named
    xml = _edited_ir(tmp_path, real_files, 'name="m.layers.3.up.modulation.weight"', 'name="renamed"')
    with pytest.raises(conv.KeyMapError, match=r"weight 'm.layers.3.up.modulation.weight' \(for "
                                               r"ups.3.affine.weight\) is missing"):
        conv.synthesis_state_dict(read_ir(xml, binf), Generator(cfg))
    # a weight the architecture does not have: named
    extra = ('<layers>\n\t\t<layer id="99999" name="extra.weight" type="Const" version="opset1">'
             '<data element_type="f32" shape="2" offset="0" size="8"/>'
             '<output><port id="0" precision="FP32"><dim>2</dim></port></output></layer>')
    xml = _edited_ir(tmp_path, real_files, "<layers>", extra)
    with pytest.raises(conv.KeyMapError, match=r"constant 'extra.weight' \[2\] is not used by the key map"):
        conv.synthesis_state_dict(read_ir(xml, binf), Generator(cfg))
    # another architecture's shapes: the first mismatch named
    other = Generator(MobileStyleGANConfig(channels=(512, 512, 512, 512, 512, 256, 128, 32)))
    with pytest.raises(conv.KeyMapError, match=r"'Mul_706_copy' has shape \[64, 32, 1, 1\], layers.13.weight_pw "
                                               r"needs \[32, 32, 1, 1\]"):
        conv.synthesis_state_dict(read_ir(real_files["SynthesisNetwork.xml"], binf), other)
    # the other network of the pair
    with pytest.raises(conv.KeyMapError, match=r"MappingNetwork.xml: weight 'm.input.input'"):
        conv.synthesis_config_from_ir(read_ir(real_files["MappingNetwork.xml"]))
    with pytest.raises(conv.KeyMapError, match=r"SynthesisNetwork.xml: expected one input \[N, 512\]|"
                                               r"SynthesisNetwork.xml: expected 8 MatMul"):
        conv.mapping_state_dict(read_ir(real_files["SynthesisNetwork.xml"]), Generator(cfg))


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["nchw", "nhwc"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-compiled"])
def test_cuda_frames_are_the_cpu_frames(precision, fmt):
    """The real-size architecture (random weights) on CUDA, batch 1 and 8, vs our CPU fp32 frames: fp32 to
    rounding (TF32 off), bf16 (eager and under `torch.compile`) within 38 dB; cuDNN's convolutions are checked
    per shape (`ops.conv2d`)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    G = Generator(MobileStyleGANConfig())
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
    G = G.eval().requires_grad_(False)
    ws = G.mapping(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(3)), 0.7)
    with torch.no_grad():
        ref = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(8)])
    scale = ref.square().mean().sqrt().item()
    Gc = G.cuda()
    Gc.synthesis_net.memory_format = fmt
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    synth = torch.compile(Gc.synthesis, dynamic=False) if precision == "bf16-compiled" else Gc.synthesis
    try:
        for b in (1, 8):
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=precision != "fp32"):
                out = torch.cat([synth(c) for c in ws.cuda().split(b)]).float().cpu()
            # PSNR relative to the frames' own scale (random weights do not fill [-1, 1])
            mse = (out - ref).square().mean().item()
            psnr = float("inf") if mse == 0 else 10 * math.log10(scale ** 2 / mse)
            bar = 100.0 if precision == "fp32" else 38.0
            assert psnr >= bar, f"{precision} batch {b}: {psnr:.1f} dB from the CPU frames"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
