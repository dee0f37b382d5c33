"""Training the world's StyleGAN2 on renders made on the fly (issue 9).

`micromotion world train gan --out DIR --minutes M [--batch B] [--resume] [--export PATH [--compact]]`

The generator is the project's own `micromotion.models.stylegan2.Generator` (a small 128² config, see
`TrainConfig`), the discriminator `micromotion.models.discriminator.Discriminator` (resnet). Losses follow
StyleGAN2 (Karras et al. 2020) as in NVIDIA stylegan2-ada-pytorch `training/loss.py`: non-saturating
logistic loss, lazy R1 on reals every 16 steps, optional lazy path-length regularization, style mixing,
an EMA generator with ramp-up, Adam(0, 0.99) with the lazy-regularization correction of lr and betas.
Real images are rendered on the training device each step (`world.faces`), so the data is infinite.
Mixed precision: bf16 autocast on CUDA only; regularization passes run in fp32.

Runs fit a device limit: training stops cleanly after `--minutes` (or on SIGTERM/SIGINT), checkpoints
every `--checkpoint-minutes` and at the end, and `--resume` continues exactly where it stopped. The
checkpoint is a folder of safetensors files (no pickle), each under 16 MB:

  G.safetensors, D.safetensors           training weights (fp32)
  G_ema.safetensors                      the EMA generator in micromotion's generator format: `load_generator`
  optim_G.safetensors, optim_D.safetensors  Adam moments (bf16, to fit the size limit) and the RNG states
  state.json                             config, counters (step, images seen, Adam steps, pl_mean), quality
  samples.png, log.jsonl                 a fixed-seed sample grid; one JSON line of losses per log interval
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import CheckpointError, InputError
from ...generators import load_generator
from ...io.files import atomic_output, config_from_dict, save_safetensors, write_text
from ...models.discriminator import Discriminator, DiscriminatorConfig
from ...models.stylegan2 import Generator, GeneratorConfig
from ...models.stylegan2_convert import save_generator
from ..faces import FACTOR_SPECS, render, sample_factors
from .common import (Clock, adam_step, existing_checkpoint, override, read_checkpoint_state, run_main, run_steps,
                     trainer_parser)
from .common import StopOnSignals  # noqa: F401  (its name here before common.py)

log = logging.getLogger(__name__)

STATE_FORMAT = "micromotion-world-train"
STATE_VERSION = 1


@dataclass
class TrainConfig:
    """Networks and hyperparameters. The default is sized for a short run on one GPU: G 3.3 M parameters
    (13 MB in fp32), D 2.2 M, batch 64; R1 gamma follows the 128² heuristics (NVIDIA's 0.0002 R²/batch is
    0.05; simple renders tolerate a little more for stability)."""

    resolution: int = 128
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 8
    g_channels: dict[int, int] = field(default_factory=lambda: {4: 192, 8: 192, 16: 160, 32: 128, 64: 96, 128: 64})
    d_channels: dict[int, int] = field(default_factory=lambda: {128: 48, 64: 96, 32: 128, 16: 160, 8: 160, 4: 160})
    batch: int = 64
    lr: float = 0.0025
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 0.25
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    mbstd_group: int = 4
    seed: int = 0

    def __post_init__(self):
        self.g_channels = {int(k): int(v) for k, v in self.g_channels.items()}
        self.d_channels = {int(k): int(v) for k, v in self.d_channels.items()}
        if self.batch < 1:
            raise InputError(f"batch must be at least 1, got {self.batch}")

    @classmethod
    def tiny(cls) -> "TrainConfig":
        """32² networks of a few thousand parameters, every regularizer exercised each 2 steps (tests)."""
        return cls(resolution=32, z_dim=16, w_dim=16, mapping_layers=2,
                   g_channels=GeneratorConfig.tiny(32).channels, d_channels=DiscriminatorConfig.tiny(32).channels,
                   batch=4, r1_interval=2, pl_weight=2.0, pl_interval=2, ema_kimg=0.01, mbstd_group=2)

    @classmethod
    def small64(cls) -> "TrainConfig":
        """64² networks for very short runs (a few GPU minutes): fewer layers, so larger batches per second."""
        return cls(resolution=64, g_channels={4: 256, 8: 256, 16: 192, 32: 128, 64: 64},
                   d_channels={64: 64, 32: 128, 16: 192, 8: 256, 4: 256}, batch=128, r1_gamma=0.1)

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(resolution=self.resolution, z_dim=self.z_dim, w_dim=self.w_dim,
                               mapping_layers=self.mapping_layers, channels=dict(self.g_channels))

    def discriminator_config(self) -> DiscriminatorConfig:
        return DiscriminatorConfig(resolution=self.resolution, channels=dict(self.d_channels),
                                   mbstd_group_size=self.mbstd_group)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["g_channels"] = {str(k): v for k, v in self.g_channels.items()}
        d["d_channels"] = {str(k): v for k, v in self.d_channels.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return config_from_dict(cls, d, "training", CheckpointError)


def _adam(params, lr, beta1, beta2, interval: int | None, device) -> torch.optim.Adam:
    ratio = interval / (interval + 1) if interval else 1.0  # lazy regularization (StyleGAN2 appendix B)
    kw = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.Adam(params, lr=lr * ratio, betas=(beta1 ** ratio, beta2 ** ratio), eps=1e-8, **kw)


class Trainer:
    """Networks, optimizers, RNGs and counters of one run; `step()` is one iteration of all phases."""

    def __init__(self, cfg: TrainConfig, device: str | torch.device = "cpu", compile: bool = False):
        self.cfg, self.device = cfg, torch.device(device)
        dev = self.device
        self.gen = torch.Generator(dev).manual_seed(cfg.seed)  # z, noise, renders
        self.cpu_gen = torch.Generator().manual_seed(cfg.seed + 1)  # mixing decisions (no device syncs)
        torch.manual_seed(cfg.seed)  # network initialisation
        self.G = Generator(cfg.generator_config()).to(dev).train()
        self.D = Discriminator(cfg.discriminator_config()).to(dev).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = _adam(self.G.parameters(), cfg.lr, cfg.beta1, cfg.beta2,
                           cfg.pl_interval if cfg.pl_weight > 0 else None, dev)
        self.opt_D = _adam(self.D.parameters(), cfg.lr, cfg.beta1, cfg.beta2, cfg.r1_interval if cfg.r1_gamma > 0 else None, dev)
        self.step_count = 0
        self.nimg = 0
        self.real_chunk = 16 if dev.type == "cuda" else 1
        self._real_buf, self._real_pos = None, 0
        self.pl_mean = torch.zeros([], device=dev)
        self.amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else nullcontext
        # compiled forwards for the main phases; regularizers (double backward) use the plain modules
        self.synth = torch.compile(self.G.synthesis_net) if compile else self.G.synthesis_net
        self.disc = torch.compile(self.D) if compile else self.D

    # ---- sampling
    def _ws(self, n: int, G: Generator | None = None) -> torch.Tensor:
        G = G or self.G
        z = torch.randn(n, self.cfg.z_dim, generator=self.gen, device=self.device)
        ws = G.mapping(z)
        if self.cfg.mixing_prob > 0 and torch.rand([], generator=self.cpu_gen).item() < self.cfg.mixing_prob:
            cutoff = int(torch.randint(1, ws.shape[1], [], generator=self.cpu_gen))
            z2 = torch.randn(n, self.cfg.z_dim, generator=self.gen, device=self.device)
            ws = torch.cat([ws[:, :cutoff], G.mapping(z2)[:, cutoff:]], dim=1)
        return ws

    def reals(self, n: int) -> torch.Tensor:
        """n fresh renders. Rendered `real_chunk` batches at a time: one render call launches ~1000 small
        kernels whatever its size, so batching it amortizes the launch cost (each face is used once)."""
        if self._real_buf is None or self._real_pos + n > self._real_buf.shape[0]:
            m = max(n, self.real_chunk * self.cfg.batch)
            self._real_buf = render(sample_factors(m, self.gen, device=self.device), self.cfg.resolution)
            self._real_pos = 0
        out = self._real_buf[self._real_pos:self._real_pos + n]
        self._real_pos += n
        return out

    # ---- one iteration
    def step(self) -> dict[str, float]:
        cfg, G, D, B = self.cfg, self.G, self.D, self.cfg.batch
        stats: dict[str, torch.Tensor] = {}

        # G main: non-saturating logistic loss
        G.requires_grad_(True)
        D.requires_grad_(False)
        ws = self._ws(B)
        with torch.no_grad():  # track the mean w for truncation
            G.w_avg.lerp_(ws[:, 0].detach().mean(0).float(), 1 - 0.995)
        with self.amp():
            img = self.synth(ws, noise_mode="random", generator=self.gen)
            logits = self.disc(img)
        loss_g = F.softplus(-logits).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        stats["loss_G"] = loss_g.detach()

        # G path-length regularization (lazy, fp32)
        if cfg.pl_weight > 0 and self.step_count % cfg.pl_interval == 0:
            n = max(1, B // 2)
            ws = self._ws(n)
            img = G.synthesis(ws, noise_mode="random", generator=self.gen)
            noise = torch.randn(img.shape, generator=self.gen, device=self.device) / math.sqrt(img.shape[2] * img.shape[3])
            grads, = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay)
            loss_pl = (lengths - self.pl_mean).square().mean() * cfg.pl_weight * cfg.pl_interval
            self.opt_G.zero_grad(set_to_none=True)
            (loss_pl + img[:, 0, 0, 0].sum() * 0).backward()
            self.opt_G.step()
            stats["loss_pl"] = loss_pl.detach()

        # D main
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad(), self.amp():
            fake = self.synth(self._ws(B), noise_mode="random", generator=self.gen)
        real = self.reals(B)
        with self.amp():
            lf, lr_ = self.disc(fake), self.disc(real)
        loss_d = F.softplus(lf).mean() + F.softplus(-lr_).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()
        stats["loss_D"] = loss_d.detach()
        stats["D_real"] = lr_.detach().float().mean()
        stats["D_fake"] = lf.detach().float().mean()

        # D R1 on reals (lazy, fp32)
        if cfg.r1_gamma > 0 and self.step_count % cfg.r1_interval == 0:
            real_ = real.detach().requires_grad_(True)
            logits = D(real_)
            grad, = torch.autograd.grad(logits.sum(), real_, create_graph=True)
            r1 = grad.square().sum([1, 2, 3])
            loss_r1 = r1.mean() * (cfg.r1_gamma / 2) * cfg.r1_interval
            self.opt_D.zero_grad(set_to_none=True)
            (loss_r1 + logits.mean() * 0).backward()
            self.opt_D.step()
            stats["r1"] = r1.detach().mean()

        self.step_count += 1
        self.nimg += B
        self._update_ema()
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg = self.cfg
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        ema_p = list(self.G_ema.parameters())
        torch._foreach_lerp_(ema_p, list(self.G.parameters()), 1.0 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---- samples and quality
    @torch.no_grad()
    def samples(self, n: int = 32, seed: int = 123) -> torch.Tensor:
        """G_ema samples for fixed z (the same grid across checkpoints), [n, 3, R, R] on the CPU."""
        z = torch.randn(n, self.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        with self.amp():
            img = self.G_ema.synthesis(self.G_ema.mapping(z), noise_mode="const")
        return img.float().clamp(-1, 1).cpu()

    # ---- checkpoints
    def save(self, out: Path, extra: dict | None = None) -> None:
        """Write the checkpoint folder (each file atomically; state.json last, as the commit)."""
        from ...render import contact_sheet, save_png, to_uint8

        out.mkdir(parents=True, exist_ok=True)

        def put(name: str, tensors: dict, meta: dict | None = None):
            save_safetensors(tensors, out / name, meta or {})

        put("G.safetensors", {k: v.float() for k, v in self.G.state_dict().items()},
            {"config": json.dumps(self.G.cfg.to_dict())})
        put("D.safetensors", {k: v.float() for k, v in self.D.state_dict().items()},
            {"config": json.dumps(self.D.cfg.to_dict())})
        for name, opt, module in (("optim_G", self.opt_G, self.G), ("optim_D", self.opt_D, self.D)):
            tensors = {}
            for pname, p in module.named_parameters():
                st = opt.state.get(p)
                if st:
                    tensors[f"{pname}.exp_avg"] = st["exp_avg"].to(torch.bfloat16)
                    tensors[f"{pname}.exp_avg_sq"] = st["exp_avg_sq"].to(torch.bfloat16)
            if name == "optim_G":
                tensors["rng.device"] = self.gen.get_state()
                tensors["rng.cpu"] = self.cpu_gen.get_state()
            put(f"{name}.safetensors", tensors)
        ema = copy.deepcopy(self.G_ema)
        ema.compute_w_avg()
        save_generator(ema, out / "G_ema.safetensors", {"kimg": f"{self.nimg / 1000:.1f}", "step": self.step_count,
                                                        "trained_by": "micromotion.world.train"})
        save_png(contact_sheet(to_uint8(self.samples()), 8), out / "samples.png")
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.cfg.to_dict(),
                 "step": self.step_count, "nimg": self.nimg, "pl_mean": float(self.pl_mean),
                 "adam_step_G": adam_step(self.opt_G), "adam_step_D": adam_step(self.opt_D), **(extra or {})}
        write_text(out / "state.json", json.dumps(state, indent=1))

    @classmethod
    def load(cls, out: Path, device="cpu", compile: bool = False) -> tuple["Trainer", dict]:
        """Rebuild a trainer from a checkpoint folder written by `save`."""
        from safetensors.torch import load_file

        state = read_state(out)
        tr = cls(TrainConfig.from_dict(state["config"]), device, compile)
        dev = tr.device
        try:
            tr.G.load_state_dict({k: v.to(dev) for k, v in load_file(str(out / "G.safetensors")).items()})
            tr.D.load_state_dict({k: v.to(dev) for k, v in load_file(str(out / "D.safetensors")).items()})
            ema = load_generator(out / "G_ema.safetensors", device=dev)
            tr.G_ema.load_state_dict(ema.state_dict())
            for name, opt, module, steps in (("optim_G", tr.opt_G, tr.G, state["adam_step_G"]),
                                             ("optim_D", tr.opt_D, tr.D, state["adam_step_D"])):
                t = load_file(str(out / f"{name}.safetensors"))
                sd = opt.state_dict()
                st = {}
                for i, (pname, p) in enumerate(module.named_parameters()):
                    if f"{pname}.exp_avg" in t:
                        st[i] = {"step": torch.tensor(float(steps)),
                                 "exp_avg": t[f"{pname}.exp_avg"].to(dev, torch.float32).reshape(p.shape),
                                 "exp_avg_sq": t[f"{pname}.exp_avg_sq"].to(dev, torch.float32).reshape(p.shape)}
                opt.load_state_dict({"state": st, "param_groups": sd["param_groups"]})
                if name == "optim_G":
                    tr.gen.set_state(t["rng.device"])
                    tr.cpu_gen.set_state(t["rng.cpu"])
        except (OSError, KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{out}: checkpoint is incomplete or does not match its state.json "
                                  f"({type(e).__name__}: {str(e)[:200]})") from None
        tr.step_count, tr.nimg = int(state["step"]), int(state["nimg"])
        tr.pl_mean = torch.tensor(float(state.get("pl_mean", 0.0)), device=dev)
        tr.G_ema.eval().requires_grad_(False)
        return tr, state


def read_state(out: str | os.PathLike) -> dict:
    """The state.json of a GAN checkpoint folder; `CheckpointError` if missing or not ours."""
    return read_checkpoint_state(out, STATE_FORMAT, STATE_VERSION, "world training")


@torch.no_grad()
def quality_report(G: Generator, oracle, n: int = 512, seed: int = 7, truncation_psi: float = 1.0,
                   batch_size: int = 128) -> dict:
    """Oracle factors of `n` generator samples vs `n` renders: per factor the mean and std of each and the
    1-D Wasserstein-1 distance between the two, as a fraction of the factor's range."""
    dev = next(G.parameters()).device
    g = torch.Generator().manual_seed(seed)
    gen_imgs, real_imgs = [], []
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        z = torch.randn(b, G.z_dim, generator=g).to(dev)
        gen_imgs.append(G.synthesis(G.mapping(z, truncation_psi), noise_mode="const").float().clamp(-1, 1))
        real_imgs.append(render(sample_factors(b, g).to(dev), G.resolution))
    a = oracle.measure(torch.cat(gen_imgs))
    b = oracle.measure(torch.cat(real_imgs))
    out = {}
    for k in a:
        span = FACTOR_SPECS[k].span
        w1 = (a[k].sort().values - b[k].sort().values).abs().mean().item() / span
        out[k] = {"samples_mean": round(a[k].mean().item(), 4), "samples_std": round(a[k].std().item(), 4),
                  "renders_mean": round(b[k].mean().item(), 4), "renders_std": round(b[k].std().item(), 4),
                  "w1": round(w1, 4)}
    out["mean_w1"] = round(sum(v["w1"] for v in out.values()) / len(a), 4)
    return out


