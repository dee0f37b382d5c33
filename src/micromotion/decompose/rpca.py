"""Robust PCA: split a stack of matrices into a low-rank part and sparse errors (principal component pursuit).

Principal component pursuit (Candès, Li, Ma, Wright 2011) solved by the inexact augmented Lagrange multiplier
method (Lin, Chen, Ma 2010, arXiv:1009.5055, Algorithm 5), batched over every matrix of the leading
dimensions. `variant="paper"` reproduces the solver of the original code (`StyleCLIP/optimization/pca.py` of
wuqiuche/micromotion-styleGAN) instead; docs/decompose.md lists how it differs and by how much.
`_paper_lowrank` restates the original's randomized low-rank step (`torch.pca_lowrank`) on the result.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

VARIANTS = ("ialm", "paper")

_TINY = 1e-300


def _shrink(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Soft thresholding sign(x)·max(|x| − τ, 0), the proximal map of τ‖·‖₁ (τ ≥ 0), in two passes."""
    return x - x.clamp(-tau, tau)


def _svt(M: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Singular value thresholding U·max(Σ − τ, 0)·Vᵀ of `M` [..., m, n] with τ [..., 1].

    Works on the Gram matrix of the smaller side: one batched symmetric eigensolve of [.., k, k],
    k = min(m, n), instead of an SVD of [.., m, n]. Anchor stacks are wide (12 × 512), where this is 4–8×
    faster on CPU and 70× on CUDA (whose SVD of such stacks is slow); `M` is float64 here, so squaring the
    condition number costs about 1e-9 of accuracy on the singular values that survive the threshold.
    Tests compare it with `torch.linalg.svd`.
    """
    wide = M.shape[-2] <= M.shape[-1]
    A = M if wide else M.mT
    evals, U = torch.linalg.eigh(A @ A.mT)
    # max(σ−τ, 0)/σ = max(1 − τ/σ, 0) maps A's row space onto the result; σ = 0 gives 0
    gain = (1 - tau * evals.clamp_min(_TINY).rsqrt()).clamp_min(0)
    out = ((U * gain.unsqueeze(-2)) @ U.mT) @ A
    return out if wide else out.mT


def _spectral_norm(M: torch.Tensor) -> torch.Tensor:
    """Largest singular value of each matrix of `M` [..., m, n]."""
    A = M if M.shape[-2] <= M.shape[-1] else M.mT
    return torch.linalg.eigvalsh(A @ A.mT)[..., -1].clamp_min(0).sqrt()


@dataclass
class RPCAStats:
    """How a robust-PCA solve ended, per matrix of the batch: iterations, ‖D−L−S‖_F/‖D‖_F, converged."""

    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor


def _check_matrices(D, name: str = "D") -> torch.Tensor:
    if not isinstance(D, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor [..., m, n], got {type(D).__name__}")
    if D.ndim < 2 or D.shape[-1] == 0 or D.shape[-2] == 0 or D.numel() == 0:
        raise InputError(f"{name} must have shape [..., m, n] with m, n >= 1, got {list(D.shape)}")
    if not D.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {D.dtype}")
    if not torch.isfinite(D).all():
        bad = (~torch.isfinite(D)).nonzero()[0].tolist()
        raise InputError(f"{name} contains NaN or inf (first at index {bad}); remove or repair those values first")
    return D


def _rpca(D: torch.Tensor, lam: float | None, tol: float, max_iter: int, variant: str):
    """Batched robust PCA in float64; returns (L, S, RPCAStats). See `robust_pca`."""
    if variant not in VARIANTS:
        raise InputError(f"unknown robust PCA variant '{variant}'; choose one of: {', '.join(VARIANTS)}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise InputError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (tol > 0 and math.isfinite(tol)):
        raise InputError(f"tol must be a positive number, got {tol!r}")
    m, n = D.shape[-2:]
    lam = 1.0 / math.sqrt(max(m, n)) if lam is None else float(lam)
    if not (lam > 0 and math.isfinite(lam)):
        raise InputError(f"lam must be a positive number, got {lam!r}")
    X = D.detach().to(torch.float64)
    batch = X.shape[:-2]

    def per_matrix(t: torch.Tensor) -> torch.Tensor:  # [...] -> [..., 1, 1]
        return t[..., None, None]

    sq = X.square().sum((-2, -1))
    d_fro = sq.sqrt()
    L, S = torch.zeros_like(X), torch.zeros_like(X)
    if variant == "ialm":
        norm_two = _spectral_norm(X).clamp_min(_TINY)
        dual = torch.maximum(norm_two, X.abs().amax((-2, -1)) / lam)
        Y = X / per_matrix(dual)  # a feasible dual start: ‖Y‖₂ ≤ 1 and ‖Y‖_∞ ≤ λ
        mu = 1.25 / norm_two
        mu_max, rho = mu * 1e7, 1.5
    else:
        # the original: μ = mn / (4·Σd²) held constant, stop when Σ(D−L−S)²/Σd² ≤ tol·Σd²
        Y = torch.zeros_like(X)
        mu = (m * n) / (4 * sq.clamp_min(_TINY))
        stop_at = tol * sq
    active = d_fro > 0  # an all-zero matrix is already solved: L = S = 0
    iterations = torch.zeros(batch, dtype=torch.long, device=X.device)
    residual = torch.zeros(batch, dtype=X.dtype, device=X.device)
    d_safe = d_fro.clamp_min(_TINY)
    for _ in range(max_iter):
        n_active = int(active.sum())  # the one host sync per iteration
        if n_active == 0:
            break
        mu_inv = per_matrix(1 / mu)
        T = torch.addcmul(X, mu_inv, Y)  # D + Y/μ
        if variant == "ialm":
            S_new = _shrink(T - L, lam * mu_inv)
            L_new = _svt(T - S_new, mu_inv[..., 0])
        else:
            L_new = _svt(T - S, mu_inv[..., 0])
            S_new = _shrink(T - L_new, lam * mu_inv)
        Z = X - L_new - S_new
        Y_new = torch.addcmul(Y, per_matrix(mu), Z)
        z_norm = torch.linalg.vector_norm(Z, dim=(-2, -1))
        if n_active == active.numel():
            L, S, Y = L_new, S_new, Y_new
            residual = z_norm / d_safe
            iterations += 1
            if variant == "ialm":
                mu = torch.minimum(mu * rho, mu_max)
        else:  # converged matrices are frozen, so a batch gives what separate calls give
            keep = per_matrix(active)
            L, S, Y = torch.where(keep, L_new, L), torch.where(keep, S_new, S), torch.where(keep, Y_new, Y)
            residual = torch.where(active, z_norm / d_safe, residual)
            iterations += active.long()
            if variant == "ialm":
                mu = torch.where(active, torch.minimum(mu * rho, mu_max), mu)
        if variant == "ialm":
            active = active & (residual >= tol)
        else:
            active = active & (z_norm.square() / sq.clamp_min(_TINY) > stop_at)
    converged = ~active
    if not bool(converged.all()):
        log.warning("robust_pca (%s): %d of %d matrices did not converge in %d iterations (largest relative "
                    "residual %.2e); raise max_iter or tol", variant, int((~converged).sum()),
                    converged.numel(), max_iter, float(residual.max()))
    log.debug("robust_pca (%s) on %s: %d iterations at most, residual %.2e at most", variant, list(D.shape),
              int(iterations.max()) if iterations.numel() else 0, float(residual.max()) if residual.numel() else 0.0)
    return L, S, RPCAStats(iterations, residual, converged)


@torch.no_grad()
def robust_pca(D: torch.Tensor, lam: float | None = None, tol: float = 1e-7, max_iter: int = 1000,
               variant: str = "ialm") -> tuple[torch.Tensor, torch.Tensor]:
    """Split `D` [..., m, n] into low-rank `L` and sparse `S` with D = L + S (principal component pursuit).

    Every matrix of the leading dimensions is solved at once (one batched eigensolve per iteration), on
    `D.device`, in float64; `L` and `S` come back in `D.dtype`.

    variant:
      "ialm"  inexact ALM (Lin, Chen, Ma 2010, Alg. 5): μ₀ = 1.25/‖D‖₂, ρ = 1.5; stops when
              ‖D−L−S‖_F / ‖D‖_F < tol.
      "paper" the original micromotion code's solver: constant μ = mn / (4·Σd²) and the stop
              Σ(D−L−S)² / Σd² ≤ tol·Σd² (an absolute test on a squared ratio). For comparison only.
    lam: weight of ‖S‖₁, default 1/√max(m, n).
    """
    D = _check_matrices(D)
    L, S, _ = _rpca(D, lam, tol, max_iter, variant)
    return L.to(D.dtype), S.to(D.dtype)


def _paper_lowrank(L: torch.Tensor, q: int, seed: int) -> torch.Tensor:
    """The original's `torch.pca_lowrank(L, q, center=False)` reconstruction U·diag(S)·Vᵀ, per matrix.

    Randomized subspace iteration (Halko, Martinsson, Tropp 2009, Alg. 4.4 with niter=2, then 5.1) with
    torch's conventions: wide matrices are transposed and each gets a Gaussian test matrix of
    [min side, q]. The draws come from a CPU generator seeded with `seed`, one matrix after another in
    batch order: the same numbers as `torch.manual_seed(seed)` then one `pca_lowrank` call per matrix.
    """
    m, n = L.shape[-2:]
    A = L.mT if m < n else L
    gen = torch.Generator().manual_seed(int(seed))
    count = math.prod(A.shape[:-2])
    R = torch.stack([torch.randn(A.shape[-1], q, generator=gen, dtype=A.dtype) for _ in range(count)])
    R = R.reshape(*A.shape[:-2], A.shape[-1], q).to(A.device)
    Q = torch.linalg.qr(A @ R).Q
    for _ in range(2):
        Q = torch.linalg.qr(A.mT @ Q).Q
        Q = torch.linalg.qr(A @ Q).Q
    out = Q @ (Q.mT @ A)
    return out.mT if m < n else out
