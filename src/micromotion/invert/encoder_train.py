"""Training a ReStyle encoder for a photo model (issue 22): photos -> `mobilestylegan-ffhq-1024`'s W+ in one pass.

`micromotion encoder train --model mobilestylegan-ffhq-1024 --out DIR --minutes M [--resume] [--export FILE]`

The loop is the world encoder's (`world/train/encoder.py`, after yuval-alaluf/restyle-encoder
`training/coach_restyle_psp.py`): per batch `n_iters` refinement steps from the average image, x_t = concat(x,
y_{t-1}), w_t = w_{t-1} + E(x_t), a loss and a backward pass at every step, one optimizer step per batch; the
generator is frozen. What differs for real faces:

- Targets are the model's own samples (truncation psi uniform in [psi_min, psi_max], style mixing), rendered at
  1024² and pooled to the encoder's 256²; their true W+ codes are known.
- The encoder's input is the sample corrupted as photos are (`invert.augment`: misalignment, colour casts,
  greyscale, blur, noise, JPEG, posterization); every loss compares with the clean sample.
- Losses: pixel L2 at 256² and at 64² (multi-scale), L2 to the true W+ code, a penalty on the refinement
  deltas after the first step, and an identity term: the distance between dlib face descriptors
  (`models.dlib_face`, the PyTorch port of dlib's network) of the reconstruction and the clean sample, on the
  dlib chip's place in an FFHQ-aligned image (`CHIP_BOX`). Identity distances reported by the evaluation are
  therefore of a network that was in the loss; PSNR and (in `benchmarks/bench_face_encoder.py`) landmark error are
  the measures it was not trained on directly.
- The network: an IR-SE backbone of six stride-2 stages (256² -> 4²) and one narrow map2style head per W+ layer
  (`EncoderConfig.head_width`), so the fp16 export stays under 40 MB.

Checkpoint folder (no pickle; every file under 16 MB, tensors split over numbered shards named by step):
  encoder-sSTEP.NN.safetensors, optim_avg-sSTEP.NN..., optim_avg_sq-sSTEP.NN..., state.json (last, naming the
  current set; older sets are removed after it), log.jsonl,
  samples.png (held-out samples above their reconstructions).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, InputError
from ..generators import load_generator
from ..io.files import config_from_dict, fingerprint_matches, load_sharded, save_sharded, write_text
from ..models.encoder import (EncoderConfig, ReStyle, build_encoder, generator_fingerprint, load_encoder,
                              save_encoder)
from ..world.train.common import (Clock, adam_step, existing_checkpoint, override, read_checkpoint_state,
                                  run_main, run_steps, trainer_parser)
from ..world.train.encoder import EncoderTrainer, WorldEncoderConfig
from ..models.dlib_face import CHIP_BOX, chip_crops  # noqa: F401  (CHIP_BOX: re-exported)
from .augment import Augment, augment

log = logging.getLogger(__name__)

__all__ = ["FaceEncoderConfig", "FaceEncoderTrainer", "train_face_encoder", "evaluate_face_encoder",
           "export_face_encoder", "CHIP_BOX"]

STATE_FORMAT = "micromotion-face-encoder-train"
STATE_VERSION = 1
CKPT_FORMAT = "micromotion-face-encoder-ckpt"  # the shards' metadata
EVAL_SEED = 922_001  # held-out codes; training draws from `seed` on its own generator
SHARD_BYTES = 15_000_000
# what `save` may delete: the shards it wrote for a step (encoder-s12.00.safetensors) or in the first format
# (encoder.00.safetensors), never another file of the folder (an exported encoder.safetensors, say)
_OLD_SHARD = re.compile(r"(encoder|optim_avg|optim_avg_sq)(-s\d+)?\.\d{2}\.safetensors")



@dataclass
class FaceEncoderConfig(WorldEncoderConfig):
    """Network and hyperparameters. Default: 256² input, IR-SE stages of 32/48/64/128/192/256 channels (1, 2,
    2, 3, 3, 2 units) down to 4², heads 128 wide; for the 23 x 512 W+ of mobilestylegan-ffhq-1024 that is 17.0 M
    parameters (34 MB as fp16)."""

    input_size: int = 256
    units: tuple[int, ...] = (1, 2, 2, 3, 3, 2)
    widths: tuple[int, ...] = (32, 48, 64, 128, 192, 256)
    stem_width: int = 32
    head_width: int = 128
    batch: int = 32
    lr: float = 2e-4
    warmup: int = 200
    n_iters: int = 2
    render_frac: float = 0.0  # no world renders: samples only
    oracle: str = "none"
    coarse_weight: float = 1.0  # pixel L2 at a quarter of the input size
    id_weight: float = 0.3  # dlib descriptor distance; 0: no identity network
    identity: str = "default"  # dlib's network: "default" (face-recognition-models' file) or a .dat path
    augment: Augment = field(default_factory=Augment)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.augment, dict):
            aug = dict(self.augment)
            if "jpeg_quality" in aug:
                aug["jpeg_quality"] = tuple(aug["jpeg_quality"])
            self.augment = config_from_dict(Augment, aug, "augmentation", CheckpointError)
        if self.render_frac or self.pair_frac:
            raise InputError("a photo model's encoder trains on its samples only (render_frac = pair_frac = 0)")

    @classmethod
    def tiny(cls) -> "FaceEncoderConfig":
        """32² input, four thin stages (tests, CPU smoke runs); any generator."""
        return cls(input_size=32, units=(1, 1, 1, 1), widths=(8, 12, 16, 24), stem_width=8, se_reduction=4,
                   head_width=8, batch=4, n_iters=2, warmup=2)

    def encoder_config(self, G) -> EncoderConfig:
        return EncoderConfig(variant=self.variant, n_styles=G.num_ws, w_dim=G.w_dim, input_size=self.input_size,
                             units=self.units, widths=self.widths, stem_width=self.stem_width,
                             se_reduction=self.se_reduction, head_width=self.head_width)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["augment"]["jpeg_quality"] = list(self.augment.jpeg_quality)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FaceEncoderConfig":
        return config_from_dict(cls, d, "face encoder", CheckpointError)


def _load_identity(cfg: FaceEncoderConfig, device):
    if not cfg.id_weight:
        return None
    from ..models.dlib_face import load_dlib_face

    return load_dlib_face(None if cfg.identity == "default" else cfg.identity, device).eval()


class FaceEncoderTrainer(EncoderTrainer):
    """`EncoderTrainer` for a photo model: clean targets, corrupted inputs, multi-scale pixel and identity
    losses, sharded checkpoints."""

    config_class = FaceEncoderConfig

    def __init__(self, cfg: FaceEncoderConfig, G, device: str | torch.device = "cpu", identity=None):
        super().__init__(cfg, G, device, oracle=None)
        self.net.opts["trained_by"] = "micromotion.invert.encoder_train"
        self.identity = identity if identity is not None else _load_identity(cfg, self.device)

    def _identity(self, images: torch.Tensor) -> torch.Tensor:
        return self.identity.embed(chip_crops(images).float())

    @torch.no_grad()
    def targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean samples pooled to the input size [B, 3, S, S], their codes [B, num_ws, w_dim])."""
        ws = self.sample_codes(self.cfg.batch)
        with self.amp():
            x = self.net._pool(self.G.synthesis(ws, noise_mode="const").float())
        return x.float().clamp(-1, 1), ws

    def step(self) -> dict[str, torch.Tensor]:
        cfg, net, G = self.cfg, self.net, self.G
        lr = cfg.lr * min(1.0, (self.step_count + 1) / max(1, cfg.warmup))
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, ws_true = self.targets()
        with torch.no_grad():
            x_in = augment(x, cfg.augment, self.gen)
            x_coarse = F.avg_pool2d(x, 4)
            id_target = self._identity(x) if self.identity is not None else None
        n = x.shape[0]
        w_prev = net.latent_avg.unsqueeze(0).expand(n, -1, -1)
        y_prev = self.avg_image.expand(n, -1, -1, -1)
        self.opt.zero_grad(set_to_none=True)
        stats: dict[str, torch.Tensor] = {}
        for t in range(cfg.n_iters):
            with self.amp():
                delta = self.encoder(torch.cat([x_in, y_prev], dim=1)).float()
                w = w_prev + delta
                y = net._pool(G.synthesis(w, noise_mode="const").float())
            parts = {"l2": (y - x).square().mean(), "coarse": (F.avg_pool2d(y, 4) - x_coarse).square().mean(),
                     "latent": (w - ws_true).square().mean()}
            loss = (cfg.l2_weight * parts["l2"] + cfg.coarse_weight * parts["coarse"]
                    + cfg.latent_weight * parts["latent"])
            if id_target is not None:
                with self.amp():
                    parts["identity"] = (self._identity(y) - id_target).float().norm(dim=1).mean()
                loss = loss + cfg.id_weight * parts["identity"]
            if t > 0 and cfg.delta_weight:
                parts["delta"] = delta.square().mean()
                loss = loss + cfg.delta_weight * parts["delta"]
            loss.backward()
            y_prev, w_prev = y.detach(), w.detach()
            if t == 0:
                stats["l2_first"] = parts["l2"].detach()
        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), 10.0)
        self.opt.step()
        stats.update({k: v.detach() for k, v in parts.items()})
        stats["loss"] = loss.detach()
        stats["psnr"] = 10 * torch.log10(4.0 / stats["l2"].clamp_min(1e-12))
        self.step_count += 1
        self.nimg += n
        return stats

    # ---- checkpoints: tensors in shards under 16 MB
    def save(self, out: Path, extra: dict | None = None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        enc = {f"encoder.{k}": v.float() if v.is_floating_point() else v for k, v in self.encoder.state_dict().items()}
        enc["latent_avg"] = self.net.latent_avg.float()
        avg, avg_sq = self.optimizer_tensors()
        meta = {"format": CKPT_FORMAT, "step": str(self.step_count)}
        # Each step's shards have stems of their own (encoder-s<step>.NN...): the set state.json names stays whole
        # until the new state.json replaces it, so a save killed half-way leaves the previous checkpoint usable.
        shards = {}
        for name, t in (("encoder", enc), ("optim_avg", avg), ("optim_avg_sq", avg_sq)):
            stem = f"{name}-s{self.step_count}"
            shards[name] = {"stem": stem, "count": save_sharded(t, out, stem, meta, SHARD_BYTES)}
        try:
            self._save_samples(out / "samples.png")
        except Exception as e:  # a picture must not cost the checkpoint  # noqa: BLE001
            log.warning("could not write samples.png (%s)", e)
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.cfg.to_dict(),
                 "generator": self.generator_info(), "step": self.step_count, "nimg": self.nimg,
                 "adam_step": adam_step(self.opt), "shards": shards, **(extra or {})}
        write_text(out / "state.json", json.dumps(state, indent=1))
        keep = {f"{v['stem']}." for v in shards.values()}
        for f in out.glob("*.safetensors"):  # our shards of earlier steps, now superseded; nothing else
            if _OLD_SHARD.fullmatch(f.name) and not f.name.startswith(tuple(keep)):
                f.unlink(missing_ok=True)

    @torch.no_grad()
    def _save_samples(self, path: Path, n: int = 8) -> None:
        """Held-out samples (psi 0.7), clean and corrupted, above their reconstructions, at the input size."""
        from ..render import contact_sheet, save_png, to_uint8

        x = self.net._pool(held_out(self.G, n, 0.7, self.device)[0])
        bad = augment(x, self.cfg.augment, torch.Generator(self.device).manual_seed(EVAL_SEED + 1))
        self.train_mode(False)
        try:
            rec, rec_bad = (self.net._pool(self.net.invert(v, max(3, self.cfg.n_iters)).images) for v in (x, bad))
        finally:
            self.train_mode(True)
        save_png(contact_sheet(to_uint8(torch.cat([x, rec, bad, rec_bad]).clamp(-1, 1)), n), path)

    @classmethod
    def load(cls, out: Path, G, device="cpu", identity=None) -> tuple["FaceEncoderTrainer", dict]:
        state = read_state(out)
        info = state.get("generator", {})
        if info.get("fingerprint") is not None and not fingerprint_matches(info["fingerprint"], G):
            raise CheckpointError(f"{out}: the checkpoint was trained for another generator (fingerprint "
                                  f"{info['fingerprint']}); this one is {generator_fingerprint(G)}. Pass the "
                                  f"--model of the run, or start a new --out")
        tr = cls(FaceEncoderConfig.from_dict(state["config"]), G, device, identity)
        try:
            enc, t, t2 = (_load_shards(out, state, name) for name in ("encoder", "optim_avg", "optim_avg_sq"))
            tr.encoder.load_state_dict({k[len("encoder."):]: v for k, v in enc.items() if k.startswith("encoder.")})
            tr.net.latent_avg.copy_(enc["latent_avg"])
            tr.restore_optimizer(t, t2, state["adam_step"])
        except CheckpointError:
            raise  # names the shard already
        except (OSError, KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{out}: checkpoint is incomplete or does not match its state.json "
                                  f"({type(e).__name__}: {str(e)[:200]})") from None
        tr.avg_image = tr.net.average_image()
        tr.step_count, tr.nimg = int(state["step"]), int(state["nimg"])
        tr.train_mode(True)
        return tr, state