def train(out: str | os.PathLike, minutes: float = 9.0, cfg: TrainConfig | None = None,
          device: str | torch.device = "cpu", resume: bool = False, checkpoint_minutes: float = 3.0,
          max_steps: int | None = None, compile: bool = False, oracle=None, log_every: int = 50,
          progress: bool = True, batch: int | None = None) -> dict:
    """Train (or continue) a run in folder `out` for `minutes` of wall time or `max_steps` steps.

    `resume=True` continues the checkpoint in `out` (its stored config wins over `cfg`; only `batch` may
    change on resume) or starts fresh if there is none; without it an existing checkpoint is an error.
    `batch` overrides the batch size of `cfg` or of the checkpoint. With `oracle`
    (an `Oracle`, or the path of an oracle file, read at the end if it exists by then), the final
    state.json holds a `quality_report`. Returns the final state dict.
    """
    out = Path(out)
    has_ckpt = existing_checkpoint(out, resume)
    if has_ckpt:
        tr, state = Trainer.load(out, device, compile)
        if cfg is not None and {**cfg.to_dict(), "batch": 0} != {**tr.cfg.to_dict(), "batch": 0}:
            log.warning("resuming %s with its stored config; the config given is ignored", out)
        if batch is not None and batch != tr.cfg.batch:
            log.info("batch size %d -> %d", tr.cfg.batch, batch)
            tr.cfg.batch = batch
        log.info("resumed %s at step %d (%.1f kimg)", out, tr.step_count, tr.nimg / 1000)
        elapsed_before = float(state.get("train_seconds", 0.0))
    else:
        if resume:
            log.info("no checkpoint in %s; starting a new run", out)
        cfg = copy.deepcopy(cfg) if cfg is not None else TrainConfig()
        if batch is not None:
            cfg.batch = batch
        tr = Trainer(cfg, device, compile)
        elapsed_before = 0.0
        out.mkdir(parents=True, exist_ok=True)
    n_g = sum(p.numel() for p in tr.G.parameters())
    n_d = sum(p.numel() for p in tr.D.parameters())
    log.info("G %.2fM params, D %.2fM params, batch %d, device %s", n_g / 1e6, n_d / 1e6, tr.cfg.batch, tr.device)

    clock = Clock(elapsed_before)

    def record(means: dict, n: int, seconds: float) -> tuple[dict, str]:
        rec = {"step": tr.step_count, "kimg": round(tr.nimg / 1000, 2), **means,
               "sec_per_step": round(seconds / n, 4), "train_seconds": clock.train_seconds()}
        return rec, f"world GAN kimg {rec['kimg']} G {means['loss_G']:.3f} D {means['loss_D']:.3f}"

    def save() -> None:
        tr.save(out, {"train_seconds": clock.train_seconds()})
        log.info("checkpoint at step %d (%.1f kimg)", tr.step_count, tr.nimg / 1000)

    run_steps(tr.step, out / "log.jsonl", clock, desc="world GAN", minutes=minutes, max_steps=max_steps,
              checkpoint_minutes=checkpoint_minutes, log_every=log_every, progress=progress, record=record, save=save,
              digits=4)
    extra = {"train_seconds": clock.train_seconds()}
    if isinstance(oracle, (str, os.PathLike)):
        from ..oracle import load_oracle

        if Path(oracle).is_file():
            oracle = load_oracle(oracle, tr.device)
        else:
            log.warning("no oracle at %s; skipping the quality report", oracle)
            oracle = None
    if oracle is not None:
        q = quality_report(tr.G_ema, oracle.to(tr.device))
        extra["quality_report"] = q
        log.info("quality: mean W1 of oracle factors, samples vs renders: %.3f of range", q["mean_w1"])
    tr.save(out, extra)
    log.info("saved %s: step %d, %.1f kimg, %.1f min of training in total", out, tr.step_count, tr.nimg / 1000,
             extra["train_seconds"] / 60)
    return read_state(out)


