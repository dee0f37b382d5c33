"""The world's oracle: a small CNN that reads the true factors back from a face image (issue 9).

It measures edits: `micromotion evaluate` reads the target and non-target factors of generated faces with
it. It is trained on fresh renders every step (the data is infinite, so there is no overfitting to guard
against), lightly augmented (noise, blur, a pixel or two of shift) so it also reads a generator's slightly
imperfect faces, and reports its mean absolute error per factor on held-out renders, as a fraction of each
factor's range. Weights are safetensors with the config and the held-out errors in the metadata.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, InputError
from ..io.files import check_state_dict, config_from_dict, read_safetensors, save_safetensors
from .faces import FACTOR_SPECS, MOTION_FACTORS, Factors, render, sample_factors

log = logging.getLogger(__name__)

FORMAT_NAME = "micromotion-world-oracle"
FORMAT_VERSION = 1

#: What the oracle reads: the five motions and the identity factors that stay observable whatever the
#: motions do (eye colour is hidden by closed eyes, hair length and style are categorical-ish, background
#: and shirt hues are cyclic and not about the face).
ORACLE_FACTORS = MOTION_FACTORS + ("face_width", "face_length", "jaw", "skin_tone", "hair_color", "eye_spacing",
                                   "nose_size", "mouth_width")

#: Default location of the trained oracle shipped with the package.
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "world" / "oracle.safetensors"


@dataclass
class OracleConfig:
    """Architecture: a strided conv stem, then stages of (3x3 stride-2 conv, 3x3 conv), each with batch norm
    and ReLU, down to 4x4; a 1x1 squeeze; two linear layers; a sigmoid per factor (scaled to its range)."""

    resolution: int = 128
    channels: tuple[int, ...] = (32, 48, 64, 96, 128)
    squeeze: int = 32
    hidden: int = 192
    factors: tuple[str, ...] = ORACLE_FACTORS

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.factors = tuple(self.factors)
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {r}")
        if r // 2 ** len(self.channels) < 1:
            raise ValueError(f"{len(self.channels)} stages reduce {r}px below one pixel")
        unknown = [k for k in self.factors if k not in FACTOR_SPECS]
        if unknown:
            raise ValueError(f"unknown factor '{unknown[0]}'; choose from: {', '.join(FACTOR_SPECS)}")

    @classmethod
    def tiny(cls) -> "OracleConfig":
        """A few-thousand-parameter oracle at 32px for tests."""
        return cls(resolution=32, channels=(4, 8, 8), squeeze=4, hidden=16)

    @property
    def final_size(self) -> int:
        return self.resolution // 2 ** len(self.channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["factors"] = list(self.channels), list(self.factors)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OracleConfig":
        return config_from_dict(cls, d, "oracle")


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Oracle(nn.Module):
    """images [N, 3, H, W] in [-1, 1] -> factors. `forward` gives [N, K] in [0, 1] (each factor normalized
    by its range, in `cfg.factors` order); `measure` gives a dict of factor values in their own units."""

    def __init__(self, cfg: OracleConfig | None = None):
        super().__init__()
        self.cfg = cfg or OracleConfig()
        ch = self.cfg.channels
        layers = [_conv_bn(3, ch[0], 2)]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [_conv_bn(cin, cout, 2), _conv_bn(cout, cout, 1)]
        self.features = nn.Sequential(*layers)
        self.squeeze = nn.Sequential(nn.Conv2d(ch[-1], self.cfg.squeeze, 1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Linear(self.cfg.squeeze * self.cfg.final_size ** 2, self.cfg.hidden),
                                  nn.ReLU(inplace=True), nn.Linear(self.cfg.hidden, len(self.cfg.factors)))
        lo = torch.tensor([FACTOR_SPECS[k].low for k in self.cfg.factors], dtype=torch.float32)
        span = torch.tensor([FACTOR_SPECS[k].span for k in self.cfg.factors], dtype=torch.float32)
        self.register_buffer("low", lo, persistent=False)
        self.register_buffer("span", span, persistent=False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check and resize images to the oracle's resolution (antialiased)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images must have shape [N, 3, H, W], got {list(images.shape)}")
        x = images.to(self.low.device, torch.float32)
        r = self.cfg.resolution
        if x.shape[-2:] != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, R, R] -> normalized logits' sigmoid [N, K] in [0, 1]."""
        x = self.squeeze(self.features(images))
        return torch.sigmoid(self.head(x.flatten(1)).float())

    @torch.no_grad()
    def measure(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Factor readings of images [N, 3, H, W] in [-1, 1]: {factor: [N] in its own units}, on the CPU."""
        was_training = self.training
        self.eval()
        try:
            out = []
            for chunk in images.split(batch_size):
                out.append(self(self.prepare(chunk)) * self.span + self.low)
            y = torch.cat(out).cpu() if out else torch.zeros(0, len(self.cfg.factors))
        finally:
            self.train(was_training)
        return {k: y[:, i] for i, k in enumerate(self.cfg.factors)}


# ----------------------------------------------------------------------------------------------------------
# Saving and loading


def save_oracle(oracle: Oracle, path: str | os.PathLike, report: dict | None = None, dtype=torch.float16) -> Path:
    """Write safetensors (weights in `dtype`; fp16 keeps the shipped file small) with config and report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
          for k, v in oracle.state_dict().items()}
    meta = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION), "config": json.dumps(oracle.cfg.to_dict()),
            "report": json.dumps(report or {})}
    return save_safetensors(sd, path, meta)


