"""Generator behaviour on tiny configs; equivalence with the reference implementations lives in
tests/test_checkpoint_equivalence.py."""
import math

import pytest
import torch

from micromotion import Generator, GeneratorConfig, ops
from micromotion.models.stylegan2 import _default_channels


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig.tiny(32)).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return g


def test_shapes_and_attributes(G):
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (16, 16, 8, 32)
    ws = G.mapping(torch.randn(3, 16))
    assert ws.shape == (3, 8, 16)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, 32, 32) and img.dtype == torch.float32


def test_config_f_channels():
    cfg = GeneratorConfig()
    assert cfg.num_ws == 18
    assert cfg.channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    assert GeneratorConfig.config_f(256, channel_multiplier=1).channels[256] == 64
    assert _default_channels(64) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512}


def test_config_roundtrip_and_validation():
    cfg = GeneratorConfig.tiny(64)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(resolution=100)
    with pytest.raises(ValueError, match="unknown generator config keys"):
        GeneratorConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_truncation_pulls_toward_w_avg(G):
    G.w_avg.copy_(torch.linspace(-1, 1, 16))
    z = torch.randn(4, 16)
    full, half, zero = G.mapping(z, 1.0), G.mapping(z, 0.5), G.mapping(z, 0.0)
    assert torch.allclose(zero, G.w_avg.expand_as(zero))
    assert torch.allclose(half, (full + zero) / 2, atol=1e-6)
    cut = G.mapping(z, 0.0, truncation_cutoff=3)
    assert torch.allclose(cut[:, 3:], full[:, 3:]) and torch.allclose(cut[:, :3], zero[:, :3])


def test_noise_modes(G):
    ws = G.mapping(torch.randn(2, 16))
    const1, const2 = G.synthesis(ws, "const"), G.synthesis(ws, "const")
    assert torch.equal(const1, const2)
    none = G.synthesis(ws, "none")
    assert (none - const1).abs().max() > 1e-3
    r1 = G.synthesis(ws, "random", generator=torch.Generator().manual_seed(1))
    r2 = G.synthesis(ws, "random", generator=torch.Generator().manual_seed(1))
    r3 = G.synthesis(ws, "random", generator=torch.Generator().manual_seed(2))
    assert torch.equal(r1, r2) and (r1 - r3).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, "fixed")


def test_fused_equals_batched_path(G):
    ws = torch.randn(3, G.num_ws, G.w_dim)
    a, b = G.synthesis(ws, fused=False), G.synthesis(ws, fused=True)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_batch_independence(G):
    ws = torch.randn(4, G.num_ws, G.w_dim)
    whole = G.synthesis(ws)
    single = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(4)])
    assert torch.allclose(whole, single, atol=1e-5)


def test_layouts_give_the_same_frames(G):
    """`memory_format` "nhwc" changes the activations' layout (convs see channels_last), not the frames."""
    ws = torch.randn(3, G.num_ws, G.w_dim)
    seen = []
    hook = G.synthesis_net.layers[1].register_forward_hook(
        lambda mod, args, out: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        with torch.no_grad():
            a = G.synthesis(ws)
            G.synthesis_net.memory_format = "nhwc"
            b = G.synthesis(ws)
            G.synthesis_net.memory_format = "sideways"
            with pytest.raises(ValueError, match="memory_format must be 'nchw' or 'nhwc', got 'sideways'"):
                G.synthesis(ws)
    finally:
        G.synthesis_net.memory_format = "nchw"
        hook.remove()
    assert seen == [False, True]
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_upsampling_formulations_give_the_same_frames(G):
    """`upconv` changes how the 2x layers are computed (`ops.UPCONVS`), not the frames."""
    ws = torch.randn(3, G.num_ws, G.w_dim)
    frames = {}
    try:
        with torch.no_grad():
            for upconv in ops.UPCONVS:
                G.synthesis_net.upconv = upconv
                frames[upconv] = G.synthesis(ws)
            G.synthesis_net.upconv = "sideways"
            with pytest.raises(ValueError, match="upconv must be one of"):
                G.synthesis(ws)
    finally:
        G.synthesis_net.upconv = None
    for upconv in ops.UPCONVS:
        torch.testing.assert_close(frames[upconv], frames["transpose"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("upconv", ops.UPCONVS)
def test_the_compiler_traces_synthesis_as_one_graph(G, upconv):
    """No graph break under `torch.compile` (a break splits the network and keeps elementwise passes unfused)."""
    import torch._dynamo

    ws = torch.randn(2, G.num_ws, G.w_dim)
    torch._dynamo.reset()
    G.synthesis_net.upconv = upconv
    try:
        with torch.no_grad():
            ex = torch._dynamo.explain(G.synthesis)(ws)
    finally:
        G.synthesis_net.upconv = None
        torch._dynamo.reset()
    assert (ex.graph_count, ex.graph_break_count) == (1, 0), [b.reason[:200] for b in ex.break_reasons]


def test_bad_shapes(G):
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 8, 16\]"):
        G.synthesis(torch.randn(2, 7, 16))
    with pytest.raises(ValueError, match=r"z must have shape \[N, 16\]"):
        G.mapping(torch.randn(2, 15))


def test_compute_w_avg_is_deterministic():
    g = Generator(GeneratorConfig.tiny(16))
    a = g.compute_w_avg(n=500).clone()
    b = g.compute_w_avg(n=500)
    assert torch.equal(a, b) and g.w_avg_source.startswith("computed")


def _psnr(a, b):
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


@pytest.fixture(scope="module")
def cuda_config_f():
    """The 1024² config-f generator with random weights of the real sizes and non-trivial biases/noise, and
    its reference frames: per-sample grouped (fused) convolutions in fp32 without cuDNN or TF32."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=1024))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
            elif name.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
        G.compute_w_avg(1000)
    G = G.eval().requires_grad_(False).cuda()
    ws = G.mapping(torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(1)).cuda(), 0.7)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=False):
        ref = torch.cat([G.synthesis(ws[i:i + 1], fused=True) for i in range(64)])
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return G, ws, ref


# batched frames vs the reference, by precision: fp32 must be the reference's frame to rounding
_BARS = {"fp32": 100.0, "tf32": 45.0, "bf16": 38.0}


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["fp32", "tf32", "bf16", "bf16-compiled", "fp32-compiled", "fp32-nhwc",
                                  "bf16-nhwc-compiled", "fp32-phases", "bf16-phases-compiled"])
def test_cuda_batched_frames_are_the_reference_frames(cuda_config_f, mode):
    """Found on an H200 (cuDNN 9.19): batched fp32 frames at batch 8/16/32/64 were 30.8 dB from the
    reference (max abs 2.1) while batch 1/2/4/12 were right."""
    G, ws, ref = cuda_config_f
    precision = mode.split("-")[0]
    synth = torch.compile(G.synthesis, dynamic=False) if mode.endswith("compiled") else G.synthesis
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    G.synthesis_net.memory_format = "nhwc" if "nhwc" in mode else "nchw"
    G.synthesis_net.upconv = "phases" if "phases" in mode else None
    try:
        batches = (8, 64) if mode.endswith("compiled") else (1, 2, 4, 8, 12, 16, 24, 32, 64)
        for b in batches:
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=precision == "bf16"):
                out = torch.cat([synth(chunk) for chunk in ws.split(b)])
            psnr = _psnr(out, ref)
            assert psnr >= _BARS[precision], f"{mode} batch {b}: {psnr:.1f} dB from the reference frames"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        G.synthesis_net.memory_format = "nchw"
        G.synthesis_net.upconv = None
