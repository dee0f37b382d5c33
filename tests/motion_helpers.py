"""Shared by the decompose and motion-CLI tests: synthetic anchors, tiny generators, a transcription of the
original code's robust PCA, and the authors' file layout (a torch file saved on cuda:0)."""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import pytest
import torch

from micromotion.models.stylegan2 import Generator, GeneratorConfig



@pytest.fixture
def paper_directions(reference_dir) -> Path:
    """The authors' published directions in the reference data; skip when absent (never copied here)."""
    path = reference_dir / "paper_directions"
    if not path.is_dir():
        pytest.skip(f"reference data folder {path} is absent")
    return path


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: on a busy 2-core runner, intra-op threads only contend (6 s vs 25 s here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------------
# Helpers: data and a transcription of the original code


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def synthetic_anchors(K=12, num_ws=4, w_dim=512, amp=3.0, noise=0.02, outliers=0.05, outlier_mag=5.0, seed=0,
                      dtype=torch.float32):
    """Anchors = base + t·direction + dense noise + sparse outliers; returns (anchors, true per-layer direction)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, K, dtype=torch.float64)[:, None, None]
    base = torch.randn(num_ws, w_dim, generator=g, dtype=torch.float64)
    direction = torch.nn.functional.normalize(torch.randn(num_ws, w_dim, generator=g, dtype=torch.float64), dim=-1) * amp
    dense = noise * torch.randn(K, num_ws, w_dim, generator=g, dtype=torch.float64)
    mask = torch.rand(K, num_ws, w_dim, generator=g) < outliers
    sparse = mask * outlier_mag * torch.randn(K, num_ws, w_dim, generator=g, dtype=torch.float64)
    return (base + t * direction + dense + sparse).to(dtype), direction.to(dtype)


def original_rpca(D: torch.Tensor, max_iter: int = 1000):
    """The original `RPCA_gpu(D).fit()` (StyleCLIP/optimization/pca.py), restated for one matrix.

    μ = mn/(4·Σd²) fixed; L ← SVT(D − S + Y/μ, 1/μ); S ← shrink(D − L + Y/μ, λ/μ); Y ← Y + μ(D − L − S);
    stop once Σ(D−L−S)²/Σd² ≤ 1e-7·Σd².
    """
    def shrink(M, tau):
        return torch.sign(M) * torch.relu(M.abs() - tau)

    sq = D.pow(2).sum()
    mu = D.numel() / (4 * sq.item())
    lam = 1 / math.sqrt(max(D.shape))
    L, S, Y = torch.zeros_like(D), torch.zeros_like(D), torch.zeros_like(D)
    err, i = math.inf, 0
    while err > 1e-7 * sq and i < max_iter:
        U, s, V = torch.svd(D - S + Y / mu, some=True)
        L = U @ torch.diag(shrink(s, 1 / mu)) @ V.t()
        S = shrink(D - L + Y / mu, lam / mu)
        Y = Y + mu * (D - L - S)
        err = (D - L - S).pow(2).sum() / sq
        i += 1
    return L, S


def original_lowrank_anchors(anchors: torch.Tensor, seed: int) -> torch.Tensor:
    """The original `get_pca_latent`: per layer RPCA, then `pca_lowrank(q=4, center=False)` rebuilt as U·S·Vᵀ."""
    torch.manual_seed(seed)
    out = torch.zeros_like(anchors)
    for layer in range(anchors.shape[1]):
        L, _ = original_rpca(anchors[:, layer])
        U, s, V = torch.pca_lowrank(L, q=4, center=False)
        out[:, layer] = U @ torch.diag(s) @ V.t()
    return out


def tiny_generator(seed: int, name: str | None = None) -> Generator:
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig.tiny()).eval()
    if name:
        G.name = name
    return G


def torch_file_on_cuda(tensor: torch.Tensor, path: Path) -> Path:
    """Write `tensor` as torch.save would on cuda:0 (storage location 'cuda:0'), without needing a GPU."""
    buf = io.BytesIO()
    torch.save(tensor, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert data.count(b"X\x03\x00\x00\x00cpu") == 1
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            out.writestr(info.filename, data)
    return path
