"""Generator behaviour on tiny configs; equivalence with the reference implementations lives in
tests/test_checkpoint_equivalence.py."""
import pytest
import torch

from micromotion import Generator, GeneratorConfig
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
