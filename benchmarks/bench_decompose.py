"""Benchmark robust PCA on one anchor stack: 18 W+ layers x 12 anchors x 512 (issue 4).

Compares, on the CPU and on CUDA when there is one:
  ialm batched      `robust_pca(D)`: all 18 layers in one call (the default solver)
  ialm per layer    18 calls of `robust_pca(D[l])`
  paper batched     `robust_pca(D, variant="paper")`
  paper per layer   18 calls of `robust_pca(D[l], variant="paper")`: the original code's structure
  original          a transcription of the original `RPCA_gpu` loop (torch.svd, float32, per layer)

Prints a markdown table (device, date, median milliseconds) for benchmarks/RESULTS.md.
With --compare, prints instead how the two solvers' results differ (the numbers in docs/decompose.md).
Run: python benchmarks/bench_decompose.py [--repeats 5] [--device cpu|cuda|all] [--threads N] [--compare]
"""
from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    from micromotion.decompose import Motion, _rpca, robust_pca
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from micromotion.decompose import Motion, _rpca, robust_pca

LAYERS, ANCHORS, W_DIM = 18, 12, 512


def anchor_stack(seed: int = 0, amp: float = 3.0, noise: float = 0.02, outlier: float = 5.0):
    """Per-layer anchor matrices [18, 12, 512] = base + t·direction + dense noise + 5 % sparse outliers.

    Returns (anchors, clean anchors, direction [18, 512]); `amp` is each layer's direction norm, `noise` and
    `outlier` the standard deviations of the dense noise and of the outliers.
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, ANCHORS)[None, :, None]
    base = torch.randn(LAYERS, 1, W_DIM, generator=g)
    direction = amp * torch.nn.functional.normalize(torch.randn(LAYERS, 1, W_DIM, generator=g), dim=-1)
    dense = noise * torch.randn(LAYERS, ANCHORS, W_DIM, generator=g)
    sparse = (torch.rand(LAYERS, ANCHORS, W_DIM, generator=g) < 0.05) * outlier * torch.randn(LAYERS, ANCHORS, W_DIM, generator=g)
    clean = base + t * direction
    return clean + dense + sparse, clean, direction[:, 0]


def original_rpca(D: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
    """The original `RPCA_gpu(D).fit()` for one matrix, restated: constant μ, torch.svd, squared-ratio stop."""
    def shrink(M, tau):
        return torch.sign(M) * torch.relu(M.abs() - tau)

    S, Y, L = torch.zeros_like(D), torch.zeros_like(D), torch.zeros_like(D)
    sq = D.pow(2).sum()
    mu = D.numel() / (4 * sq.item())
    lam = 1 / max(D.shape) ** 0.5
    tol, err, i = 1e-7 * sq, float("inf"), 0
    while err > tol and i < max_iter:
        U, s, V = torch.svd(D - S + Y / mu, some=True)
        L = U @ torch.diag(shrink(s, 1 / mu)) @ V.t()
        S = shrink(D - L + Y / mu, lam / mu)
        Y = Y + mu * (D - L - S)
        err = (D - L - S).pow(2).sum() / sq
        i += 1
    return L


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median wall-clock milliseconds of `fn()` after one warm-up call."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


def compare() -> None:
    """How `variant="paper"` and the reference solver differ, on exact recovery and on anchors."""
    g = torch.Generator().manual_seed(0)
    n, r = 200, 5
    L0 = torch.randn(n, r, generator=g, dtype=torch.float64) @ torch.randn(r, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    S0 = (torch.rand(n, n, generator=g) < 0.05) * torch.sign(torch.randn(n, n, generator=g, dtype=torch.float64))
    D, clean, direction = anchor_stack()
    print("| example | variant | iterations | residual | mean rank(L) | non-zeros of S | |L-L0|/|L0| "
          "| change of L/c for D -> 10 D | mu (ialm: mu0) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for example, X, X0 in (("200x200 rank 5 + 5 % sparse", L0 + S0, L0), ("anchors 18 x 12 x 512", D.double(), clean.double())):
        m, n = X.shape[-2:]
        for variant in ("ialm", "paper"):
            L, S, stats = _rpca(X, None, 1e-7, 1000, variant)
            nonzero = (S.abs() > 1e-9 * X.abs().max()).double().mean()
            L10, _ = robust_pca(10 * X, variant=variant)
            rank = torch.linalg.matrix_rank(L, rtol=1e-6).double().mean()
            mu = (m * n) / (4 * X.square().sum((-2, -1))) if variant == "paper" else 1.25 / torch.linalg.matrix_norm(X, 2)
            print(f"| {example} | {variant} | {int(stats.iterations.max())} | {float(stats.residual.max()):.1e} | "
                  f"{float(rank):.1f} | {float(nonzero):.0%} | {float((L - X0).norm() / X0.norm()):.2g} | "
                  f"{float((L10 / 10 - L).norm() / L.norm()):.1e} | {float(mu.mean()):.3g} |")
    anchors, true = D.transpose(0, 1), direction
    print("\n| direction | cosine to the true one | norm / true norm |\n| --- | ---: | ---: |")
    print(f"| raw endpoint difference | {cosine(anchors[-1] - anchors[0], true):.3f} | "
          f"{float((anchors[-1] - anchors[0]).norm() / true.norm()):.2f} |")
    for variant, kind, seed in (("ialm", "endpoints", 0), ("ialm", "principal", 0), ("paper", "endpoints", 0),
                                ("paper", "endpoints", 1), ("paper", "endpoints", 2)):
        m = Motion.from_anchors(anchors, variant=variant, direction=kind, seed=seed)
        label = f"{variant}, {kind}" + (f", seed {seed}" if variant == "paper" else "")
        print(f"| {label} | {cosine(m.direction, true):.3f} | {float(m.direction.norm() / true.norm()):.2f} |")
        if variant == "ialm" and kind == "endpoints":
            short = m.anchor_offsets()[-2]
            print(f"| ialm, L[K-2] - L[0] (the original's off-by-one) | {cosine(short, true):.3f} | "
                  f"{float(short.norm() / true.norm()):.2f} |")
    print("\n| direction norm | noise | outliers | raw | ialm | paper |\n| ---: | ---: | ---: | ---: | ---: | ---: |")
    for amp, noise, outlier in ((1, 0.0, 5), (3, 0.02, 5), (3, 0.1, 5), (10, 0.02, 5), (10, 0.1, 1)):
        Dr, _, true = anchor_stack(seed=5, amp=amp, noise=noise, outlier=outlier)
        a = Dr.transpose(0, 1)
        print(f"| {amp} | {noise} | {outlier} | {cosine(a[-1] - a[0], true):.3f} | "
              f"{cosine(Motion.from_anchors(a).direction, true):.3f} | "
              f"{cosine(Motion.from_anchors(a, variant='paper').direction, true):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--compare", action="store_true", help="print how the two solvers' results differ instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare:
        compare()
        return
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device != "cpu":
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            sys.exit("no CUDA device: run with --device cpu")

    date = datetime.date.today().isoformat()
    print(f"robust PCA, {LAYERS} layers x {ANCHORS} anchors x {W_DIM}, float32 input, median ms of {args.repeats} "
          f"(torch {torch.__version__})\n")
    print("| date | device | ialm batched | ialm per layer | paper batched | paper per layer | original (torch.svd per layer) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    notes = []
    for device in devices:
        D = anchor_stack()[0].to(device)
        for variant in ("ialm", "paper"):
            _, _, stats = _rpca(D, None, 1e-7, 1000, variant)
            notes.append(f"{device.type} {variant}: {int(stats.iterations.max())} iterations at most, relative "
                         f"residual {float(stats.residual.max()):.1e} at most")
        cols = [
            timed(lambda: robust_pca(D), device, args.repeats),
            timed(lambda: [robust_pca(D[i]) for i in range(LAYERS)], device, args.repeats),
            timed(lambda: robust_pca(D, variant="paper"), device, args.repeats),
            timed(lambda: [robust_pca(D[i], variant="paper") for i in range(LAYERS)], device, args.repeats),
            timed(lambda: [original_rpca(D[i]) for i in range(LAYERS)], device, args.repeats),
        ]
        print(f"| {date} | {device_name(device)} | " + " | ".join(f"{c:.1f} ms" for c in cols) + " |")
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
