"""micromotion.decompose.rpca_triton: the fused robust-PCA kernel gives the torch loop's answer.

Two lanes, both skipped without Triton (as in CI, which installs no Triton):
- the interpreter lane runs the kernel on CPU tensors in Triton's interpreter; it runs only when asked, with
  `TRITON_INTERPRET=1` set before Triton is imported (a few minutes: the interpreter is slow);
- the gpu lane (`--runslow` on a CUDA machine) compares `_rpca`'s dispatch to the kernel with the torch loop.
Agreement asked: the same iteration counts and L, S to 1e-9 relative (float64; the two eigensolvers differ by
rounding, which the Gram matrix's squared condition number turns into ~1e-10 on L).
"""
from __future__ import annotations

import math
import os

import pytest
import torch

from micromotion.decompose import _rpca
from micromotion.decompose.rpca import _TINY

from motion_helpers import _one_thread  # noqa: F401  (autouse: one torch thread)

INTERPRET = os.environ.get("TRITON_INTERPRET", "") == "1"
interpreted = pytest.mark.skipif(not INTERPRET, reason="the kernel in Triton's interpreter: set TRITON_INTERPRET=1")


def _kernel_module():
    return pytest.importorskip("micromotion.decompose.rpca_triton", reason="Triton is not installed")


def low_rank_sparse(batch: int, m: int, n: int, rank: int = 2, seed: int = 0, zero: int | None = None):
    """[batch, m, n] float64: rank-`rank` matrices plus 5 % outliers of scale 5; matrix `zero` all zeros."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(batch, m, rank, generator=g, dtype=torch.float64) @ torch.randn(batch, rank, n, generator=g,
                                                                                     dtype=torch.float64)
    D += (torch.rand(batch, m, n, generator=g) < 0.05) * 5 * torch.randn(batch, m, n, generator=g, dtype=torch.float64)
    if zero is not None:
        D[zero] = 0
    return D


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def assert_same_solve(L, S, iterations, residual, converged, D, tol, max_iter):
    """The kernel's outcome against the torch loop's on D (CPU): iterations, convergence, L, S, residual."""
    L_ref, S_ref, ref = _rpca(D.cpu(), None, tol, max_iter, "ialm", fast=False)
    assert L.shape == S.shape == D.shape and L.dtype == S.dtype == torch.float64
    assert iterations.cpu().tolist() == ref.iterations.tolist()
    assert converged.cpu().tolist() == ref.converged.tolist()
    assert _relative(L.cpu(), L_ref) < 1e-9 and _relative(S.cpu(), S_ref) < 1e-9
    # the residual is a difference of near-equal terms: its relative agreement is coarser than L's
    torch.testing.assert_close(residual.cpu(), ref.residual, rtol=1e-3, atol=1e-14)


@interpreted
@pytest.mark.parametrize("shape, tol, max_iter, block_n", [
    ((18, 12, 512), 1e-7, 5, 512),    # the anchor stack's shape, stopped by max_iter (every matrix at 5)
    ((2, 12, 512), 1e-7, 1000, 128),  # to convergence, four column tiles
    ((3, 5, 40), 1e-7, 1000, 16),     # odd sides, a partial last tile, one matrix all zeros
    ((2, 40, 5), 1e-5, 1000, 16),     # tall: solved transposed
])
def test_interpreted_kernel_matches_torch_loop(shape, tol, max_iter, block_n):
    rpca_triton = _kernel_module()
    D = low_rank_sparse(*shape, seed=sum(shape), zero=1 if shape == (3, 5, 40) else None)
    lam = 1 / math.sqrt(max(shape[-2:]))
    L, S, iterations, residual = rpca_triton.ialm(D, lam, tol, max_iter, _TINY, block_n=block_n)
    assert_same_solve(L, S, iterations, residual, residual < tol, D, tol, max_iter)
    if shape == (3, 5, 40):
        assert iterations[1] == 0 and residual[1] == 0 and not L[1].any() and not S[1].any()
    if max_iter == 5:
        assert (iterations == 5).all() and (residual >= tol).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_matches_torch_loop(monkeypatch):
    rpca_triton = _kernel_module()
    calls = []
    ialm = rpca_triton.ialm
    monkeypatch.setattr(rpca_triton, "ialm", lambda *a, **k: calls.append(a[0].shape) or ialm(*a, **k))
    cases = [
        (low_rank_sparse(18, 12, 512, seed=1), 1e-7, 1000),
        (low_rank_sparse(18, 12, 512, seed=2).float(), 1e-7, 1000),  # float32 in, float64 solve
        (low_rank_sparse(18, 12, 512, seed=3), 1e-7, 8),               # stopped by max_iter
        (low_rank_sparse(3, 5, 40, seed=4, zero=1), 1e-7, 1000),
        (low_rank_sparse(2, 40, 5, seed=5), 1e-7, 1000),
        (low_rank_sparse(4, 16, 300, rank=3, seed=6).reshape(2, 2, 16, 300), 1e-7, 1000),
    ]
    for D, tol, max_iter in cases:
        L, S, stats = _rpca(D.cuda(), None, tol, max_iter, "ialm")
        assert L.device.type == "cuda"
        assert_same_solve(L, S, stats.iterations, stats.residual, stats.converged, D.double(), tol, max_iter)
        L_loop, S_loop, loop = _rpca(D.cuda(), None, tol, max_iter, "ialm", fast=False)  # the same on CUDA
        assert stats.iterations.tolist() == loop.iterations.tolist()
        assert _relative(L, L_loop) < 1e-9 and _relative(S, S_loop) < 1e-9
    assert len(calls) == len(cases)  # the kernel solved each case (and fast=False did not call it)
    # too wide a smaller side, or switched off: the torch loop
    _rpca(low_rank_sparse(2, 20, 30).cuda(), None, 1e-7, 1000, "ialm")
    monkeypatch.setenv("MICROMOTION_RPCA_TRITON", "0")
    _rpca(low_rank_sparse(2, 12, 30).cuda(), None, 1e-7, 1000, "ialm")
    assert len(calls) == len(cases)


def test_cpu_tensors_take_the_torch_loop():
    D = low_rank_sparse(2, 12, 30)
    for got, want in zip(_rpca(D, None, 1e-7, 1000, "ialm"), _rpca(D, None, 1e-7, 1000, "ialm", fast=False)):
        if isinstance(got, torch.Tensor):
            assert torch.equal(got, want)
        else:
            assert torch.equal(got.iterations, want.iterations) and torch.equal(got.residual, want.residual)