def read_oracle_report(path: str | os.PathLike = DEFAULT_PATH) -> dict:
    """The training report stored with an oracle file (held-out errors, steps, time)."""
    from safetensors.torch import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("report", "{}"))


def load_oracle(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Oracle:
    """Load an oracle file (default: the one shipped in the package), eval mode, gradients off."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        hint = ("the package ships no trained oracle; train one with `python -m micromotion.world.oracle --out "
                f"{DEFAULT_PATH}`") if path == DEFAULT_PATH else "check the path"
        raise CheckpointError(f"{path}: no such oracle file; {hint}")
    sd, meta = read_safetensors(path, FORMAT_NAME, FORMAT_VERSION, "world oracle")
    try:
        cfg = OracleConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad oracle config in metadata ({e})") from None
    model = Oracle(cfg)
    expected = model.state_dict()
    check_state_dict(expected, sd, path, "an oracle of the config in its metadata")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})
    return model.to(device).eval().requires_grad_(False)


_DEFAULT: dict[str, Oracle] = {}


def measure(images: torch.Tensor, oracle: Oracle | None = None, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Factor readings of images [N, 3, H, W] in [-1, 1] with `oracle` (default: the shipped one, cached).

    Returns {factor: tensor [N]} in each factor's own units (see `FACTOR_SPECS`), on the CPU.
    """
    if oracle is None:
        key = str(images.device)
        if key not in _DEFAULT:
            _DEFAULT[key] = load_oracle(device=images.device)
        oracle = _DEFAULT[key]
    return oracle.measure(images, batch_size)


# ----------------------------------------------------------------------------------------------------------
# Training


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light, label-preserving corruption: a shift of up to 2 px, blur on a third, noise, a contrast wobble."""
    n = images.shape[0]
    dev = images.device
    r = torch.rand(n, 6, generator=generator, device=dev)
    # integer shift by -2..2 px (replicate padding keeps edges plausible)
    pad = 2
    x = F.pad(images, [pad] * 4, mode="replicate")
    sx, sy = (r[:, 0] * 5).long(), (r[:, 1] * 5).long()
    h, w = images.shape[-2:]
    idx_y = (sy[:, None] + torch.arange(h, device=dev)[None])  # [N, h]
    idx_x = (sx[:, None] + torch.arange(w, device=dev)[None])
    x = x.gather(2, idx_y[:, None, :, None].expand(n, 3, h, x.shape[-1]))
    x = x.gather(3, idx_x[:, None, None, :].expand(n, 3, h, w))
    blur = F.avg_pool2d(F.pad(x, [1] * 4, mode="replicate"), 3, 1)
    x = torch.where((r[:, 2] < 0.33)[:, None, None, None], torch.lerp(x, blur, 0.7), x)
    x = x * (0.9 + 0.2 * r[:, 3, None, None, None]) + 0.1 * (r[:, 4, None, None, None] - 0.5)
    x = x + torch.randn(x.shape, generator=generator, device=dev) * (0.04 * r[:, 5, None, None, None])
    return x.clamp(-1, 1)


def _targets(f: Factors, names) -> torch.Tensor:
    lo = torch.tensor([FACTOR_SPECS[k].low for k in names], device=f.device)
    span = torch.tensor([FACTOR_SPECS[k].span for k in names], device=f.device)
    return (f.stack(names) - lo) / span


@torch.no_grad()
def evaluate(oracle: Oracle, n: int = 2048, seed: int = 1_000_003, batch_size: int = 256,
             device: str | torch.device | None = None) -> dict[str, float]:
    """Held-out mean absolute error per factor, as a fraction of the factor's range, on `n` fresh renders
    from `seed` (a seed training never uses)."""
    device = torch.device(device) if device is not None else oracle.low.device
    g = torch.Generator(device).manual_seed(seed)
    err = torch.zeros(len(oracle.cfg.factors), device=device)
    done = 0
    was_training = oracle.training
    oracle.eval()
    try:
        while done < n:
            b = min(batch_size, n - done)
            f = sample_factors(b, g, device=device)
            pred = oracle(oracle.prepare(render(f, 128)))
            err += (pred - _targets(f, oracle.cfg.factors)).abs().sum(0)
            done += b
    finally:
        oracle.train(was_training)
    return {k: float(v) for k, v in zip(oracle.cfg.factors, (err / n).tolist())}


def train_oracle(steps: int = 6000, batch_size: int = 128, device: str | torch.device = "cpu",
                 cfg: OracleConfig | None = None, lr: float = 3e-3, seed: int = 0, eval_every: int = 1000,
                 eval_n: int = 2048, out: str | os.PathLike | None = None, minutes: float | None = None,
                 augment_p: float = 1.0, progress: bool = True) -> tuple[Oracle, dict]:
    """Train an oracle on renders made each step on `device`; returns (oracle in eval mode, report).

    The learning rate warms up then follows a cosine to zero over `steps` (or over `minutes` of wall time
    when that is given, whichever ends first). `report` holds the held-out MAE per factor as a fraction of
    its range (`mae`), their max, steps, images seen and seconds. With `out`, the oracle is saved there
    (safetensors, fp16) at each evaluation and at the end.
    """
    from tqdm import tqdm

    device = torch.device(device)
    cfg = cfg or OracleConfig()
    oracle = Oracle(cfg).to(device)
    if device.type == "cuda":
        oracle = oracle.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(oracle.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator(device).manual_seed(seed)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    warm = max(1, min(300, steps // 20))
    t0 = time.time()
    budget = minutes * 60 if minutes else math.inf
    report: dict = {"steps": 0}
    bar = tqdm(range(steps), desc="oracle", disable=not progress, dynamic_ncols=True)
    step = 0
    for step in bar:
        frac = max(step / steps, (time.time() - t0) / budget)
        if frac >= 1:
            break
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * frac))
        with torch.no_grad():
            f = sample_factors(batch_size, g, device=device)
            x = render(f, 128)
            if augment_p > 0:
                x = augment(x, g)
            x = oracle.prepare(x)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            y = _targets(f, cfg.factors)
        with amp:
            pred = oracle(x)
        loss = F.smooth_l1_loss(pred.float(), y, beta=0.02)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_description(f"oracle loss {loss.item():.4f}")
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            mae = evaluate(oracle, eval_n, device=device)
            log.info("step %d: held-out MAE (fraction of range) %s", step + 1, _fmt(mae))
            report = _report(mae, step + 1, batch_size, t0, cfg)
            if out is not None:
                save_oracle(oracle, out, report)
    oracle.eval()
    mae = evaluate(oracle, eval_n, device=device)
    report = _report(mae, step + 1 if steps else 0, batch_size, t0, cfg)
    log.info("final held-out MAE (fraction of range): %s", _fmt(mae))
    if out is not None:
        save_oracle(oracle, out, report)
    return oracle.requires_grad_(False), report


def _fmt(mae: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in mae.items())


def _report(mae: dict, steps: int, batch_size: int, t0: float, cfg: OracleConfig) -> dict:
    return {"mae": {k: round(v, 5) for k, v in mae.items()}, "max_mae": round(max(mae.values()), 5),
            "mean_mae": round(sum(mae.values()) / len(mae), 5), "steps": steps, "images": steps * batch_size,
            "seconds": round(time.time() - t0, 1), "target": 0.05}


def main(argv=None) -> None:
    """`python -m micromotion.world.oracle --out oracle.safetensors [--steps N --batch B --device cuda]`."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m micromotion.world.oracle", description=main.__doc__)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--minutes", type=float, default=None, help="stop (cosine schedule compressed) after this long")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--tiny", action="store_true", help="the tiny test config")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    _, report = train_oracle(a.steps, a.batch, device, OracleConfig.tiny() if a.tiny else None, a.lr, a.seed,
                             a.eval_every, out=a.out, minutes=a.minutes)
    log.info("report: %s", json.dumps(report))


if __name__ == "__main__":  # pragma: no cover
    main()
