"""micromotion.decompose.rpca: robust PCA (inexact ALM and the original code's variant), batched."""
from __future__ import annotations

import math

import pytest
import torch

from micromotion.decompose import _rpca, _svt, robust_pca
from micromotion.errors import InputError

from motion_helpers import _one_thread, original_rpca, synthetic_anchors  # noqa: F401  (_one_thread: autouse)


# ----------------------------------------------------------------------------------------------------------
# Robust PCA


def test_exact_recovery_200x200_rank5_sparse5():
    g = torch.Generator().manual_seed(0)
    n, r = 200, 5
    L0 = torch.randn(n, r, generator=g, dtype=torch.float64) @ torch.randn(r, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    mask = torch.rand(n, n, generator=g) < 0.05
    S0 = mask * torch.sign(torch.randn(n, n, generator=g, dtype=torch.float64))
    L, S = robust_pca(L0 + S0)
    assert (L - L0).norm() / L0.norm() < 1e-5
    assert (S - S0).norm() / S0.norm() < 1e-5
    assert torch.linalg.matrix_rank(L, rtol=1e-6) == r


def test_stops_on_relative_residual():
    D, _ = synthetic_anchors(num_ws=3, dtype=torch.float64)
    D = D.transpose(0, 1)
    for tol in (1e-3, 1e-7):
        L, S, stats = _rpca(D, None, tol, 1000, "ialm")
        residual = torch.linalg.matrix_norm(D - L - S) / torch.linalg.matrix_norm(D)
        assert torch.allclose(residual, stats.residual)
        assert (residual < tol).all() and stats.converged.all()
        if tol == 1e-3:
            loose_iterations = stats.iterations
    assert (stats.iterations > loose_iterations).all()


@pytest.mark.parametrize("variant", ["ialm", "paper"])
def test_batched_equals_per_matrix(variant):
    g = torch.Generator().manual_seed(1)
    # different scales and outlier rates, so the matrices converge after different numbers of iterations
    D = torch.randn(5, 12, 64, generator=g, dtype=torch.float64) * torch.tensor([0.1, 1, 3, 10, 1.0], dtype=torch.float64)[:, None, None]
    D = D + (torch.rand(5, 12, 64, generator=g) < torch.linspace(0.0, 0.2, 5)[:, None, None]) * 8
    L, S, stats = _rpca(D, None, 1e-7, 1000, variant)
    assert len(set(stats.iterations.tolist())) > 1
    for i in range(D.shape[0]):
        Li, Si = robust_pca(D[i], variant=variant)
        torch.testing.assert_close(L[i], Li, rtol=0, atol=1e-9 * D[i].abs().max().item())
        torch.testing.assert_close(S[i], Si, rtol=0, atol=1e-9 * D[i].abs().max().item())


def test_any_leading_dims():
    D = torch.randn(2, 3, 12, 20, generator=torch.Generator().manual_seed(2))
    L, S = robust_pca(D)
    assert L.shape == S.shape == D.shape
    torch.testing.assert_close(L[1, 2], robust_pca(D[1, 2])[0], atol=1e-5, rtol=0)


def test_paper_variant_equals_transcription_of_original():
    anchors, _ = synthetic_anchors(num_ws=3, w_dim=64, noise=0.1, dtype=torch.float64, seed=3)
    D = anchors.transpose(0, 1).contiguous()
    L, S = robust_pca(D, variant="paper")
    for layer in range(D.shape[0]):
        L_ref, S_ref = original_rpca(D[layer])
        torch.testing.assert_close(L[layer], L_ref, rtol=0, atol=1e-9)
        torch.testing.assert_close(S[layer], S_ref, rtol=0, atol=1e-9)
    # and it is a different algorithm from the default: stopping far earlier, far less accurately
    _, _, paper = _rpca(D, None, 1e-7, 1000, "paper")
    _, _, ialm = _rpca(D, None, 1e-7, 1000, "ialm")
    assert (paper.residual > 100 * ialm.residual).all()


def test_default_lambda_is_one_over_sqrt_max_dim():
    D = torch.randn(12, 80, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(robust_pca(D)[0], robust_pca(D, lam=1 / math.sqrt(80))[0], rtol=0, atol=0)
    assert not torch.allclose(robust_pca(D)[0], robust_pca(D, lam=0.5)[0])


@pytest.mark.parametrize("shape", [(3, 12, 40), (3, 40, 12), (2, 30, 30)])
def test_gram_svt_matches_svd(shape):
    M = torch.randn(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    tau = torch.tensor([[0.5], [2.0], [4.0]], dtype=torch.float64)[: shape[0]]
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    ref = U @ torch.diag_embed((s - tau).clamp_min(0)) @ Vh
    torch.testing.assert_close(_svt(M, tau), ref, rtol=0, atol=1e-10)


def test_dtype_and_zero_matrix():
    D = torch.randn(4, 12, 30, generator=torch.Generator().manual_seed(6))
    D[2] = 0
    L, S = robust_pca(D)
    assert L.dtype == S.dtype == torch.float32
    assert torch.isfinite(L).all() and torch.isfinite(S).all()
    assert (L[2] == 0).all() and (S[2] == 0).all()
    torch.testing.assert_close(L + S, D, atol=1e-5, rtol=0)


@pytest.mark.parametrize("D, message", [
    (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or inf"),
    (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), "NaN or inf"),
    (torch.ones(5), "shape [..., m, n]"),
    (torch.ones(3, 0), "shape [..., m, n]"),
    (torch.ones(3, 3, dtype=torch.long), "floating-point"),
    ([[1.0, 2.0]], "torch tensor"),
])
def test_robust_pca_rejects_bad_input(D, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        robust_pca(D)


def test_robust_pca_rejects_bad_settings():
    D = torch.randn(4, 6)
    with pytest.raises(InputError, match="unknown robust PCA variant 'fast'; choose one of: ialm, paper"):
        robust_pca(D, variant="fast")
    with pytest.raises(InputError, match="tol must be a positive number"):
        robust_pca(D, tol=0)
    with pytest.raises(InputError, match="max_iter must be a positive integer"):
        robust_pca(D, max_iter=0)
    with pytest.raises(InputError, match="lam must be a positive number"):
        robust_pca(D, lam=-1)


def test_warns_when_not_converged(caplog):
    D = torch.randn(3, 12, 40, generator=torch.Generator().manual_seed(7))
    with caplog.at_level("WARNING", logger="micromotion.decompose"):
        robust_pca(D, max_iter=2)
    assert "3 of 3 matrices did not converge in 2 iterations" in caplog.text
