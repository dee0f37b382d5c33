"""Pure-PyTorch ops: fast paths agree with the reference paths."""
import pytest
import torch
import torch.nn.functional as F

from micromotion import ops


def _naive_upconv(x, w, f):
    """Zero-stuff x, then a full 'same' conv with w, then the FIR filter, written from the definition."""
    n, c, h, wd = x.shape
    z = torch.zeros(n, c, 2 * h, 2 * wd, dtype=x.dtype)
    z[:, :, ::2, ::2] = x
    y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # [N, O, 2H+1, 2W+1]
    return ops.upfirdn2d(y, f, pad=(1, 1, 1, 1), gain=4)


@pytest.mark.parametrize("demod", [True, False])
def test_modulated_conv_paths_agree(demod):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(5, 6, 3, 3, generator=g, dtype=torch.float64)
    s = torch.randn(3, 6, generator=g, dtype=torch.float64) + 1
    f = ops.setup_filter().double()
    for up in (1, 2):
        ref = ops.modulated_conv2d(x, w, s, demodulate=demod, up=up, resample_filter=f, fused=True)
        for upconv in ops.UPCONVS:
            out = ops.modulated_conv2d(x, w, s, demodulate=demod, up=up, resample_filter=f, upconv=upconv)
            assert out.shape == (3, 5, 8 * up, 8 * up)
            assert torch.allclose(out, ref, atol=1e-10), (up, upconv)
    with pytest.raises(ValueError, match="upconv must be one of transpose, polyphase, phases, got 'x'"):
        ops.modulated_conv2d(x, w, s, up=2, resample_filter=f, upconv="x")


def test_polyphase_matches_transpose_plus_filter():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 5, 7, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64)
    f = ops.setup_filter().double()
    ref = _naive_upconv(x, w, f)
    poly = F.pixel_shuffle(F.conv2d(x, ops.polyphase_upconv_weight(w, f), padding=1), 2)
    assert torch.allclose(poly, ref, atol=1e-12)


def test_phases_match_transpose_and_separable_fir_matches_upfirdn():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 5, 7, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64)
    ref = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # [N, O, 2H+1, 2W+1]
    ph = F.pixel_shuffle(F.conv2d(x, ops.phase_upconv_weight(w), padding=1), 2)
    assert ph.shape == (2, 3, 12, 16)
    assert torch.allclose(ph[:, :, :11, :15], ref, atol=1e-12)
    assert ph[:, :, 11].abs().max() == 0 and ph[:, :, :, 15].abs().max() == 0
    f = ops.setup_filter().double()
    for pad in ((1, 1, 1, 1), (2, 0, 1, 3), (0, 0, 0, 0)):
        torch.testing.assert_close(ops.fir_separable(ref, f.sum(0), pad, gain=4),
                                   ops.upfirdn2d(ref, f, pad=pad, gain=4))
    with pytest.raises(ValueError, match="3x3"):
        ops.phase_upconv_weight(torch.zeros(3, 4, 5, 5))


def test_upsample_and_downsample_shapes_and_dc_gain():
    f = ops.setup_filter()
    x = torch.ones(1, 2, 6, 6)
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 2, 12, 12) and down.shape == (1, 2, 3, 3)
    assert torch.allclose(up[..., 3:-3, 3:-3], torch.ones(1, 2, 6, 6), atol=1e-6)  # DC gain 1 away from borders
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, 2, 1, 1), atol=1e-6)


def test_bias_lrelu():
    x = torch.tensor([[-1.0, 2.0]]).reshape(1, 2, 1, 1)
    y = ops.bias_lrelu(x, torch.tensor([0.5, -1.0]), clamp=1.0)
    assert torch.allclose(y.flatten(), torch.tensor([-0.5 * 0.2 * 2 ** 0.5, 1.0]))


def test_verified_conv_falls_back_where_cudnn_is_wrong(caplog):
    # stand-in for a cuDNN kernel that is wrong for one shape (as cuDNN 9.19 on an H200 was for a
    # 512 -> 1024 fp32 conv at batch 8): the check must notice, return the reference, and remember it
    ops._CUDNN_VERDICT.clear()
    calls = []

    def buggy(x, w, pad):
        calls.append(torch.backends.cudnn.enabled)
        y = F.conv2d(x, w, padding=pad)
        return y + 3.0 if torch.backends.cudnn.enabled and x.shape[0] == 8 else y

    w = torch.randn(6, 4, 3, 3)
    for n in (4, 8, 8):
        x = torch.randn(n, 4, 5, 5)
        with caplog.at_level("WARNING", logger="micromotion.ops"):
            out = ops._verified("conv2d", buggy, x, w, 1, check=True)
        torch.testing.assert_close(out, F.conv2d(x, w, padding=1))
    assert calls == [True, False, True, False, False]  # batch 4: checked once; batch 8: checked, then reference
    assert caplog.text.count("cuDNN conv2d gives wrong results") == 1
    assert sorted(ops._CUDNN_VERDICT.values()) == [False, True]
    ops._CUDNN_VERDICT.clear()


def test_verified_conv_is_plain_conv_on_cpu():
    x, w = torch.randn(2, 4, 6, 6), torch.randn(5, 4, 3, 3)
    torch.testing.assert_close(ops.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1), rtol=0, atol=0)
    wt = torch.randn(4, 5, 3, 3)
    torch.testing.assert_close(ops.conv_transpose2d(x, wt, stride=2), F.conv_transpose2d(x, wt, stride=2),
                               rtol=0, atol=0)


def test_verified_conv_keeps_autograd(monkeypatch):
    # the projector and text anchors backpropagate through the generator's convs: the checked path must too
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    w = torch.randn(5, 4, 3, 3, requires_grad=True)
    ops._CUDNN_VERDICT.clear()
    for verdict in (None, True, False):  # first call (checked), known good, known bad (reference kernel)
        out = ops._verified("conv2d", lambda a, b, p: F.conv2d(a, b, padding=p), x, w, 1, check=True)
        gx, gw = torch.autograd.grad(out.square().sum(), (x, w))
        ref = F.conv2d(x, w, padding=1)
        ex, ew = torch.autograd.grad(ref.square().sum(), (x, w))
        torch.testing.assert_close(gx, ex)
        torch.testing.assert_close(gw, ew)
        if verdict is not None:
            ops._CUDNN_VERDICT[next(iter(ops._CUDNN_VERDICT))] = verdict
    ops._CUDNN_VERDICT.clear()


@pytest.mark.parametrize("fused", [False, True])
def test_convolutions_get_dense_weights_forward_and_backward(fused):
    """Every convolution of a synthesis (CPU, forward and backward) gets a dense weight: no stride-0 filter
    bank from `expand`, no transposed view (oneDNN has had crashes on unusual strides). CI's crash in such a
    backward pass (stop 29) was traced to heap damage done earlier by dlib's CNN (tests/test_align.py)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from micromotion.models.stylegan2 import Generator, GeneratorConfig

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default):
                w = args[1] if func is torch.ops.aten.convolution.default else args[2]
                seen.append((str(func), tuple(w.shape), w.stride(), w.is_contiguous()))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32)).requires_grad_(False)
    ws = G.mapping(torch.randn(2, G.z_dim), 0.7).requires_grad_(True)
    with Record():
        G.synthesis(ws, fused=fused).square().mean().backward()
    assert any("backward" in s[0] for s in seen) and len(seen) > 10
    assert all(s[3] for s in seen), [s for s in seen if not s[3]]