def read_state(out: str | os.PathLike) -> dict:
    return read_checkpoint_state(out, STATE_FORMAT, STATE_VERSION, "face encoder training")


def _load_shards(out: Path, state: dict, name: str) -> dict[str, torch.Tensor]:
    """One tensor set of the checkpoint, its shards checked to be of the step state.json records (a set
    half-rewritten by an interrupted save is refused, naming the shard)."""
    entry = state["shards"][name]
    stem, count = (entry["stem"], entry["count"]) if isinstance(entry, dict) else (name, entry)
    return load_sharded(out, stem, count, expect={"format": CKPT_FORMAT, "step": str(state["step"])})


# ----------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def held_out(G, n: int, psi: float, device, seed: int = EVAL_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """n held-out samples (images at G's resolution, codes) at truncation psi, no mixing."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    ws = torch.cat([G.mapping(c, psi) for c in z.split(16)])
    return torch.cat([G.synthesis(c, noise_mode="const").float() for c in ws.split(16)]).clamp(-1, 1), ws


@torch.no_grad()
def evaluate_face_encoder(net: ReStyle, identity=None, n: int = 64, n_iters: int = 3,
                          psis: tuple[float, ...] = (0.7, 1.0), batch: int = 16) -> dict:
    """Held-out samples (seed `EVAL_SEED`, never drawn in training) at each truncation psi: PSNR at the input
    size, the dlib-port descriptor distance of reconstruction to sample (on `CHIP_BOX`; that network is in the
    training loss) and the share under 0.5, and the W+ error; for clean inputs and for `Augment()`-corrupted ones."""
    dev = net.latent_avg.device
    out = {}
    for psi in psis:
        x, ws = held_out(net.G, n, psi, dev)
        x = net._pool(x)
        # corrupted all at once: the draws, so the report, must not depend on `batch`
        bad = augment(x, Augment(), torch.Generator(dev).manual_seed(EVAL_SEED + 1))
        for name, inp in (("clean", x), ("corrupted", bad)):
            recs = [net.invert(c, n_iters) for c in inp.split(batch)]
            y = net._pool(torch.cat([r.images for r in recs]).float().clamp(-1, 1))
            w = torch.cat([r.ws for r in recs])
            mse = (y - x).square().mean((1, 2, 3))
            r = {"psnr": round(float((10 * torch.log10(4 / mse.clamp_min(1e-12))).mean()), 2),
                 "w_mse": round(float((w - ws).square().mean()), 5)}
            if identity is not None:
                d = torch.cat([(identity.embed(chip_crops(a)) - identity.embed(chip_crops(b))).norm(dim=1)
                               for a, b in zip(y.split(batch), x.split(batch))])
                r["id_distance"] = round(float(d.mean()), 4)
                r["id_under_0.5"] = round(float((d < 0.5).float().mean()), 3)
            out[f"psi{psi:g}_{name}"] = r
    out.update({"n": n, "n_iters": n_iters, "seed": EVAL_SEED})
    return out


