"""Training a ReStyle encoder for the world's StyleGAN2 (issue 10): world images -> that generator's W+.

`micromotion world train encoder --generator G.safetensors --out DIR --minutes M [--init FILE] [--export FILE [--compact]]`

The network is the issue-5 encoder (`micromotion.models.encoder.BackboneEncoder`, IR-SE units and one
map2style head per W+ layer) with a small backbone sized for the 128² world generator (`WorldEncoderConfig`),
run through the same `ReStyle` class as the FFHQ encoders, so inversion code paths use it unchanged.
Training follows yuval-alaluf/restyle-encoder `training/coach_restyle_psp.py`: for each batch, `n_iters`
refinement steps from the average image, x_t = concat(x, y_{t-1}), w_t = w_{t-1} + E(x_t), y_t = G(w_t), a loss
and a backward pass at every step with y and w detached between steps, one optimizer step per batch. The
generator is frozen. Losses: pixel L2; the world oracle's features and factor readings of y vs x (in place of
pSp's LPIPS and ArcFace identity losses: the oracle is the network that knows these faces); L2 to the true
W+ code where there is one; a small penalty on the refinement deltas after the first step.

Targets each step: generator samples (z -> w, truncation psi uniform in [psi_min, psi_max], style mixing
for varied W+ codes, constant noise), a fraction `render_frac` of fresh renders (`world.faces`: real world
faces, no known code) at the generator's resolution, and a fraction `pair_frac` of render pairs (one identity,
its motion factors drawn twice) with the pair loss: oracle(y_b) - oracle(y_a) against oracle(x_b) -
oracle(x_a), so a moved face's reconstruction differs from the unmoved one's only as the faces do. bf16
autocast on CUDA only; BatchNorm runs on batch statistics in training and on its running statistics at
inference, as in ReStyle.

Like `world.train.gan`: stops cleanly after `--minutes` (or SIGTERM/SIGINT), checkpoints every
`--checkpoint-minutes` and at the end, `--resume` continues exactly (on CUDA, where renders are drawn in
buffers of several batches, the unused rest of a buffer is drawn anew). Checkpoint folder (no pickle; each file
under 16 MB; the generator is not copied, state.json names it by path and fingerprint):

  encoder.safetensors          encoder weights and latent_avg, fp32, in the `save_encoder` format (= the export)
  optim_avg.safetensors        AdamW first moments (fp32) and the RNG states
  optim_avg_sq.safetensors     AdamW second moments (fp32)
  state.json                   config, generator, counters, last evaluation
  samples.png, log.jsonl       held-out targets above their reconstructions; one JSON line per log interval

Export (`--export FILE`): `encoder.safetensors` rewritten with the evaluation in its metadata (and, for a run
started with `--init`, the chain of fine-tune stages in `fine_tuned`); `--compact` stores it float16, as the
shipped file is. Read it with `load_world_encoder(FILE, G)` (= `micromotion.models.encoder.load_encoder`),
which pairs it with the generator.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError, InputError
from ...io.files import config_from_dict, fingerprint_matches, save_safetensors, write_text
from ...generators import load_generator
from ...models.encoder import (EncoderConfig, ReStyle, build_encoder, generator_fingerprint, load_encoder,
                              save_encoder)
from ...models.stylegan2 import Generator
from ..faces import FACTOR_SPECS, MOTION_FACTORS, render, sample_factors
from ..oracle import Oracle, load_oracle
from .common import (Clock, adam_step, existing_checkpoint, override, read_checkpoint_state, run_main, run_steps,
                     trainer_parser)

log = logging.getLogger(__name__)

__all__ = ["WorldEncoderConfig", "EncoderTrainer", "train_encoder", "evaluate_encoder", "export_encoder",
           "load_world_encoder", "read_state"]

STATE_FORMAT = "micromotion-world-encoder-train"
STATE_VERSION = 1
EVAL_SEED = 777_001  # held-out faces and codes; training draws from `seed` on its own generator


@dataclass
class WorldEncoderConfig:
    """Network and hyperparameters. Default: 128² input, an IR-SE backbone of six stride-2 stages
    (24/32/48/64/96/80 channels, 2² features) and twelve heads of 80 -> 256 for the 12 x 256 W+ of the world
    generator; 3.7 M parameters, 14.9 MB as fp32 safetensors. (The heads dominate: each is a 3x3 conv from the
    last stage's width to w_dim per halving of the feature map, so a wide last stage or larger feature maps
    would not fit 16 MB.) n_styles and w_dim come from the generator."""

    variant: str = "psp"
    input_size: int = 128
    units: tuple[int, ...] = (1, 1, 2, 2, 2, 1)
    widths: tuple[int, ...] = (24, 32, 48, 64, 96, 80)
    stem_width: int = 24
    se_reduction: int = 8
    batch: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 100
    n_iters: int = 3  # ReStyle refinement steps per batch (the reference trains with 5)
    render_frac: float = 0.3  # share of each batch that is fresh renders (no known code)
    pair_frac: float = 0.0  # share of each batch that is render pairs: one identity, motions drawn twice
    pair_weight: float = 1.0  # weight of the pairs' factor-difference loss
    psi_min: float = 0.5
    psi_max: float = 1.0
    mixing_prob: float = 0.9
    l2_weight: float = 1.0
    oracle_feat_weight: float = 0.5
    factor_weight: float = 1.0
    latent_weight: float = 1.0
    delta_weight: float = 0.01
    oracle: str = "default"  # the shipped oracle, a file, or "none"
    seed: int = 0

    def __post_init__(self):
        self.units, self.widths = tuple(int(u) for u in self.units), tuple(int(w) for w in self.widths)
        if self.batch < 2:
            raise InputError(f"batch must be at least 2 (BatchNorm statistics), got {self.batch}")
        if self.n_iters < 1:
            raise InputError(f"n_iters must be at least 1, got {self.n_iters}")
        if not 0 <= self.render_frac <= 1:
            raise InputError(f"render_frac must be in [0, 1], got {self.render_frac}")
        if not 0 <= self.pair_frac <= 1 - self.render_frac:
            raise InputError(f"pair_frac must be in [0, 1 - render_frac], got {self.pair_frac}")
        if not (math.isfinite(self.pair_weight) and self.pair_weight >= 0):
            raise InputError(f"pair_weight must be a finite number >= 0, got {self.pair_weight}")

    @classmethod
    def tiny(cls) -> "WorldEncoderConfig":
        """32² input, four thin stages (tests, CPU smoke runs); any generator."""
        return cls(input_size=32, units=(1, 1, 1, 1), widths=(8, 12, 16, 24), stem_width=8, se_reduction=4,
                   batch=4, n_iters=2, warmup=2)

    def encoder_config(self, G: Generator) -> EncoderConfig:
        return EncoderConfig(variant=self.variant, n_styles=G.num_ws, w_dim=G.w_dim, input_size=self.input_size,
                             units=self.units, widths=self.widths, stem_width=self.stem_width,
                             se_reduction=self.se_reduction)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["units"], d["widths"] = list(self.units), list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldEncoderConfig":
        return config_from_dict(cls, d, "world encoder", CheckpointError)


def _resolve_oracle(spec, device: torch.device):
    if spec is None or isinstance(spec, Oracle):
        return spec.to(device).eval().requires_grad_(False) if spec is not None else None
    if str(spec) == "none":
        return None
    return load_oracle(None if str(spec) == "default" else spec, device)


@torch.no_grad()
def _latent_avg(G: Generator, n: int = 10000, seed: int = 0) -> torch.Tensor:
    """G's mean w [w_dim]: the stored one, else computed like `Generator.compute_w_avg` (without touching G)."""
    if G.w_avg_source != "unset":
        return G.w_avg.detach().float().clone()
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(G.w_avg.device)
    return torch.cat([G.mapping_net(c) for c in z.split(2048)]).mean(0)


