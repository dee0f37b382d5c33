"""Pure-PyTorch StyleGAN2 ops: FIR up/down-sampling (upfirdn2d), bias + activation, modulated convolution.

These are the reference implementations; they run on any device and dtype and never compile anything.
They follow NVIDIA's `torch_utils/ops` semantics (stylegan2-ada-pytorch), which rosinality's `op/`
implements identically for the filters StyleGAN2 uses.

The dense convolutions of the batched path go through `conv2d` / `conv_transpose2d` below, which on CUDA
check cuDNN once per shape against PyTorch's own (cuDNN-free) kernels and use those where cuDNN is wrong:
cuDNN 9.19 on an H200 returns a 512 -> 1024-channel 3x3 fp32 conv at 64x64 off by up to 7 for batches of
8, 16, 32 and 64 (right for 1, 2, 4 and 12), which rendered visibly wrong 1024² frames.
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SQRT2 = math.sqrt(2.0)

# (op, device, dtype, shapes, stride/padding, TF32 flag, layout) -> whether cuDNN agreed with the reference
_CUDNN_VERDICT: dict[tuple, bool] = {}


def _no_cudnn():
    c = torch.backends.cudnn
    return c.flags(enabled=False, benchmark=c.benchmark, deterministic=c.deterministic, allow_tf32=c.allow_tf32)


def _agrees(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """cuDNN's answer vs the reference kernel's, relative to the output's scale. The two differ only in
    summation order (fp32: ~1e-6 of scale; TF32/bf16: ~1e-2); the failures seen are of order 1."""
    scale = ref.float().square().mean().sqrt().item() + 1e-12
    # the reference (cuDNN off) runs on cuBLAS, whose TF32 is the matmul flag
    exact = not (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    tol = 1e-3 if out.dtype == torch.float32 and exact else 0.1
    err = (out.float() - ref.float()).abs().max().item() / scale
    return math.isfinite(err) and err <= tol


def _verified(op: str, fn, x: torch.Tensor, weight: torch.Tensor, arg: int, check: bool | None = None) -> torch.Tensor:
    """Run `fn` (a convolution), on CUDA (or where `check`) checked once per shape against the cuDNN-free
    kernel; a shape where the two disagree runs without cuDNN from then on."""
    if not ((x.is_cuda if check is None else check) and torch.backends.cudnn.enabled):
        return fn(x, weight, arg)
    key = (op, x.device, x.dtype, tuple(x.shape), tuple(weight.shape), arg, torch.backends.cudnn.allow_tf32,
           x.is_contiguous(memory_format=torch.channels_last))
    ok = _CUDNN_VERDICT.get(key)
    # PyTorch's own kernels index with 32 bits: run them on chunks of the batch small enough for that
    chunk = max(1, (2 ** 31 - 1) // max(x[:1].numel() * 16, 1))
    if ok is None:
        out = fn(x, weight, arg)
        with _no_cudnn():  # the reference on the first samples of cuDNN's full-batch answer
            ref = fn(x[:chunk], weight, arg)
        ok = _CUDNN_VERDICT[key] = _agrees(out[:chunk], ref)
        if ok:
            return out
        log.warning("cuDNN %s gives wrong results for input %s, weight %s (%s, %s); using PyTorch's own "
                    "kernel for this shape", op, list(x.shape), list(weight.shape), x.dtype,
                    torch.backends.cudnn.version())
        if x.shape[0] <= chunk:
            return ref
    if ok:
        return fn(x, weight, arg)
    with _no_cudnn():
        return torch.cat([fn(c, weight, arg) for c in x.split(chunk)]) if x.shape[0] > chunk else fn(x, weight, arg)


def _conv2d(x, weight, padding, bias=None, groups=1):
    return F.conv2d(x, weight, bias, padding=padding, groups=groups)


def _conv_transpose2d(x, weight, stride):
    return F.conv_transpose2d(x, weight, stride=stride)


def _checked_conv2d(x, weight, bias, padding, groups):
    return _verified(f"conv2d/g{groups}", lambda x_, w_, p_: _conv2d(x_, w_, p_, bias, groups), x, weight, padding)


@torch.library.custom_op("micromotion::verified_conv2d", mutates_args=())
def _verified_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                     groups: int) -> torch.Tensor:
    return _checked_conv2d(x, weight, bias, padding, groups)


@_verified_conv2d.register_fake
def _(x, weight, bias, padding, groups):
    return _conv2d(x, weight, padding, bias, groups)


@torch.library.custom_op("micromotion::verified_conv_transpose2d", mutates_args=())
def _verified_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    return _verified("conv_transpose2d", _conv_transpose2d, x, weight, stride)


@_verified_conv_transpose2d.register_fake
def _(x, weight, stride):
    return _conv_transpose2d(x, weight, stride)


def _needs_grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def _autocast_inputs(*ts):
    """Cast to the CUDA autocast dtype here, as F.conv2d would, so the custom op sees what runs inside it."""
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        return tuple(t if t is None else t.to(dtype) for t in ts)
    return ts


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0,
           groups: int = 1) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=padding, groups=groups)`; on CUDA, cuDNN is checked once per shape
    (see the module docstring). A custom op, so `torch.compile` keeps the check instead of calling cuDNN
    directly; except for compiled bf16/fp16, where the opaque op costs a fifth of the frame rate (inductor no
    longer picks the conv layout) and cuDNN was right for every generator shape: there the GPU tests are the
    check."""
    if x.is_cuda:
        x, weight, bias = _autocast_inputs(x, weight, bias)
        if x.dtype != torch.float32 and torch.compiler.is_compiling():
            return _conv2d(x, weight, padding, bias, groups)
        if _needs_grad(x, weight, bias):  # the same check, in Python, so autograd runs through the chosen kernel
            return _checked_conv2d(x, weight, bias, padding, groups)
        return _verified_conv2d(x, weight, bias, padding, groups)
    return _conv2d(x, weight, padding, bias, groups)


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """`F.conv_transpose2d(x, weight, stride=stride)`, checked on CUDA like `conv2d`."""
    if x.is_cuda:
        x, weight = _autocast_inputs(x, weight)
        if x.dtype != torch.float32 and torch.compiler.is_compiling():
            return _conv_transpose2d(x, weight, stride)
        if _needs_grad(x, weight):
            return _verified("conv_transpose2d", _conv_transpose2d, x, weight, stride)
        return _verified_conv_transpose2d(x, weight, stride)
    return _conv_transpose2d(x, weight, stride)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR filter as a normalized 2-D kernel, like `upfirdn2d.setup_filter`."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero-stuffing), pad, FIR-filter and downsample a batch of images.

    x: [N, C, H, W]; f: [fh, fw] (symmetric filters assumed, as in StyleGAN2); pad = (x0, x1, y0, y1).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(dtype=x.dtype, device=x.device).flip([0, 1])
    # a dense copy, not an expand: the depthwise conv (and its backward) then never sees a stride-0 weight
    weight = f[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample by `up` with the FIR filter `f` (output exactly `up` times larger)."""
    fw = f.shape[-1]
    p = ((fw + up - 1) // 2, (fw - up) // 2)
    return upfirdn2d(x, f, up=up, pad=(p[0], p[1], p[0], p[1]), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Downsample by `down` with the FIR filter `f`."""
    fw = f.shape[-1]
    p = ((fw - down + 1) // 2, (fw - down) // 2)
    return upfirdn2d(x, f, down=down, pad=(p[0], p[1], p[0], p[1]))


def bias_lrelu(x: torch.Tensor, bias: torch.Tensor | None, gain: float = SQRT2,
               clamp: float | None = None, alpha: float = 0.2) -> torch.Tensor:
    """Add a per-channel bias, leaky ReLU (slope 0.2), scale by `gain`, optionally clamp to ±clamp."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.to(x.dtype).reshape(shape)
    x = F.leaky_relu(x, alpha) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def polyphase_upconv_weight(weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """[O, I, 3, 3] weight + 4x4 filter -> [4*O, I, 3, 3]: the 2x-upsampling conv as 4 output phases.

    A stride-2 transposed 3x3 conv followed by the 4x4 FIR (gain 4) equals one transposed 6x6 conv with
    kernel w (*) f; its four phases are ordinary 3x3 convs, so the whole layer becomes one dense conv plus
    `pixel_shuffle(2)`: no zero-stuffed tensor, no depthwise filter pass.
    """
    o, i, kh, kw = weight.shape
    if (kh, kw) != (3, 3) or f.shape != (4, 4):
        raise ValueError("polyphase upsampling supports 3x3 kernels with a 4x4 filter")
    k6 = F.conv_transpose2d(weight.reshape(o * i, 1, 3, 3), (f * 4).to(weight)[None, None])  # [O*I, 1, 6, 6]
    k6 = k6.reshape(o, i, 3, 2, 3, 2).flip(2, 4)  # [O, I, t, a, s, b]
    return k6.permute(0, 3, 5, 1, 2, 4).reshape(o * 4, i, 3, 3)


def phase_upconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """[O, I, 3, 3] weight -> [4*O, I, 2, 2]: the stride-2 transposed 3x3 conv (no filter) as 4 output phases.

    Output row 2m is x[m]·w[0] + x[m-1]·w[2] and row 2m+1 is x[m]·w[1] (columns alike), so on the input
    padded by 1 each phase is a 2x2 conv (9 of its 16 taps non-zero) and `pixel_shuffle(2)` interleaves them:
    [N, O, 2H+2, 2W+2], whose first 2H+1 rows and columns are `conv_transpose2d(x, w.transpose(0, 1), 2)`.
    """
    o, i, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ValueError("phase upsampling supports 3x3 kernels")
    # with a zero row/column in front (index 0; weight tap t at t + 1), phase a's kernel rows (x[m-1], x[m])
    # are taps (2, 0) for a = 0 and (none, 1) for a = 1: indices (3, 1) and (0, 2), by slicing (no index tensor)
    wp = F.pad(weight, (1, 0, 1, 0))  # [O, I, 4, 4]
    rows = torch.stack([wp.flip(2)[:, :, ::2], wp[:, :, ::2]], 2)  # [O, I, a, row, 4]
    wp = torch.stack([rows.flip(4)[..., ::2], rows[..., ::2]], 4)  # [O, I, a, row, b, column]
    return wp.permute(0, 2, 4, 1, 3, 5).reshape(4 * o, i, 2, 2)


def fir_separable(x: torch.Tensor, taps: torch.Tensor, pad: tuple[int, int, int, int], gain: float = 1.0) -> torch.Tensor:
    """`upfirdn2d(x, outer(taps, taps), pad=pad, gain=gain)` (no up/down-sampling) as sums of shifted slices.

    `taps` [k]: the 1-D filter (for `setup_filter`'s 2-D filter f, `f.sum(0)`). Eager this is slower than the
    depthwise conv; `torch.compile` fuses it with the elementwise ops around it into one pass.
    """
    taps = (taps * math.sqrt(gain)).flip(0).to(x.dtype)  # a tensor, not floats: traceable by the compiler
    px0, px1, py0, py1 = pad
    x = F.pad(x, [px0, px1, py0, py1])
    k = taps.shape[0]
    h, w = x.shape[2] - k + 1, x.shape[3] - k + 1
    x = sum(t * x[:, :, j:j + h] for j, t in enumerate(taps))
    return sum(t * x[:, :, :, j:j + w] for j, t in enumerate(taps))


#: How `modulated_conv2d` runs a 2x-upsampling 3x3 layer of the batched path (`upconv=None` picks per device):
#: "transpose" - stride-2 transposed conv, then the FIR (`upfirdn2d`): the fewest multiply-adds (CPU default);
#: "polyphase" - one dense 3x3 conv to 4 phases with the FIR folded in, then `pixel_shuffle` (CUDA default):
#:               4x the multiply-adds of "transpose", on tensor cores, no filter pass;
#: "phases"    - the transposed conv as one dense 2x2 conv to 4 phases (16/9 of "transpose"'s multiply-adds),
#:               `pixel_shuffle`, then the FIR as shifted sums (`fir_separable`), which `torch.compile` can fuse.
UPCONVS = ("transpose", "polyphase", "phases")


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     up: int = 1, resample_filter: torch.Tensor | None = None, fused: bool = False,
                     upconv: str | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I]. With `up=2` the result is [N, O, 2H, 2W]:
    a stride-2 transposed convolution followed by the FIR filter, as both reference implementations do.
    `fused=True` folds the styles into per-sample weights and runs one grouped convolution (the
    reference path); `fused=False` scales activations before and after one shared-weight convolution,
    which is the same arithmetic and much faster for large batches. `upconv` picks how the batched path
    upsamples (`UPCONVS`; None: "polyphase" on CUDA, where it beat the transposed conv + filter, and
    "transpose" on CPUs, which are compute-bound).
    """
    if upconv is None:
        upconv = "polyphase" if x.is_cuda else "transpose"
    elif upconv not in UPCONVS:
        raise ValueError(f"upconv must be one of {', '.join(UPCONVS)}, got {upconv!r}")
    n, i_ch, h, w_ = x.shape
    o_ch, _, kh, kw = weight.shape
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    dcoefs, zero_tail = None, 0
    if demodulate:
        wsq = weight.float().square().sum(dim=[2, 3])  # [O, I]
        dcoefs = (styles.float().square() @ wsq.t() + 1e-8).rsqrt().to(x.dtype)  # [N, O]
    if fused:
        w = weight[None] * styles[:, None, :, None, None]
        if dcoefs is not None:
            w = w * dcoefs[:, :, None, None, None]
        x = x.reshape(1, n * i_ch, h, w_)
        if up > 1:
            w = w.transpose(1, 2).reshape(n * i_ch, o_ch, kh, kw)
            x = F.conv_transpose2d(x, w, stride=up, groups=n)
        else:
            x = F.conv2d(x, w.reshape(n * o_ch, i_ch, kh, kw), padding=kh // 2, groups=n)
        x = x.reshape(n, o_ch, *x.shape[2:])
    else:
        x = x * styles[:, :, None, None]
        if up == 2 and kh == 3 and upconv == "polyphase":
            x = F.pixel_shuffle(conv2d(x, polyphase_upconv_weight(weight, resample_filter), padding=1), 2)
            up = 1  # filtering done
        elif up == 2 and kh == 3 and upconv == "phases":
            # the transposed conv's 2H+1 rows and columns, and one of zeros after them
            x = F.pixel_shuffle(conv2d(x, phase_upconv_weight(weight), padding=1), 2)
            zero_tail = 1
        elif up > 1:
            x = conv_transpose2d(x, weight.transpose(0, 1).contiguous(), stride=up)  # dense, as `repeat` above
        else:
            x = conv2d(x, weight, padding=kh // 2)
        if dcoefs is not None:
            x = x * dcoefs[:, :, None, None]
    if up > 1:
        # transposed conv output is (up*H + k - up); the filter (with gain up^2) trims it to up*H
        fw = resample_filter.shape[-1]
        p0 = (fw + up - 1) // 2 + kh // 2 - (kw - 1)
        p1 = (fw - up) // 2 + kh // 2 - (kw - up)
        if zero_tail:  # "phases": the FIR as fusable shifted sums, its end pad shortened by the zero row
            p1 -= zero_tail
            x = fir_separable(x, resample_filter.sum(0), (p0, p1, p0, p1), gain=up * up)
        else:
            x = upfirdn2d(x, resample_filter, pad=(p0, p1, p0, p1), gain=up * up)
    return x