def export(ckpt: str | os.PathLike, path: str | os.PathLike, compact: bool = False) -> Path:
    """Copy the checkpoint's EMA generator (already in `save_generator` format, fp32) to `path`, checked.
    compact: store its floating-point tensors as float16 with the same metadata, as the shipped
    `world.safetensors` is (half the size; loads as fp32; the difference is in docs/results.md)."""
    src = Path(ckpt) / "G_ema.safetensors"
    if not src.is_file():
        raise CheckpointError(f"{ckpt}: no G_ema.safetensors to export; train first")
    load_generator(src)  # refuse to export something unreadable
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compact:
        from safetensors import safe_open

        with safe_open(str(src), "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        save_safetensors({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, path, meta)
        load_generator(path)
        return path
    with atomic_output(path, error=CheckpointError) as tmp:
        shutil.copyfile(src, tmp)
    return path


def main(argv=None, prog: str = "python -m micromotion.world.train") -> None:
    p = trainer_parser(prog, "Train the face world's StyleGAN2 on renders made on the fly; resumable.",
                       "micromotion world train gan --out runs/world --minutes 8 --resume "
                       "--export runs/world.safetensors",
                       what="networks", batch=64, export="G_ema as a micromotion generator file",
                       compact="export float16 (the shipped world.safetensors)")
    p.add_argument("--r1-gamma", type=float, default=None, help="R1 weight of a new run (default 0.25)")
    p.add_argument("--pl-weight", type=float, default=None, help="path-length regularization weight of a new run (default off)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate of a new run (default 0.0025)")
    p.add_argument("--seed", type=int, default=None, help="seed of a new run (default 0)")
    p.add_argument("--compile", action="store_true", help="torch.compile the main forward passes")
    p.add_argument("--oracle", default="auto", help="oracle file for the quality report; 'none' to skip")
    p.add_argument("--resolution", type=int, choices=[64, 128], default=128,
                   help="resolution of a new run (64: TrainConfig.small64, for very short runs)")

    def run(a, device: str) -> None:
        cfg = TrainConfig.tiny() if a.tiny else TrainConfig.small64() if a.resolution == 64 else TrainConfig()
        override(cfg, r1_gamma=a.r1_gamma, pl_weight=a.pl_weight, lr=a.lr, seed=a.seed)
        oracle = None
        if a.oracle != "none" and not a.tiny:
            from ..oracle import DEFAULT_PATH

            oracle = DEFAULT_PATH if a.oracle == "auto" else Path(a.oracle)  # read after training
        if a.minutes > 0 or a.max_steps:
            state = train(a.out, a.minutes, cfg, device, a.resume, a.checkpoint_minutes, a.max_steps, a.compile, oracle,
                          batch=a.batch)
            log.info("done: step %d, %.1f kimg", state["step"], state["nimg"] / 1000)
        if a.export:
            log.info("exported %s", export(a.out, a.export, compact=a.compact))

    run_main(p, argv, run)


if __name__ == "__main__":  # pragma: no cover
    main()