def _oracle_outputs(oracle, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The oracle's stage outputs and its factor readings ([N, K] in [0, 1]) of images [N, 3, H, W],
    differentiable with respect to the images."""
    r = oracle.cfg.resolution
    x = images if images.shape[-1] == r else F.interpolate(images, size=(r, r), mode="bilinear",
                                                           align_corners=False, antialias=True)
    feats = []
    for i, layer in enumerate(oracle.features):
        x = layer(x)
        if i % 2 == 0:  # the stem, then the end of each (stride-2 conv, conv) stage
            feats.append(x)
    y = torch.sigmoid(oracle.head(oracle.squeeze(x).flatten(1)).float())
    return feats, y


def _feature_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS-style (unweighted): features normalized over channels at each pixel, squared difference summed
    over channels, averaged over pixels and layers; in [0, 4]."""
    total = 0.0
    for fa, fb in zip(a, b):
        fa = fa.float() / (fa.float().square().sum(1, keepdim=True).sqrt() + 1e-6)
        fb = fb.float() / (fb.float().square().sum(1, keepdim=True).sqrt() + 1e-6)
        total = total + (fa - fb).square().sum(1).mean()
    return total / len(a)


class EncoderTrainer:
    """Encoder, frozen generator and oracle, optimizer, RNGs and counters of one run; `step()` is one batch of
    `n_iters` ReStyle refinement steps and one optimizer update."""

    config_class = WorldEncoderConfig

    def __init__(self, cfg: WorldEncoderConfig, G: Generator, device: str | torch.device = "cpu", oracle="config"):
        self.cfg, self.device = cfg, torch.device(device)
        dev = self.device
        self.G = G.to(dev).eval().requires_grad_(False)
        self.oracle = _resolve_oracle(cfg.oracle if oracle == "config" else oracle, dev)
        self.gen = torch.Generator(dev).manual_seed(cfg.seed)  # codes, renders, mixing
        torch.manual_seed(cfg.seed)  # network initialisation
        encoder = build_encoder(cfg.encoder_config(G))
        with torch.no_grad():  # start near latent_avg: small first deltas (the heads' last layer scaled down)
            for head in encoder.styles:
                head.linear.weight.mul_(0.1)
        avg = _latent_avg(self.G)
        self.net = ReStyle(encoder, self.G, avg, {"encoder_type": encoder.cfg.encoder_type,
                                                   "output_size": G.resolution,
                                                   "trained_by": "micromotion.world.encoder_train"}).to(dev)
        self.encoder = self.net.encoder
        self.w_center = avg.to(dev)  # truncation centre of the sampled codes
        self.train_mode(True)
        kw = {"fused": True} if dev.type == "cuda" else {}
        self.opt = torch.optim.AdamW(self.encoder.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=cfg.weight_decay, **kw)
        self.avg_image = self.net.average_image()  # y_0, [1, 3, S, S]
        self.step_count = 0
        self.nimg = 0
        if cfg.pair_frac > 0 and self.oracle is None:
            raise InputError("render pairs (pair_frac > 0) are compared through the oracle's readings; "
                             "train with an oracle or set pair_frac to 0")
        self.set_batch(cfg.batch)
        self.render_chunk = 16 if dev.type == "cuda" else 1
        self._render_buf, self._render_pos = None, 0
        self._pair_buf, self._pair_pos = None, 0
        self.amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else nullcontext

    def init_from(self, path: str | os.PathLike) -> None:
        """Start from the weights of an encoder file made for this generator with this config's network."""
        src = load_encoder(path, self.G, device=self.device)
        mine, theirs = self.encoder.state_dict(), src.encoder.state_dict()
        if set(mine) != set(theirs) or any(mine[k].shape != theirs[k].shape for k in mine):
            raise InputError(f"{path}: its encoder is not the one of this config (different layers or sizes); "
                             f"start from scratch or give a file trained with the same config")
        self.encoder.load_state_dict(theirs)
        with torch.no_grad():
            self.net.latent_avg.copy_(src.latent_avg.to(self.net.latent_avg.device))
        self.avg_image = self.net.average_image()

    def set_batch(self, batch: int) -> None:
        """Batch size and its split: `n_render` single renders and `n_pair` render pairs (2 images each); the
        rest are generator samples."""
        self.cfg.batch = int(batch)
        self.n_render = int(round(batch * self.cfg.render_frac))
        self.n_pair = min(int(round(batch * self.cfg.pair_frac / 2)), (batch - self.n_render) // 2)
        if self.cfg.pair_frac > 0 and self.n_pair == 0:
            log.warning("pair_frac %g of a batch of %d rounds to no render pairs; use a larger batch or pair_frac",
                        self.cfg.pair_frac, batch)

    def train_mode(self, mode: bool) -> None:
        """BatchNorm on batch statistics while training; `BackboneEncoder.train` always means eval, so go
        around it."""
        nn.Module.train(self.encoder, mode)
        self.encoder.requires_grad_(mode)

    # ---- targets
    @torch.no_grad()
    def sample_codes(self, n: int) -> torch.Tensor:
        """n W+ codes [n, num_ws, w_dim]: truncation psi uniform in [psi_min, psi_max] per sample, and with
        probability `mixing_prob` a second code from a random layer on."""
        cfg, G, dev = self.cfg, self.G, self.device
        z = torch.randn(2, n, G.z_dim, generator=self.gen, device=dev)
        psi = cfg.psi_min + (cfg.psi_max - cfg.psi_min) * torch.rand(n, 1, generator=self.gen, device=dev)
        w = torch.lerp(self.w_center.expand(2, n, -1), G.mapping_net(z.flatten(0, 1)).view(2, n, -1), psi)
        cut = torch.randint(1, G.num_ws, (n,), generator=self.gen, device=dev)
        mix = torch.rand(n, generator=self.gen, device=dev) < cfg.mixing_prob
        cut = torch.where(mix, cut, torch.full_like(cut, G.num_ws))
        first = (torch.arange(G.num_ws, device=dev)[None] < cut[:, None])[..., None]
        return torch.where(first, w[0][:, None], w[1][:, None])

    @torch.no_grad()
    def renders(self, n: int) -> torch.Tensor:
        """n fresh renders at the generator's resolution, `render_chunk` batches per render call (a call is
        ~1000 small kernels whatever its size)."""
        if n == 0:
            return torch.zeros(0, 3, self.G.resolution, self.G.resolution, device=self.device)
        if self._render_buf is None or self._render_pos + n > self._render_buf.shape[0]:
            m = max(n, self.render_chunk * n)
            self._render_buf = render(sample_factors(m, self.gen, device=self.device), self.G.resolution)
            self._render_pos = 0
        out = self._render_buf[self._render_pos:self._render_pos + n]
        self._render_pos += n
        return out

    @torch.no_grad()
    def pairs(self, n: int) -> torch.Tensor:
        """2n renders [a_1 … a_n, b_1 … b_n]: a_i and b_i are one identity (every identity factor shared) with
        its motion factors drawn twice, so what differs between their reconstructions beyond what differs between
        them is the inversion's own doing (a turned head reconstructed with a wider mouth)."""
        if n == 0:
            return torch.zeros(0, 3, self.G.resolution, self.G.resolution, device=self.device)
        if self._pair_buf is None or self._pair_pos + n > self._pair_buf[0].shape[0]:
            m = max(n, self.render_chunk * n // 2)
            a = sample_factors(m, self.gen, device=self.device)
            moved = sample_factors(m, self.gen, device=self.device)
            b = a.replace(**{k: getattr(moved, k) for k in MOTION_FACTORS})
            self._pair_buf = (render(a, self.G.resolution), render(b, self.G.resolution))
            self._pair_pos = 0
        a, b = (x[self._pair_pos:self._pair_pos + n] for x in self._pair_buf)
        self._pair_pos += n
        return torch.cat([a, b])

    @torch.no_grad()
    def targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [B, 3, R, R]: generator samples, renders, then render pairs (`pairs`), true codes
        [B - n_render - 2 n_pair, num_ws, w_dim])."""
        n_gen = self.cfg.batch - self.n_render - 2 * self.n_pair
        ws = self.sample_codes(n_gen)
        parts = []
        if n_gen:
            with self.amp():
                parts.append(self.G.synthesis(ws, noise_mode="const").float())
        parts.append(self.renders(self.n_render))
        parts.append(self.pairs(self.n_pair))
        return torch.cat(parts), ws

    # ---- one update
    def step(self) -> dict[str, torch.Tensor]:
        cfg, net, G = self.cfg, self.net, self.G
        lr = cfg.lr * min(1.0, (self.step_count + 1) / max(1, cfg.warmup))
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, ws_true = self.targets()
        n, n_gen = x.shape[0], ws_true.shape[0]
        x_in = net.prepare(x)
        target_feats = target_fac = None
        if self.oracle is not None:
            with torch.no_grad(), self.amp():
                target_feats, target_fac = _oracle_outputs(self.oracle, x)
        w_prev = net.latent_avg.unsqueeze(0).expand(n, -1, -1)
        y_prev = self.avg_image.expand(n, -1, -1, -1)
        self.opt.zero_grad(set_to_none=True)
        stats: dict[str, torch.Tensor] = {}
        for t in range(cfg.n_iters):
            with self.amp():
                delta = self.encoder(torch.cat([x_in, y_prev], dim=1)).float()
                w = w_prev + delta
                y = G.synthesis(w, noise_mode="const").float()
            l2 = (y - x).square().mean()
            loss = cfg.l2_weight * l2
            parts = {"l2": l2}
            use_pairs = bool(self.n_pair and cfg.pair_weight)
            if self.oracle is not None and (cfg.oracle_feat_weight or cfg.factor_weight or use_pairs):
                with self.amp():
                    feats, fac = _oracle_outputs(self.oracle, y)
                parts["oracle_feat"] = _feature_distance(feats, target_feats)
                parts["factor_l1"] = (fac - target_fac).abs().mean()
                loss = loss + cfg.oracle_feat_weight * parts["oracle_feat"] + cfg.factor_weight * parts["factor_l1"]
                if use_pairs:  # pairs: oracle(y_b) - oracle(y_a) should equal oracle(x_b) - oracle(x_a)
                    a, b = slice(n - 2 * self.n_pair, n - self.n_pair), slice(n - self.n_pair, n)
                    diff_y, diff_x = fac[b] - fac[a], target_fac[b] - target_fac[a]
                    parts["pair"] = (diff_y - diff_x).abs().mean()
                    loss = loss + cfg.pair_weight * parts["pair"]
            if n_gen and cfg.latent_weight:
                parts["latent"] = (w[:n_gen] - ws_true).square().mean()
                loss = loss + cfg.latent_weight * parts["latent"]
            if t > 0 and cfg.delta_weight:  # the first step moves from the mean; later ones should be small
                parts["delta"] = delta.square().mean()
                loss = loss + cfg.delta_weight * parts["delta"]
            loss.backward()
            y_prev, w_prev = net._pool(y.detach()), w.detach()
            if t == 0:
                stats["l2_first"] = l2.detach()
        self.opt.step()
        stats.update({k: v.detach() for k, v in parts.items()})  # the last refinement step's losses
        stats["loss"] = loss.detach()
        stats["psnr"] = 10 * torch.log10(4.0 / stats["l2"].clamp_min(1e-12))
        self.step_count += 1
        self.nimg += n
        return stats

    # ---- checkpoints
    def generator_info(self) -> dict:
        G = self.G
        return {"resolution": G.resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
                "fingerprint": generator_fingerprint(G)}

    def save(self, out: Path, extra: dict | None = None) -> None:
        """Write the checkpoint folder (each file atomically; state.json last, as the commit)."""
        out.mkdir(parents=True, exist_ok=True)
        save_encoder(self.net, out / "encoder.safetensors", {"step": self.step_count,
                                                              "trained_by": "micromotion.world.encoder_train"})
        avg, avg_sq = self.optimizer_tensors()
        meta = {"format": "micromotion-world-encoder-optim", "step": str(self.step_count)}
        save_safetensors(avg, out / "optim_avg.safetensors", meta)
        save_safetensors(avg_sq, out / "optim_avg_sq.safetensors", meta)
        try:
            self._save_samples(out / "samples.png")
        except Exception as e:  # a picture must not cost the checkpoint  # noqa: BLE001
            log.warning("could not write samples.png (%s)", e)
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.cfg.to_dict(),
                 "generator": self.generator_info(), "step": self.step_count, "nimg": self.nimg,
                 "adam_step": adam_step(self.opt), **(extra or {})}
        write_text(out / "state.json", json.dumps(state, indent=1))

    @torch.no_grad()
    def _save_samples(self, path: Path, n: int = 8) -> None:
        from ...render import contact_sheet, save_png, to_uint8

        x = _held_out(self.G, n, n, self.device)
        self.train_mode(False)
        try:
            rec = self.net.invert(x, self.cfg.n_iters).images
        finally:
            self.train_mode(True)
        grid = torch.cat([x[:n], rec[:n], x[n:], rec[n:]])
        save_png(contact_sheet(to_uint8(grid), n), path)

    def optimizer_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """AdamW's moments by parameter name ({name: exp_avg} with the RNG state under 'rng.device', {name:
        exp_avg_sq} with 'adam_step': never an empty file), as checkpoints store them."""
        avg, avg_sq = {}, {}
        for pname, p in self.encoder.named_parameters():
            st = self.opt.state.get(p)
            if st:
                avg[pname], avg_sq[pname] = st["exp_avg"].float(), st["exp_avg_sq"].float()
        avg["rng.device"] = self.gen.get_state()
        avg_sq["adam_step"] = torch.tensor(adam_step(self.opt))
        return avg, avg_sq

    def restore_optimizer(self, avg: dict[str, torch.Tensor], avg_sq: dict[str, torch.Tensor], step) -> None:
        """The inverse of `optimizer_tensors`: AdamW's moments at `step`, and the RNG state."""
        index = {p: i for i, p in enumerate(self.opt.param_groups[0]["params"])}
        st = {}
        for pname, p in self.encoder.named_parameters():
            if pname in avg:
                st[index[p]] = {"step": torch.tensor(float(step)),
                                "exp_avg": avg[pname].to(self.device, torch.float32).reshape(p.shape),
                                "exp_avg_sq": avg_sq[pname].to(self.device, torch.float32).reshape(p.shape)}
        self.opt.load_state_dict({"state": st, "param_groups": self.opt.state_dict()["param_groups"]})
        self.gen.set_state(avg["rng.device"])

    @classmethod
    def open(cls, out: Path, G, device, cfg, batch: int | None, has_ckpt: bool, helper
             ) -> tuple["EncoderTrainer", float, dict | None]:
        """A run in folder `out`: resumed from its checkpoint (`has_ckpt`; `batch` may change the batch size) or
        new with `cfg` (default: `config_class()`; `batch` overrides its batch), validated. `helper` is the
        trainer's fourth argument (the world's oracle, the face trainer's identity network).
        Returns (trainer, seconds trained before, the checkpoint's state or None)."""
        if has_ckpt:
            tr, state = cls.load(out, G, device, helper)
            if batch is not None and batch != tr.cfg.batch:
                log.info("batch size %d -> %d", tr.cfg.batch, batch)
                tr.set_batch(batch)
            log.info("resumed %s at step %d (%.1f kimg)", out, tr.step_count, tr.nimg / 1000)
            return tr, float(state.get("train_seconds", 0.0)), state
        cfg = copy.deepcopy(cfg) if cfg is not None else cls.config_class()
        if batch is not None:
            cfg.batch = batch
        cls.config_class.from_dict(cfg.to_dict())  # validate
        tr = cls(cfg, G, device, helper)
        out.mkdir(parents=True, exist_ok=True)
        return tr, 0.0, None

    @classmethod
    def load(cls, out: Path, G: Generator, device="cpu", oracle="config") -> tuple["EncoderTrainer", dict]:
        """Rebuild a trainer from a checkpoint folder written by `save`, with the generator it was trained for."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        state = read_state(out)
        info = state.get("generator", {})
        fp = generator_fingerprint(G)
        if info.get("fingerprint") is not None and not fingerprint_matches(info["fingerprint"], G):
            raise CheckpointError(f"{out}: the checkpoint was trained for another generator (fingerprint "
                                  f"{info['fingerprint']}, {info.get('path', '?')}); this one is {fp}. Pass "
                                  f"--generator with the generator of the run, or start a new --out")
        tr = cls(WorldEncoderConfig.from_dict(state["config"]), G, device, oracle)
        dev = tr.device
        loaded = load_encoder(out / "encoder.safetensors", tr.G, dev)
        try:
            tr.encoder.load_state_dict(loaded.encoder.state_dict())
            tr.net.latent_avg.copy_(loaded.latent_avg)
            t, t2 = load_file(str(out / "optim_avg.safetensors")), load_file(str(out / "optim_avg_sq.safetensors"))
            tr.restore_optimizer(t, t2, state["adam_step"])
        except (OSError, KeyError, RuntimeError, ValueError, SafetensorError) as e:
            raise CheckpointError(f"{out}: checkpoint is incomplete or does not match its state.json "
                                  f"({type(e).__name__}: {str(e)[:200]})") from None
        tr.step_count, tr.nimg = int(state["step"]), int(state["nimg"])
        tr.train_mode(True)
        return tr, state


def read_state(out: str | os.PathLike) -> dict:
    """The state.json of a world-encoder checkpoint folder; `CheckpointError` if missing or not ours."""
    return read_checkpoint_state(out, STATE_FORMAT, STATE_VERSION, "world encoder training")


# ----------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def _held_out(G: Generator, n_renders: int, n_samples: int, device, seed: int = EVAL_SEED,
              factors: bool = False):
    """Fixed held-out targets: `n_renders` renders then `n_samples` generator samples (psi 1, no mixing), on
    `device`; with `factors`, also the renders' `Factors` and the samples' codes."""
    g = torch.Generator().manual_seed(seed)
    f = sample_factors(n_renders, g).to(device)
    z = torch.randn(n_samples, G.z_dim, generator=g).to(device)
    imgs = [render(f, G.resolution)]
    ws = G.mapping(z) if n_samples else None
    if n_samples:
        imgs.append(G.synthesis(ws, noise_mode="const").float())
    x = torch.cat(imgs)
    return (x, f, ws) if factors else x


def _factor_mae(a: dict, b: dict) -> dict[str, float]:
    return {k: round((a[k] - b[k]).abs().mean().item() / FACTOR_SPECS[k].span, 4) for k in a}


@torch.no_grad()
def evaluate_encoder(net: ReStyle, oracle: Oracle | None | bool = None, n: int = 512, n_iters: int = 3,
                     seed: int = EVAL_SEED, batch_size: int = 64) -> dict:
    """Reconstruction quality of `net` (eval mode) on `n` held-out renders and `n` generator samples (psi 1)
    from `seed`, at the generator's resolution, after `n_iters` refinement steps.

    For each set: pixel `mse` and `psnr` (dB, peak-to-peak 2) of the clamped reconstruction, and with an
    oracle (default: the shipped one) `factor_mae`: per factor the mean |oracle(reconstruction) -
    oracle(target)| as a fraction of the factor's range, and `mean_factor_mae`. Renders also get
    `mean_factor_mae_vs_true` (oracle(reconstruction) vs the true factors) next to `oracle_floor` (oracle(target)
    vs the true factors), and `average_face_mean_factor_mae` (the average image's error: the no-encoder
    baseline); samples get `latent_mse` to their true codes. `oracle=False`: no factor errors.
    """
    if n < 1:
        raise InputError(f"evaluation needs at least one held-out face, got n={n}")
    G = net.G
    dev = net.latent_avg.device
    if oracle is None:
        oracle = load_oracle(device=dev)
    oracle = oracle.to(dev) if oracle is not False else None
    x, f, ws_true = _held_out(G, n, n, dev, seed, factors=True)
    recon, ws = [], []
    for chunk in x.split(batch_size):
        r = net.invert(chunk, n_iters)
        recon.append(r.images.float().clamp(-1, 1))
        ws.append(r.ws)
    recon, ws = torch.cat(recon), torch.cat(ws)
    out: dict = {"n": n, "n_iters": n_iters, "seed": seed}
    for name, sl in (("renders", slice(0, n)), ("samples", slice(n, 2 * n))):
        mse = (recon[sl] - x[sl].clamp(-1, 1)).square().flatten(1).mean(1)
        rep = {"mse": round(mse.mean().item(), 5),
               "psnr": round((10 * torch.log10(4.0 / mse.clamp_min(1e-12))).mean().item(), 2)}
        if oracle is not None:
            ra, ta = oracle.measure(recon[sl]), oracle.measure(x[sl])
            rep["factor_mae"] = _factor_mae(ra, ta)
            rep["mean_factor_mae"] = round(sum(rep["factor_mae"].values()) / len(ra), 4)
            if name == "renders":
                true = {k: getattr(f, k).cpu() for k in ra}
                vs_true, floor = _factor_mae(ra, true), _factor_mae(ta, true)
                rep["mean_factor_mae_vs_true"] = round(sum(vs_true.values()) / len(ra), 4)
                rep["oracle_floor"] = round(sum(floor.values()) / len(ra), 4)
                avg = oracle.measure(net.average_image().float().clamp(-1, 1))
                base = _factor_mae({k: v.expand(n) for k, v in avg.items()}, ta)
                rep["average_face_mean_factor_mae"] = round(sum(base.values()) / len(ra), 4)
        if name == "samples":
            rep["latent_mse"] = round((ws[sl] - ws_true).square().mean().item(), 5)
        out[name] = rep
    return out


def _summary(ev: dict) -> str:
    parts = []
    for name in ("renders", "samples"):
        r = ev[name]
        s = f"{name}: PSNR {r['psnr']:.2f} dB"
        if "mean_factor_mae" in r:
            s += f", oracle-factor MAE {r['mean_factor_mae']:.3f} of range"
        if name == "renders" and "average_face_mean_factor_mae" in r:
            s += f" (average face {r['average_face_mean_factor_mae']:.3f}, oracle floor {r['oracle_floor']:.3f})"
        parts.append(s)
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------------------
# Training loop, export, CLI


def _generator_for(out: Path, generator) -> Generator:
    if isinstance(generator, Generator):
        return generator
    if generator is None:
        path = read_state(out).get("generator", {}).get("path")
        if not path:
            raise InputError(f"{out}: no --generator given and the checkpoint names none")
        generator = path
    return load_generator(generator)


def train_encoder(out: str | os.PathLike, generator, minutes: float = 9.0, cfg: WorldEncoderConfig | None = None,
                  device: str | torch.device = "cpu", resume: bool = False, batch: int | None = None,
                  checkpoint_minutes: float = 3.0, max_steps: int | None = None, log_every: int = 50,
                  eval_n: int = 512, oracle="config", progress: bool = True,
                  init: str | os.PathLike | None = None) -> dict:
    """Train (or continue) an encoder for `generator` (a `Generator` or a file; None on resume: the stored
    path) in folder `out` for `minutes` of wall time or `max_steps` steps of this call.

    `resume=True` continues the checkpoint in `out` (its stored config wins; only `batch` may change) or
    starts fresh; without it an existing checkpoint is an error. `init`: an encoder file (`save_encoder`
    format, e.g. the shipped world-encoder) whose weights a new run starts from (ignored when resuming). At
    the end, `evaluate_encoder` on `eval_n`
    held-out renders and samples (0: skip) goes into state.json. Returns the final state."""
    out = Path(out)
    has_ckpt = existing_checkpoint(out, resume)
    gen_path = None if isinstance(generator, Generator) or generator is None else str(Path(generator).resolve())
    if generator is None and not has_ckpt:
        raise InputError("no generator: pass --generator with the world generator file")
    G = _generator_for(out, generator)
    tr, elapsed_before, state = EncoderTrainer.open(out, G, device, cfg, batch, has_ckpt, oracle)
    if has_ckpt:
        gen_path = gen_path or state.get("generator", {}).get("path")
        if init is not None:
            log.warning("--init %s is ignored: resuming the checkpoint in %s", init, out)
        if cfg is not None:  # a value asked for (not the default) that the checkpoint does not have
            default = WorldEncoderConfig()
            for k in ("render_frac", "pair_frac", "pair_weight"):
                if getattr(cfg, k) != getattr(default, k) and getattr(cfg, k) != getattr(tr.cfg, k):
                    log.warning("%s %s is ignored: resuming the checkpoint in %s with its %s %s", k,
                                getattr(cfg, k), out, k, getattr(tr.cfg, k))
    elif init is not None:
        tr.init_from(init)
        log.info("initialized from %s", init)
    n_params = sum(p.numel() for p in tr.encoder.parameters())
    log.info("world encoder %.2fM params (%.1f MB fp32), %d x %d W+ of a %d² generator, batch %d (%d renders, "
             "%d render pairs), %d refinement steps, oracle %s, device %s", n_params / 1e6, n_params * 4 / 1e6,
             G.num_ws, G.w_dim, G.resolution, tr.cfg.batch, tr.n_render, tr.n_pair, tr.cfg.n_iters,
             "on" if tr.oracle is not None else "off", tr.device)
    extra_gen = {"generator": {**tr.generator_info(), "path": gen_path}, "device": _device_name(tr.device)}
    init_rec = read_state(out).get("init") if has_ckpt else _init_record(init) if init is not None else None
    if init_rec is not None:
        extra_gen["init"] = init_rec

    clock = Clock(elapsed_before)

    def record(means: dict, n: int, seconds: float) -> tuple[dict, str]:
        rec = {"step": tr.step_count, "kimg": round(tr.nimg / 1000, 2), **means,
               "sec_per_step": round(seconds / n, 4), "img_per_sec": round(n * tr.cfg.batch / seconds, 1),
               "train_seconds": clock.train_seconds()}
        log.info("step %d: loss %.4f, l2 %.4f (first step %.4f), PSNR %.2f dB; %.1f img/s (%.0f ms/step)",
                 tr.step_count, means["loss"], means["l2"], means["l2_first"], means["psnr"],
                 rec["img_per_sec"], 1000 * rec["sec_per_step"])
        return rec, f"world encoder loss {means['loss']:.3f} PSNR {means['psnr']:.1f}"

    def save() -> None:
        tr.save(out, {"train_seconds": clock.train_seconds(), **extra_gen})
        log.info("checkpoint at step %d", tr.step_count)

    steps_here = run_steps(tr.step, out / "log.jsonl", clock, desc="world encoder", minutes=minutes,
                           max_steps=max_steps, checkpoint_minutes=checkpoint_minutes, log_every=log_every,
                           progress=progress, record=record, save=save)
    extra = {"train_seconds": clock.train_seconds(), **extra_gen}
    if steps_here:
        seconds = time.time() - clock.t0
        log.info("%d steps in %.1f s of this call (%.1f img/s with start-up)", steps_here, seconds,
                 steps_here * tr.cfg.batch / max(seconds, 1e-9))
    if eval_n > 0:
        tr.train_mode(False)
        try:
            extra["evaluation"] = evaluate_encoder(tr.net, tr.oracle or False, eval_n, tr.cfg.n_iters)
        finally:
            tr.train_mode(True)
        log.info("held-out: %s", _summary(extra["evaluation"]))
    tr.save(out, extra)
    return read_state(out)


def evaluate_checkpoint(out: str | os.PathLike, generator=None, device: str | torch.device = "cpu",
                        eval_n: int = 512, n_iters: int | None = None) -> dict:
    """`--eval-only`: evaluate the checkpoint's encoder and record the result in its state.json."""
    out = Path(out)
    state = read_state(out)
    G = _generator_for(out, generator).to(device)
    net = load_encoder(out / "encoder.safetensors", G, device)
    cfg = WorldEncoderConfig.from_dict(state["config"])
    oracle = _resolve_oracle(cfg.oracle, torch.device(device))
    ev = evaluate_encoder(net, oracle or False, eval_n, n_iters or cfg.n_iters)
    log.info("held-out: %s", _summary(ev))
    state["evaluation"] = ev
    write_text(out / "state.json", json.dumps(state, indent=1))
    return ev


