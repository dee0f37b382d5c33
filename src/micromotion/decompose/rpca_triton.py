"""The inexact-ALM robust PCA of `rpca._rpca` as one Triton kernel: one program solves one matrix, start to end.

Why a kernel: an anchor stack (18 matrices of 12 × 512) costs the batched torch loop ~24 ms on an H200 for
~6 ms of GPU work. Every iteration launches ~20 small kernels, and its `torch.linalg.eigh` and the count of
active matrices wait for the host. Removing the syncs alone would not be enough: `eigh` always syncs on CUDA,
and ~35 iterations × ~20 launches stay launch-bound even in a CUDA graph, which cannot hold the per-matrix
stopping test either. Here the whole solve is one launch (grid = batch). Each program keeps the 16 × 16
Gram matrix, its eigenvectors and the scalars in registers, and streams the 12 × 512 float64 arrays (D, L,
S, Y; ~48 KB each, L1/L2-resident) in [16, BLOCK_N] column tiles, two passes per iteration:

  pass 1: T = D + Y/μ, S' = shrink(T − L, λ/μ), M = T − S', G = M·Mᵀ          (G accumulated over tiles)
  eigen:  G = V·diag(e)·Vᵀ by parallel-order (round-robin) cyclic Jacobi, in registers
  pass 2: L' = V·diag(max(1 − (1/μ)/√e, 0))·Vᵀ·M, Z = D − L' − S', Y' = Y + μ·Z, ‖Z‖_F
  then:   residual = ‖Z‖_F/‖D‖_F, μ = min(1.5 μ, μ_max), stop when residual < tol or at max_iter

These are `_rpca`'s formulas for variant "ialm", in its order, in float64, with its start (Y = D/max(‖D‖₂,
‖D‖_∞/λ), μ₀ = 1.25/‖D‖₂, ‖D‖₂ from the same Jacobi solver) and its per-matrix stop (a program simply
stops; an all-zero matrix does no iteration). Only the eigensolver differs from `torch.linalg.eigh`, so L
and S agree with the torch path to rounding (~1e-12 relative; the tests ask for 1e-9) and the iteration
counts are the same. A tall matrix is solved transposed, as `_svt` does.

Jacobi (Golub & Van Loan, Matrix Computations, §8.5: the symmetric Schur rotation and the parallel
ordering): each of the k−1 rounds of a sweep applies ⌊k/2⌋ disjoint rotations at once, A ← R·A·Rᵀ with R
= diag(c) + diag(±s)·P for the round's pairing permutation P (the "circle method"). The products are
written as broadcast-multiply-and-sum over 16 × 16 × 16 blocks: no `tl.dot`, whose float64 support varies
with the GPU and Triton version. Sweeps run until the off-diagonal part is below `JACOBI_TOL` of A's
Frobenius norm (float64 rounding is reached one sweep later, Jacobi converging quadratically), at most
`MAX_SWEEPS`. Each ALM iteration starts from the previous iteration's eigenvectors (Gᵢ changes little from
one iteration to the next), which leaves ~2 sweeps instead of ~7.

L and Y are double-buffered (iteration i reads buffer i % 2 and writes the other), so no thread overwrites
what another has yet to read, and a `debug_barrier` (a plain __syncthreads) ends each pass that writes.
Scalars in float64 (λ, tol) go through a small tensor: Triton passes Python floats as float32.

Requires Triton; `rpca._rpca` imports this module only for CUDA tensors, and falls back to the torch loop
when the import fails, the matrices are too large (`supports`) or `MICROMOTION_RPCA_TRITON=0`.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import triton
import triton.language as tl

#: the widest smaller side solved here: the Gram matrix is a 16 × 16 register block
MAX_SIDE = 16
#: columns per tile of the streamed passes; the 3-D products hold 16 × 16 × BLOCK_N float64 per program.
#: Compiled for sm_90 (Triton 3.5.1 and 3.6.0), 32 × 8 warps takes 230 registers a thread and spills
#: nothing, 16 × 4 takes 218; 64 × 8 and 32 × 4 spill. Not yet timed: bench_decompose.py --kernel-configs.
BLOCK_N = 32
NUM_WARPS = 8
#: Jacobi stops when ‖offdiag(A)‖_F ≤ JACOBI_TOL·‖A‖_F (the float64 floor of the rotations is ~1e-16)
JACOBI_TOL = 1e-14
MAX_SWEEPS = 30


def supports(shape: torch.Size) -> bool:
    """Whether matrices of `shape` [..., m, n] fit the kernel: min(m, n) ≤ MAX_SIDE and at least one matrix."""
    m, n = shape[-2:]
    return min(m, n) <= MAX_SIDE and shape.numel() > 0


@triton.jit
def _mm_nn(a, b):
    """a·b of two register blocks [I, K] · [K, J]."""
    return tl.sum(a[:, :, None] * b[None, :, :], axis=1)


@triton.jit
def _mm_nt(a, b):
    """a·bᵀ of [I, K] and [J, K]."""
    return tl.sum(a[:, None, :] * b[None, :, :], axis=2)


@triton.jit
def _mm_tn(a, b):
    """aᵀ·b of [K, I] and [K, J]."""
    return tl.sum(a[:, :, None] * b[:, None, :], axis=0)


@triton.jit
def _frobenius2(a, KP: tl.constexpr):
    """(‖offdiag(a)‖², ‖a‖²) of a square block [KP, KP]."""
    idx = tl.arange(0, KP)
    eye = idx[:, None] == idx[None, :]
    sq = a * a
    off = tl.sum(tl.sum(tl.where(eye, 0.0, sq), axis=1), axis=0)
    return off, tl.sum(tl.sum(sq, axis=1), axis=0)


@triton.jit
def _jacobi(A, V, players, tol2, max_sweeps, KP: tl.constexpr):
    """Diagonalise the symmetric block A [KP, KP] by cyclic Jacobi in parallel ordering.

    Rows/columns ≥ `players` (an even number ≥ the matrix size) are left alone. Returns (R·A·Rᵀ, V·Rᵀ) for
    the product R of all rotations: with V orthogonal and A = Vᵀ·G·V, G = V'·diag(A')·V'ᵀ.
    """
    idx = tl.arange(0, KP)
    eye = idx[:, None] == idx[None, :]
    last = players - 1
    off, tot = _frobenius2(A, KP)
    sweep = (off * 0.0).to(tl.int32)  # a tensor, also in the interpreter
    while (off > tol2 * tot) & (sweep < max_sweeps):
        d = tl.sum(tl.where(eye, A, 0.0), axis=1)
        for r in range(last):
            # the round-robin pairing of round r: r <-> last, i <-> (2r - i) mod last
            part = (2 * r - idx + 2 * last) % last
            part = tl.where(idx == r, last, part)
            part = tl.where(idx == last, r, part)
            part = tl.where(idx >= players, idx, part)
            pm = idx[None, :] == part[:, None]  # pm[i, j]: j is i's partner (symmetric: pairs)
            a = tl.sum(tl.where(pm, A, 0.0), axis=1)  # A[i, p(i)]
            d_part = tl.sum(tl.where(pm, d[None, :], 0.0), axis=1)  # A[p(i), p(i)]
            lo = idx < part
            rot = (a != 0.0) & (part != idx)
            # the symmetric Schur rotation (Golub & Van Loan, Alg. 8.5.1) of pair (p, q) = (lo, hi): the
            # smaller angle, |t| ≤ 1; both ends of the pair compute it from the same numbers
            theta = tl.where(lo, d_part - d, d - d_part) / tl.where(rot, 2.0 * a, 1.0)
            t = 1.0 / (tl.abs(theta) + tl.sqrt(theta * theta + 1.0))
            t = tl.where(rot, tl.where(theta < 0.0, -t, t), 0.0)
            c = 1.0 / tl.sqrt(t * t + 1.0)
            s = tl.where(lo, -t, t) * c  # R = diag(c) + diag(s)·Pm
            # A ← R·A·Rᵀ and V ← V·Rᵀ: rows, then columns, mixed with their partners' (the gathers as
            # 0/1 sums, no tl.dot; written out here: a helper call per round slows the interpreter)
            A = c[:, None] * A + s[:, None] * tl.sum(tl.where(pm[:, :, None], A[None, :, :], 0.0), axis=1)
            A = c[None, :] * A + s[None, :] * tl.sum(tl.where(pm[None, :, :], A[:, :, None], 0.0), axis=1)
            V = c[None, :] * V + s[None, :] * tl.sum(tl.where(pm[None, :, :], V[:, :, None], 0.0), axis=1)
            d += tl.where(lo, -t, t) * a  # Rutishauser's update of the pair's diagonal
        off, tot = _frobenius2(A, KP)
        sweep += 1
    return A, V


@triton.jit
def _ialm_kernel(X_ptr, L_ptr, Y_ptr, S_ptr, params_ptr, iters_ptr, resid_ptr,
                 batch, k, N, max_iter, max_sweeps,
                 KP: tl.constexpr, BLOCK_N: tl.constexpr):
    """One matrix per program. X, S: [batch, k, N]; L, Y: [2, batch, k, N] (double buffers), L zeroed;
    params: float64 [λ, tol, tiny, Jacobi tol²]; out: iterations (int64) and residual (float64) [batch]."""
    b = tl.program_id(0).to(tl.int64)
    size = (b * 0 + k) * N  # int64 (k, N or batch may be specialised to constants)
    half = size * batch  # from one L (Y) buffer to the other
    X_ptr += b * size
    S_ptr += b * size
    L_ptr += b * size
    Y_ptr += b * size
    lam = tl.load(params_ptr)
    tol = tl.load(params_ptr + 1)
    tiny = tl.load(params_ptr + 2)
    tol2 = tl.load(params_ptr + 3)
    players = k + k % 2

    rows = tl.arange(0, KP)
    cols = tl.arange(0, BLOCK_N)
    eye = rows[:, None] == rows[None, :]
    offs = rows[:, None] * N + cols[None, :]
    row_ok = rows[:, None] < k

    # ‖X‖_F, max|X|, ‖X‖₂ (largest eigenvalue of X·Xᵀ), then Y₀ = X / max(‖X‖₂, max|X|/λ)
    acc_sq = tl.zeros([KP, BLOCK_N], dtype=tl.float64)
    acc_max = tl.zeros([KP, BLOCK_N], dtype=tl.float64)
    G = tl.zeros([KP, KP], dtype=tl.float64)
    for n0 in range(0, N, BLOCK_N):
        mask = row_ok & (n0 + cols[None, :] < N)
        x = tl.load(X_ptr + n0 + offs, mask=mask, other=0.0)
        acc_sq += x * x
        acc_max = tl.maximum(acc_max, tl.abs(x))
        G += _mm_nt(x, x)
    sq = tl.sum(tl.sum(acc_sq, axis=1), axis=0)
    max_abs = tl.max(tl.max(acc_max, axis=1), axis=0)
    W = tl.where(eye, 1.0, 0.0).to(tl.float64)
    E, W = _jacobi(G, W, players, tol2, max_sweeps, KP)
    top = tl.max(tl.sum(tl.where(eye, E, 0.0), axis=1), axis=0)
    norm_two = tl.maximum(tl.sqrt(tl.maximum(top, 0.0)), tiny)
    dual = tl.maximum(norm_two, max_abs / lam)
    for n0 in range(0, N, BLOCK_N):
        mask = row_ok & (n0 + cols[None, :] < N)
        x = tl.load(X_ptr + n0 + offs, mask=mask, other=0.0)
        tl.store(Y_ptr + n0 + offs, x / dual, mask=mask)
    tl.debug_barrier()

    mu = 1.25 / norm_two
    mu_max = mu * 1e7
    d_fro = tl.sqrt(sq)
    d_safe = tl.maximum(d_fro, tiny)
    active = d_fro > 0.0  # an all-zero matrix is already solved: L = S = 0
    residual = d_fro * 0.0
    it = b * 0  # int64 iteration count, a tensor also in the interpreter
    while active & (it < max_iter):
        src = (it % 2) * half
        dst = half - src
        mu_inv = 1.0 / mu
        tau = lam * mu_inv
        # pass 1: the Gram matrix of M = T − S' (S' = shrink(T − L, λ/μ), T = X + Y/μ)
        G = tl.zeros([KP, KP], dtype=tl.float64)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok & (n0 + cols[None, :] < N)
            x = tl.load(X_ptr + n0 + offs, mask=mask, other=0.0)
            y = tl.load(Y_ptr + src + n0 + offs, mask=mask, other=0.0)
            l = tl.load(L_ptr + src + n0 + offs, mask=mask, other=0.0)
            t = x + mu_inv * y
            r = t - l
            s_new = r - tl.minimum(tl.maximum(r, -tau), tau)
            m = t - s_new
            G += _mm_nt(m, m)
        # singular value thresholding on the row space: P = V·diag(max(1 − τ/√e, 0))·Vᵀ
        E, W = _jacobi(_mm_tn(W, _mm_nn(G, W)), W, players, tol2, max_sweeps, KP)
        e = tl.sum(tl.where(eye, E, 0.0), axis=1)
        gain = tl.maximum(1.0 - mu_inv * (1.0 / tl.sqrt(tl.maximum(e, tiny))), 0.0)
        P = _mm_nt(W * gain[None, :], W)
        # pass 2: L' = P·M, Z = X − L' − S', Y' = Y + μZ
        acc_z = tl.zeros([KP, BLOCK_N], dtype=tl.float64)
        for n0 in range(0, N, BLOCK_N):
            mask = row_ok & (n0 + cols[None, :] < N)
            x = tl.load(X_ptr + n0 + offs, mask=mask, other=0.0)
            y = tl.load(Y_ptr + src + n0 + offs, mask=mask, other=0.0)
            l = tl.load(L_ptr + src + n0 + offs, mask=mask, other=0.0)
            t = x + mu_inv * y
            r = t - l
            s_new = r - tl.minimum(tl.maximum(r, -tau), tau)
            m = t - s_new
            l_new = _mm_nn(P, m)
            z = x - l_new - s_new
            acc_z += z * z
            tl.store(L_ptr + dst + n0 + offs, l_new, mask=mask)
            tl.store(Y_ptr + dst + n0 + offs, y + mu * z, mask=mask)
            tl.store(S_ptr + n0 + offs, s_new, mask=mask)
        tl.debug_barrier()
        residual = tl.sqrt(tl.sum(tl.sum(acc_z, axis=1), axis=0)) / d_safe
        it += 1
        mu = tl.minimum(mu * 1.5, mu_max)
        active = residual >= tol
    tl.store(iters_ptr + b, it)
    tl.store(resid_ptr + b, residual)


def ialm(X: torch.Tensor, lam: float, tol: float, max_iter: int, tiny: float, block_n: int = BLOCK_N,
         num_warps: int = NUM_WARPS):
    """Inexact-ALM robust PCA of X [..., m, n] (float64, `supports(X.shape)`), one kernel launch.

    Returns (L, S, iterations [...] int64, residual [...] float64), as `rpca._rpca`'s loop computes them.
    """
    batch_shape, (m, n) = X.shape[:-2], X.shape[-2:]
    tall = m > n
    A = (X.mT if tall else X).reshape(-1, min(m, n), max(m, n)).contiguous()
    batch, k, N = A.shape
    L = torch.zeros(2, batch, k, N, dtype=A.dtype, device=A.device)
    Y = torch.empty_like(L)
    S = torch.zeros_like(A)
    iterations = torch.empty(batch, dtype=torch.long, device=A.device)
    residual = torch.empty(batch, dtype=A.dtype, device=A.device)
    params = torch.tensor([lam, tol, tiny, JACOBI_TOL ** 2], dtype=torch.float64).to(A.device)
    with torch.cuda.device(A.device) if A.is_cuda else nullcontext():
        _ialm_kernel[(batch,)](A, L, Y, S, params, iterations, residual, batch, k, N, max_iter, MAX_SWEEPS,
                               KP=MAX_SIDE, BLOCK_N=block_n, num_warps=num_warps)
    # iteration i wrote L buffer (i + 1) % 2: the result is in buffer iterations % 2
    L = torch.where((iterations % 2 == 0)[:, None, None], L[0], L[1])

    def back(t):
        t = t.reshape(*batch_shape, k, N)
        return t.mT.contiguous() if tall else t

    return back(L), back(S), iterations.reshape(batch_shape), residual.reshape(batch_shape)
