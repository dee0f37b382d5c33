"""Benchmark robust PCA on one anchor stack: 18 W+ layers x 12 anchors x 512 (issue 4).

Compares, on the CPU and on CUDA when there is one:
  ialm batched      `robust_pca(D)`: all 18 layers in one call (the default solver)
  paper batched     `robust_pca(D, variant="paper")`
  paper per layer   18 calls of `robust_pca(D[l], variant="paper")`: the original code's structure
  original          a transcription of the original `RPCA_gpu` loop (torch.svd, float32, per layer)

Prints a markdown table (device, date, median milliseconds) for benchmarks/RESULTS.md.
Run: python benchmarks/bench_decompose.py [--repeats 5] [--device cpu|cuda|all] [--threads N]
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    from micromotion.decompose import robust_pca
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from micromotion.decompose import robust_pca

LAYERS, ANCHORS, W_DIM = 18, 12, 512


def anchor_stack(seed: int = 0) -> torch.Tensor:
    """[18, 12, 512] per-layer anchor matrices: base + t·direction + dense noise + 5 % sparse outliers."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, ANCHORS)[None, :, None]
    base = torch.randn(LAYERS, 1, W_DIM, generator=g)
    direction = torch.nn.functional.normalize(torch.randn(LAYERS, 1, W_DIM, generator=g), dim=-1)
    noise = 0.02 * torch.randn(LAYERS, ANCHORS, W_DIM, generator=g)
    outliers = (torch.rand(LAYERS, ANCHORS, W_DIM, generator=g) < 0.05) * 5 * torch.randn(LAYERS, ANCHORS, W_DIM, generator=g)
    return base + 3 * t * direction + noise + outliers


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device != "cpu":
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            sys.exit("no CUDA device: run with --device cpu")

    date = datetime.date.today().isoformat()
    print(f"robust PCA, {LAYERS} layers x {ANCHORS} anchors x {W_DIM}, float32 input, median ms of {args.repeats} "
          f"(torch {torch.__version__})\n")
    print("| date | device | ialm batched | paper batched | paper per layer | original (torch.svd per layer) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for device in devices:
        D = anchor_stack().to(device)
        cols = [
            timed(lambda: robust_pca(D), device, args.repeats),
            timed(lambda: robust_pca(D, variant="paper"), device, args.repeats),
            timed(lambda: [robust_pca(D[i], variant="paper") for i in range(LAYERS)], device, args.repeats),
            timed(lambda: [original_rpca(D[i]) for i in range(LAYERS)], device, args.repeats),
        ]
        print(f"| {date} | {device_name(device)} | " + " | ".join(f"{c:.1f} ms" for c in cols) + " |")


if __name__ == "__main__":
    main()