FINE_TUNE_COMMAND = ("micromotion world train encoder --init FILE --lr LR --minutes M "
                     "[--pair-frac P --pair-weight W]")


def _device_name(device) -> str:
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _init_record(init: str | os.PathLike) -> dict:
    """What a run started with `--init FILE` keeps of FILE in state.json: its path, step and, when FILE was itself
    a fine-tune, its `fine_tuned` record, so that the export can extend the chain of stages."""
    from safetensors import safe_open

    with safe_open(str(init), "pt") as f:
        meta = f.metadata() or {}
    rec = {"path": str(init), "step": meta.get("step")}
    if "fine_tuned" in meta:
        rec["fine_tuned"] = json.loads(meta["fine_tuned"])
    return rec


def fine_tuned_record(state: dict) -> dict | None:
    """The `fine_tuned` metadata of an exported fine-tune (a run started from `--init`; None otherwise): where the
    chain started, every stage's minutes and learning rate (and pair loss), the device, the command. The shipped
    encoder's record (written by hand before this existed) has the same keys."""
    init = state.get("init")
    if not init:
        return None
    prev = init.get("fine_tuned") or {}
    cfg = state["config"]
    stage = {"minutes": round(float(state.get("train_seconds", 0.0)) / 60, 1), "lr": cfg["lr"]}
    if cfg.get("pair_frac"):
        stage.update(pair_frac=cfg["pair_frac"], pair_weight=cfg["pair_weight"])
    start = prev.get("from") or f"{Path(init['path']).name} (step {init.get('step')})"
    return {"from": start, "stages": [*prev.get("stages", []), stage], "device": state.get("device", "unknown"),
            "command": FINE_TUNE_COMMAND}