# ----------------------------------------------------------------------------------------------------------
# Training loop, export, CLI


def train_face_encoder(out: str | os.PathLike, model: str | None, minutes: float = 9.0,
                       cfg: FaceEncoderConfig | None = None, device: str | torch.device = "cpu",
                       resume: bool = False, batch: int | None = None, checkpoint_minutes: float = 3.0,
                       max_steps: int | None = None, log_every: int = 50, eval_n: int = 64, progress: bool = True,
                       G=None, identity=None) -> dict:
    """Train (or continue) an encoder for `model` (a registry name or file; None on resume: the stored one; or
    a `Generator` as `G`) in folder `out` for `minutes` of wall time or `max_steps` steps of this call. At the
    end, `evaluate_face_encoder` on `eval_n` held-out samples per psi (0: skip) goes into state.json."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; --out is the checkpoint folder (new or to resume)")
    has_ckpt = existing_checkpoint(out, resume)
    if model is None and has_ckpt:
        model = read_state(out).get("generator", {}).get("model")
    if G is None:
        if model is None:
            raise InputError("no model: pass --model (a registry name such as mobilestylegan-ffhq-1024, or a file)")
        G = load_generator(model)
    tr, elapsed_before, _ = FaceEncoderTrainer.open(out, G, device, cfg, batch, has_ckpt, identity)
    n_params = sum(p.numel() for p in tr.encoder.parameters())
    log.info("face encoder %.2fM params (%.1f MB fp16), %d x %d W+ of a %d² generator, batch %d, %d refinement "
             "steps, identity loss %s, device %s", n_params / 1e6, n_params * 2 / 1e6, G.num_ws, G.w_dim,
             G.resolution, tr.cfg.batch, tr.cfg.n_iters, "on" if tr.identity is not None else "off", tr.device)
    dev_name = torch.cuda.get_device_name(tr.device) if tr.device.type == "cuda" else tr.device.type
    if model is not None and Path(model).expanduser().is_file():  # a file: found again from any folder
        model = Path(model).expanduser().resolve()
    extra_gen = {"generator": {**tr.generator_info(), "model": str(model) if model is not None else None},
                 "device": dev_name}
    clock = Clock(elapsed_before)

    def record(means: dict, k: int, seconds: float) -> tuple[dict, str]:
        rec = {"step": tr.step_count, "kimg": round(tr.nimg / 1000, 2), **means,
               "sec_per_step": round(seconds / k, 4), "img_per_sec": round(k * tr.cfg.batch / seconds, 1),
               "train_seconds": clock.train_seconds()}
        log.info("step %d: loss %.4f, PSNR %.2f dB (first step %.2f), identity %.3f, latent %.4f; %.1f img/s",
                 tr.step_count, means["loss"], means["psnr"], 10 * math.log10(4 / max(means["l2_first"], 1e-12)),
                 means.get("identity", float("nan")), means["latent"], rec["img_per_sec"])
        return rec, f"face encoder loss {means['loss']:.3f} PSNR {means['psnr']:.1f}"

    def save() -> None:
        tr.save(out, {"train_seconds": clock.train_seconds(), **extra_gen})
        log.info("checkpoint at step %d", tr.step_count)

    run_steps(tr.step, out / "log.jsonl", clock, desc="face encoder", minutes=minutes, max_steps=max_steps,
              checkpoint_minutes=checkpoint_minutes, log_every=log_every, progress=progress, record=record, save=save)
    extra = {"train_seconds": clock.train_seconds(), **extra_gen}
    if eval_n > 0:
        tr.train_mode(False)
        try:
            extra["evaluation"] = evaluate_face_encoder(tr.net, tr.identity, eval_n, max(3, tr.cfg.n_iters))
        finally:
            tr.train_mode(True)
        log.info("held-out: %s", json.dumps(extra["evaluation"]))
    tr.save(out, extra)
    return read_state(out)


def export_face_encoder(ckpt: str | os.PathLike, path: str | os.PathLike, G=None, compact: bool = True) -> Path:
    """Write the checkpoint's encoder as one `save_encoder` file (float16 unless `compact` is off), with the
    training record (steps, minutes, device, evaluation, command) in its metadata; checked by loading it."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    info = state.get("generator", {})
    if G is None:
        if not info.get("model"):
            raise InputError(f"{ckpt}: the checkpoint names no generator model; pass the generator it was trained for")
        G = load_generator(info["model"])
    elif info.get("fingerprint") is not None and not fingerprint_matches(info["fingerprint"], G):
        raise CheckpointError(f"{ckpt}: the checkpoint was trained for another generator (fingerprint "
                              f"{info['fingerprint']}); this one is {generator_fingerprint(G)}")
    cfg = FaceEncoderConfig.from_dict(state["config"])
    try:
        sd = _load_shards(ckpt, state, "encoder")
    except KeyError as e:
        raise CheckpointError(f"{ckpt}: state.json has no {e} entry; not a complete checkpoint") from None
    enc = build_encoder(cfg.encoder_config(G))
    enc.load_state_dict({k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")})
    net = ReStyle(enc, G, sd["latent_avg"][0], {"encoder_type": enc.cfg.encoder_type, "output_size": G.resolution})
    with torch.no_grad():
        net.latent_avg.copy_(sd["latent_avg"])
    meta = {"trained_by": "micromotion.invert.encoder_train", "step": state["step"], "n_iters": cfg.n_iters,
            "train_minutes": round(float(state.get("train_seconds", 0)) / 60, 1), "device": state.get("device"),
            "command": TRAIN_COMMAND}
    if "evaluation" in state:
        meta["evaluation"] = json.dumps(state["evaluation"])
    save_encoder(net, path, meta, dtype=torch.float16 if compact else torch.float32)
    load_encoder(path, G)
    return Path(path)


TRAIN_COMMAND = ("micromotion encoder train --model mobilestylegan-ffhq-1024 --out runs/fenc --minutes 9 --resume "
                 "--device cuda")


def main(argv=None, prog: str = "micromotion encoder train") -> None:
    p = trainer_parser(prog, "Train a ReStyle encoder into a photo model's W+ on its own (corrupted) samples; "
                             "resumable.", TRAIN_COMMAND + " --export face-encoder.safetensors",
                       what="encoder", batch=32, export="the encoder as one safetensors file",
                       compact="export float16 (as shipped)")
    p.add_argument("--model", default=None, help="the generator: a registry name or file (default on resume: the "
                                                 "run's)")
    p.add_argument("--eval-n", type=int, default=64, help="held-out samples per psi for the report (0: skip)")
    p.add_argument("--n-iters", type=int, default=None, help="refinement steps of a new run (default 2)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate of a new run (default 2e-4)")
    p.add_argument("--seed", type=int, default=None, help="seed of a new run (default 0)")
    p.add_argument("--id-weight", type=float, default=None, help="identity loss weight of a new run (0: off)")
    p.add_argument("--identity", default=None, help="dlib's dlib_face_recognition_resnet_model_v1.dat (default: "
                                                    "face-recognition-models')")
    p.add_argument("--log-every", type=int, default=50)

    def run(a, device: str) -> None:
        cfg = FaceEncoderConfig.tiny() if a.tiny else FaceEncoderConfig()
        override(cfg, n_iters=a.n_iters, lr=a.lr, seed=a.seed, id_weight=a.id_weight, identity=a.identity)
        if a.minutes > 0 or a.max_steps:
            state = train_face_encoder(a.out, a.model, a.minutes, cfg, device, a.resume, a.batch,
                                       a.checkpoint_minutes, a.max_steps, a.log_every, a.eval_n)
            log.info("done: step %d, %.1f kimg, %.1f min of training in total", state["step"], state["nimg"] / 1000,
                     state["train_seconds"] / 60)
        if a.export:
            path = export_face_encoder(a.out, a.export, compact=a.compact)
            log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)

    run_main(p, argv, run)


if __name__ == "__main__":  # pragma: no cover
    main()