def export_encoder(ckpt: str | os.PathLike, path: str | os.PathLike, generator=None, compact: bool = False) -> Path:
    """Write the checkpoint's encoder as one `save_encoder` file (EncoderConfig and the generator's shape and
    fingerprint in the metadata, plus the last evaluation and, for a fine-tune, `fine_tuned_record`), checked by
    loading it. compact: float16 tensors, as the shipped `world-encoder.safetensors` (default fp32)."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    G = _generator_for(ckpt, generator)
    net = load_encoder(ckpt / "encoder.safetensors", G)
    meta = {"trained_by": "micromotion.world.encoder_train", "step": state["step"],
            "n_iters": state["config"]["n_iters"]}
    if "evaluation" in state:
        meta["evaluation"] = json.dumps(state["evaluation"])
    tuned = fine_tuned_record(state)
    if tuned is not None:
        meta["fine_tuned"] = json.dumps(tuned)
    save_encoder(net, path, meta, dtype=torch.float16 if compact else torch.float32)
    load_encoder(path, G)  # refuse to leave something unreadable unnoticed
    return Path(path)


def load_world_encoder(path: str | os.PathLike, G: Generator, device: str | torch.device | None = None) -> ReStyle:
    """An exported world encoder paired with the world generator `G` it was trained for: an eval-mode `ReStyle`
    (`.invert(images, n_iters)`). The same as `micromotion.models.encoder.load_encoder`."""
    return load_encoder(path, G, device)


def main(argv=None, prog: str = "python -m micromotion.world.encoder_train") -> None:
    p = trainer_parser(prog, "Train a ReStyle encoder into the world generator's W+ on its samples and on renders; "
                             "resumable.",
                       "micromotion world train encoder --generator world.safetensors --out "
                       "runs/wenc --minutes 8 --resume --export runs/world-encoder.safetensors",
                       what="encoder", batch=32, export="the encoder as one safetensors file",
                       compact="export float16 (the shipped world-encoder.safetensors)")
    p.add_argument("--generator", default=None, help="the world generator file (default on resume: the run's)")
    p.add_argument("--eval-n", type=int, default=512, help="held-out renders and samples for the report (0: skip)")
    p.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoint in --out")
    p.add_argument("--n-iters", type=int, default=None, help="refinement steps (training of a new run; evaluation)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate of a new run (default 3e-4)")
    p.add_argument("--seed", type=int, default=None, help="seed of a new run (default 0)")
    p.add_argument("--oracle", default=None, help="oracle of a new run: 'default' (shipped), a file, or 'none'")
    p.add_argument("--render-frac", type=float, default=None, help="share of single renders in a new run's batches "
                   "(default 0.3)")
    p.add_argument("--pair-frac", type=float, default=None, help="share of same-identity render pairs in a new "
                   "run's batches (default 0)")
    p.add_argument("--pair-weight", type=float, default=None, help="weight of the pairs' factor-difference loss "
                   "(default 1)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--init", default=None, help="a new run starts from this encoder file's weights")

    def run(a, device: str) -> None:
        cfg = WorldEncoderConfig.tiny() if a.tiny else WorldEncoderConfig()
        override(cfg, n_iters=a.n_iters, lr=a.lr, seed=a.seed, oracle=a.oracle, render_frac=a.render_frac,
                 pair_frac=a.pair_frac, pair_weight=a.pair_weight)
        if a.eval_only:
            evaluate_checkpoint(a.out, a.generator, device, a.eval_n, a.n_iters)
        elif a.minutes > 0 or a.max_steps:
            state = train_encoder(a.out, a.generator, a.minutes, cfg, device, a.resume, a.batch,
                                  a.checkpoint_minutes, a.max_steps, a.log_every, a.eval_n, init=a.init)
            log.info("done: step %d, %.1f kimg, %.1f min of training in total", state["step"],
                     state["nimg"] / 1000, state["train_seconds"] / 60)
            if "evaluation" in state:
                log.info("evaluation: %s", json.dumps(state["evaluation"], indent=1))
        if a.export:
            path = export_encoder(a.out, a.export, a.generator, compact=a.compact)
            log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)

    run_main(p, argv, run)


if __name__ == "__main__":  # pragma: no cover
    main()
