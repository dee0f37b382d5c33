"""Training the world CLIP: a small CLIP trained contrastively on (render, caption) pairs (issue 10).

`micromotion world train clip --out DIR --minutes M [--batch B] [--resume] [--tiny] [--export PATH]`

The model is an OpenAI-layout CLIP built from a `ClipConfig` (`ClipConfig.build`: open_clip's CLIP when
installed, else `NativeClip`; same state-dict layout), so the exported file goes through `Clip.load` and the
same text-anchor code path as ViT-B/32. Loss: symmetric InfoNCE (Radford et al. 2021) with a learnable logit
scale clamped at 100, as open_clip `training/train.py`. Images are rendered on the training device each
step (`world.faces`) at `render_size` and preprocessed exactly as at use (`Clip.preprocess("correct")`);
captions come from the true factors (`world.captions`). AdamW with linear warmup and cosine decay over
`steps`; bf16 autocast on CUDA only.

Two additions keep the image features on the motions the text anchors ask for (`group`, `multi_positive`;
both off in configs written before them). The first CLIP, trained without them, let "a person with 100% smile"
be reached by darkening the skin: with every face a stranger to every other in a batch, a caption's degree
could be matched by any feature that happened to correlate. So each batch is made of `batch / group`
identities, each rendered `group` times with the identity factors shared and every motion drawn afresh, and
those faces' captions always name a motion (`captions(p_motion=1)`): the only way to tell the `group`
renders of one face apart is by their motions. And identical caption texts in a batch (frequent: "a person
with no smile") are all positives of each other (a soft target spread over them), not negatives.
`--init FILE` starts from the weights of a Clip file (e.g. the shipped world CLIP) instead of from scratch.

Like `world.train.gan`: stops cleanly after `--minutes` (or SIGTERM/SIGINT), checkpoints every
`--checkpoint-minutes` and at the end, `--resume` continues. Checkpoint folder (no pickle):

  model.safetensors   weights (fp32), ClipConfig in the metadata
  optim.safetensors   AdamW moments (bf16) and the RNG states
  state.json          config, counters (step, images seen), last evaluation
  log.jsonl           one JSON line of loss/lr/logit scale per log interval
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import CheckpointError, InputError
from ...io.files import config_from_dict, save_safetensors, write_text
from ...models.clip import Clip, ClipConfig
from ..captions import ANCHOR_TEMPLATES, caption, captions, degree_word, phrases
from ..faces import MOTION_FACTORS, render, sample_factors
from .common import Clock, existing_checkpoint, override, read_checkpoint_state, run_main, run_steps, trainer_parser

log = logging.getLogger(__name__)

__all__ = ["WorldClipConfig", "ClipTrainer", "train_world_clip", "evaluate_clip", "export_clip", "read_state"]

STATE_FORMAT = "micromotion-world-clip-train"
STATE_VERSION = 1
MAX_LOGIT_SCALE = math.log(100.0)


@dataclass
class WorldClipConfig:
    """Network and hyperparameters. Default: 64² input with 8² patches (64 tokens), 6 x 256 vision layers,
    4 x 256 text layers, 32 tokens of context; ~21 M parameters (most in the 49408-token embedding)."""

    embed_dim: int = 256
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 256
    vision_layers: int = 6
    text_width: int = 256
    text_layers: int = 4
    context_length: int = 32
    render_size: int = 128  # the world generator's resolution; resized to image_size by Clip.preprocess
    batch: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: int = 500
    steps: int = 20000  # cosine schedule length; training also stops here
    seed: int = 0
    group: int = 1  # renders of one identity per batch, motions differing (1: every face a new identity)
    multi_positive: bool = False  # identical caption texts in a batch are positives of each other
    motion_groups: float = 0.0  # share of the batch in groups of `group` identities sharing one motion state
    adv_eps: float = 0.0  # L2 radius of adversarial images (pixels in [0, 1] at the CLIP input); 0: off
    adv_steps: int = 3  # PGD steps per batch
    adv_clean: float = 0.5  # weight of the clean-image loss beside the adversarial one

    def __post_init__(self):
        if self.batch < 2:
            raise InputError(f"batch must be at least 2 (contrastive loss), got {self.batch}")
        if self.group < 1 or self.batch % self.group:
            raise InputError(f"group must be >= 1 and divide the batch ({self.batch}), got {self.group}")
        if not 0 <= self.motion_groups <= 1 or (self.motion_groups > 0 and self.group < 2):
            raise InputError(f"motion_groups must be in [0, 1] and needs group >= 2, got {self.motion_groups} "
                             f"with group {self.group}")
        eps_ok = math.isfinite(self.adv_eps) and self.adv_eps >= 0
        if not eps_ok or self.adv_steps < 1 or not 0 <= self.adv_clean <= 1:
            raise InputError(f"adversarial training needs adv_eps >= 0, adv_steps >= 1 and adv_clean in [0, 1], got "
                             f"{self.adv_eps}, {self.adv_steps}, {self.adv_clean}")

    @classmethod
    def tiny(cls) -> "WorldClipConfig":
        """32² input, one 64-wide layer per tower (tests, CPU smoke runs)."""
        return cls(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=1, text_width=64,
                   text_layers=1, context_length=32, render_size=32, batch=4, warmup=2, steps=100)

    def clip_config(self) -> ClipConfig:
        return ClipConfig(embed_dim=self.embed_dim,
                          vision_cfg={"image_size": self.image_size, "layers": self.vision_layers,
                                      "width": self.vision_width, "patch_size": self.patch_size, "head_width": 64},
                          text_cfg={"context_length": self.context_length, "vocab_size": 49408,
                                    "width": self.text_width, "heads": self.text_width // 64,
                                    "layers": self.text_layers})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "WorldClipConfig":
        return config_from_dict(cls, d, "world CLIP", CheckpointError)


def _lr(cfg: WorldClipConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


class ClipTrainer:
    """Model, optimizer, RNGs and counters of one run; `step()` is one contrastive update."""

    def __init__(self, cfg: WorldClipConfig, device: str | torch.device = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.clip = Clip.from_config(cfg.clip_config(), seed=cfg.seed, name="world-clip").to(self.device)
        self.model = self.clip.model.train().requires_grad_(True)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)  # faces
        self.cpu_gen = torch.Generator().manual_seed(cfg.seed + 1)  # captions
        # no weight decay on gains, biases, embeddings and the logit scale (open_clip's exclusion rule)
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or "embedding" in n or "logit_scale" in n else decay).append(p)
        kw = {"fused": True} if self.device.type == "cuda" else {}
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, **kw)
        self.step_count = 0
        self.nimg = 0
        self.amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if self.device.type == "cuda" else nullcontext

    def batch(self, n: int, generator: torch.Generator | None = None, cpu_gen: torch.Generator | None = None):
        """n fresh (preprocessed images [n, 3, S, S], tokens [n, context], captions, factors) from the given
        RNGs; with `cfg.group` > 1, n / group identities each rendered `group` times with fresh motions."""
        gen = generator or self.gen
        f = sample_factors(n, gen, device=self.device)
        g = self.cfg.group
        if g > 1 and n % g:
            raise InputError(f"a batch of {n} does not split into groups of {g}")
        n_mot = int(round(n * self.cfg.motion_groups / g)) * g if g > 1 else 0  # rows in motion groups
        n_id = n - n_mot
        if g > 1:  # identity groups: identity factors of every g-th face shared; motions stay independent
            # motion groups (the last n_mot rows): motion factors shared by g different identities
            shared = {k: v[::g].repeat_interleave(g) for k, v in f.items()}
            f = f.replace(**{k: torch.cat([shared[k][:n_id], v[n_id:]]) if k not in MOTION_FACTORS else
                             torch.cat([v[:n_id], shared[k][n_id:]]) for k, v in f.items()})
        rng = cpu_gen or self.cpu_gen
        texts = captions(f[:n_id], rng, p_motion=1.0 if g > 1 else 0.7) if n_id else []
        if n_mot:  # one motion-only caption per motion group: it fits each of its faces equally
            cols = {k: v[n_id::g].detach().float().cpu().tolist() for k, v in f.items()}
            for i in range(n_mot // g):
                texts += [caption({k: c[i] for k, c in cols.items()}, rng, 1.0, motion_only=True)] * g
        with torch.no_grad():
            x = self.clip.preprocess(render(f, self.cfg.render_size))
        return x, self.clip.tokenize(texts), texts, f

    def loss(self, x: torch.Tensor, tokens: torch.Tensor, texts: list[str] | None = None,
             txt: torch.Tensor | None = None) -> torch.Tensor:
        """Symmetric InfoNCE; pairs i <-> i are positives, and with `texts` also every pair whose caption
        texts are equal (the target spread evenly over them). `txt`: text features already computed."""
        with self.amp():
            img = F.normalize(self.model.encode_image(x).float(), dim=-1)
            if txt is None:
                txt = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        logits = self.model.logit_scale.exp() * img @ txt.t()
        if texts is None:
            labels = torch.arange(x.shape[0], device=x.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        code = torch.tensor([ids[t] for t in texts], device=x.device)
        same = (code[:, None] == code[None, :]).float()  # symmetric, so one target serves both directions
        target = same / same.sum(1, keepdim=True)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2

    def perturb(self, x: torch.Tensor, tokens: torch.Tensor, texts: list[str] | None = None) -> torch.Tensor:
        """Adversarial copies of the preprocessed images `x`: L2 PGD (Madry et al. 2018) of `cfg.adv_steps`
        steps that raises the contrastive loss against the (fixed) captions, within a ball of radius
        `cfg.adv_eps` in [0, 1] pixel units (TeCoA, Mao et al. 2023). Training on them gives an image tower
        whose gradients follow what it sees, which is what the text anchors climb."""
        eps, n = self.cfg.adv_eps, self.cfg.adv_steps
        std = self.clip.std.to(x.dtype)
        lo, hi = (0 - self.clip.mean) / std, (1 - self.clip.mean) / std
        with torch.no_grad(), self.amp():
            txt = F.normalize(self.model.encode_text(tokens).float(), dim=-1)

        def project(d):
            norm = d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            return d * (eps / norm).clamp(max=1.0)

        delta = project(torch.randn(x.shape, generator=self.gen, device=x.device, dtype=x.dtype) * eps
                        / math.sqrt(x[0].numel()))
        step = 2.5 * eps / n
        for _ in range(n):
            delta.requires_grad_(True)
            loss = self.loss(x + delta / std, tokens, texts, txt=txt)
            (grad,) = torch.autograd.grad(loss, delta)
            g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = project(delta.detach() + step * g)
            delta = (torch.minimum(torch.maximum(x + delta / std, lo), hi) - x) * std  # stay a valid image
        return (x + delta / std).detach()

    def init_from(self, path: str | os.PathLike) -> None:
        """Start from the weights of a Clip file (`Clip.load`); its network must be this config's."""
        src = Clip.load(path)
        mine = self.model.state_dict()
        theirs = src.model.state_dict()
        if set(mine) != set(theirs) or any(mine[k].shape != theirs[k].shape for k in mine):
            raise InputError(f"{path}: its CLIP is not the one of this config (different layers or sizes); "
                             f"start from scratch or give a file trained with the same config")
        self.model.load_state_dict({k: v.to(self.device, mine[k].dtype) for k, v in theirs.items()})

    def step(self) -> dict[str, torch.Tensor]:
        lr = _lr(self.cfg, self.step_count)
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, tokens, texts, _ = self.batch(self.cfg.batch)
        texts = texts if self.cfg.multi_positive else None
        if self.cfg.adv_eps > 0 and self.cfg.adv_clean < 1:
            x_adv = self.perturb(x, tokens, texts)
            w = self.cfg.adv_clean
            loss = (1 - w) * self.loss(x_adv, tokens, texts)
            if w > 0:
                loss = loss + w * self.loss(x, tokens, texts)
        else:
            loss = self.loss(x, tokens, texts)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        self.step_count += 1
        self.nimg += self.cfg.batch
        return {"loss": loss.detach(), "logit_scale": self.model.logit_scale.detach().exp(),
                "lr": torch.tensor(lr)}

    # ---- checkpoints
    def save(self, out: Path, extra: dict | None = None) -> None:
        """Write the checkpoint folder (each file atomically; state.json last, as the commit)."""
        out.mkdir(parents=True, exist_ok=True)

        def put(name: str, tensors: dict, meta: dict | None = None):
            save_safetensors(tensors, out / name, meta or {})

        put("model.safetensors", {k: v.float() for k, v in self.model.state_dict().items()},
            {"config": json.dumps(self.cfg.clip_config().to_dict())})
        t = {}
        for pname, p in self.model.named_parameters():
            st = self.opt.state.get(p)
            if st:
                t[f"{pname}.exp_avg"] = st["exp_avg"].to(torch.bfloat16)
                t[f"{pname}.exp_avg_sq"] = st["exp_avg_sq"].to(torch.bfloat16)
        t["rng.device"] = self.gen.get_state()
        t["rng.cpu"] = self.cpu_gen.get_state()
        put("optim.safetensors", t)
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "config": self.cfg.to_dict(),
                 "step": self.step_count, "nimg": self.nimg, **(extra or {})}
        write_text(out / "state.json", json.dumps(state, indent=1))

    @classmethod
    def load(cls, out: Path, device="cpu") -> tuple["ClipTrainer", dict]:
        """Rebuild a trainer from a checkpoint folder written by `save`."""
        from safetensors.torch import load_file

        state = read_state(out)
        tr = cls(WorldClipConfig.from_dict(state["config"]), device)
        dev = tr.device
        try:
            tr.model.load_state_dict({k: v.to(dev) for k, v in load_file(str(out / "model.safetensors")).items()})
            t = load_file(str(out / "optim.safetensors"))
            index = {p: i for i, p in enumerate(q for g in tr.opt.param_groups for q in g["params"])}
            st = {}
            for pname, p in tr.model.named_parameters():
                if f"{pname}.exp_avg" in t:
                    st[index[p]] = {"step": torch.tensor(float(state["step"])),
                                    "exp_avg": t[f"{pname}.exp_avg"].to(dev, torch.float32).reshape(p.shape),
                                    "exp_avg_sq": t[f"{pname}.exp_avg_sq"].to(dev, torch.float32).reshape(p.shape)}
            tr.opt.load_state_dict({"state": st, "param_groups": tr.opt.state_dict()["param_groups"]})
            tr.gen.set_state(t["rng.device"])
            tr.cpu_gen.set_state(t["rng.cpu"])
        except (OSError, KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{out}: checkpoint is incomplete or does not match its state.json "
                                  f"({type(e).__name__}: {str(e)[:200]})") from None
        tr.step_count, tr.nimg = int(state["step"]), int(state["nimg"])
        return tr, state


def read_state(out: str | os.PathLike) -> dict:
    """The state.json of a world-CLIP checkpoint folder; `CheckpointError` if missing or not ours."""
    return read_checkpoint_state(out, STATE_FORMAT, STATE_VERSION, "world CLIP training")


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


@torch.no_grad()
def evaluate_clip(clip: Clip, n: int = 1024, seed: int = 12345, group: int = 64, render_size: int = 128) -> dict:
    """Held-out checks of a world CLIP on `n` fresh renders (`seed` differs from training's).

    retrieval_i2t / retrieval_t2i: top-1 accuracy within groups of `group` pairs, counting a hit when the
    retrieved caption's text equals the true one (captions repeat). anchor_spearman[motion]: Spearman
    correlation of the factor (|head_turn|) with sim(image, "100%" anchor text) - sim(image, "no" anchor text)
    of the preset template; head_turn_side_spearman: signed head_turn vs "right" - "left" texts.
    """
    dev = clip.device
    g = torch.Generator().manual_seed(seed)
    f = sample_factors(n, g).to(dev)
    texts = captions(f, g)
    feats = []
    for i in range(0, n, 256):
        feats.append(clip.encode_image(render(f[i:i + 256], render_size)))
    img = torch.cat(feats)
    hits_i2t = hits_t2i = total = 0
    for i in range(0, n - group + 1, group):
        t = texts[i:i + group]
        txt = clip.encode_text(t)
        sim = img[i:i + group] @ txt.t()
        hits_i2t += sum(t[j] == t[k] for j, k in enumerate(sim.argmax(1).tolist()))
        hits_t2i += sum(t[j] == t[k] for j, k in enumerate(sim.argmax(0).tolist()))
        total += group
    out = {"n": n, "retrieval_i2t": round(hits_i2t / max(total, 1), 4),
           "retrieval_t2i": round(hits_t2i / max(total, 1), 4), "retrieval_chance": round(1 / group, 4),
           "anchor_spearman": {}}
    for m in MOTION_FACTORS:
        tpl = ANCHOR_TEMPLATES[m]
        t = clip.encode_text([tpl.format(degree=degree_word(100)), tpl.format(degree=degree_word(0))])
        score = img @ (t[0] - t[1])
        v = getattr(f, m).abs() if m == "head_turn" else getattr(f, m)
        out["anchor_spearman"][m] = round(_spearman(v.cpu(), score.cpu()), 4)
    t = clip.encode_text(["a face turned to the right", "a face turned to the left"])
    out["head_turn_side_spearman"] = round(_spearman(f.head_turn.cpu(), (img @ (t[0] - t[1])).cpu()), 4)
    return out


def world_vocab_ids(clip: Clip) -> torch.Tensor:
    """Token ids of every word the world captions use (`captions.phrases`), plus start/end of text."""
    toks = clip.tokenize(phrases())
    return torch.unique(toks[toks != 0])


def export_clip(ckpt: str | os.PathLike, path: str | os.PathLike, compact: bool = False) -> Path:
    """Write the checkpoint's model as a `Clip.save` file (readable by `Clip.load`), checked by loading it.
    compact: float16 storage and only the token-embedding rows of the world's vocabulary (the shipped file)."""
    from safetensors.torch import load_file

    state = read_state(ckpt)
    cfg = WorldClipConfig.from_dict(state["config"])
    clip = Clip.from_config(cfg.clip_config(), name="world-clip")
    sd = {k: v.float() for k, v in load_file(str(Path(ckpt) / "model.safetensors")).items()}
    clip.model.load_state_dict(sd)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compact:
        clip.save(path, dtype=torch.float16, vocab_ids=world_vocab_ids(clip))
    else:
        clip.save(path)
    Clip.load(path)  # refuse to leave something unreadable unnoticed
    return path


def train_world_clip(out: str | os.PathLike, minutes: float = 9.0, cfg: WorldClipConfig | None = None,
                     device: str | torch.device = "cpu", resume: bool = False, batch: int | None = None,
                     checkpoint_minutes: float = 3.0, max_steps: int | None = None, log_every: int = 50,
                     eval_n: int = 1024, progress: bool = True, init: str | os.PathLike | None = None) -> dict:
    """Train (or continue) a world CLIP in folder `out` for `minutes` of wall time, `max_steps` steps of this
    call, or until `cfg.steps` in total. `resume=True` continues the checkpoint in `out` (its stored config
    wins; only `batch` may change) or starts fresh; without it an existing checkpoint is an error. `init`: a
    Clip file whose weights a new run starts from (ignored when resuming). At the end, evaluates on held-out
    renders (`eval_n`, 0 to skip) into state.json. Returns the final state."""
    out = Path(out)
    has_ckpt = existing_checkpoint(out, resume)
    if has_ckpt:
        tr, state = ClipTrainer.load(out, device)
        if init is not None:
            log.warning("--init %s is ignored: resuming the checkpoint in %s", init, out)
        if batch is not None:
            tr.cfg.batch = batch
            tr.cfg.__post_init__()  # the batch must still split into groups
        elapsed_before = float(state.get("train_seconds", 0.0))
        log.info("resumed %s at step %d", out, tr.step_count)
    else:
        cfg = copy.deepcopy(cfg) if cfg is not None else WorldClipConfig()
        if batch is not None:
            cfg.batch = batch
        cfg.__post_init__()  # the batch must still split into groups
        tr = ClipTrainer(cfg, device)
        if init is not None:
            tr.init_from(init)
            log.info("initialized from %s", init)
        elapsed_before = 0.0
        out.mkdir(parents=True, exist_ok=True)
    log.info("world CLIP %.2fM params, batch %d, device %s",
             sum(p.numel() for p in tr.model.parameters()) / 1e6, tr.cfg.batch, tr.device)

    clock = Clock(elapsed_before)

    def record(means: dict, n: int, seconds: float) -> tuple[dict, str]:
        rec = {"step": tr.step_count, "nimg": tr.nimg, **means, "sec_per_step": round(seconds / n, 4)}
        return rec, f"world CLIP loss {means['loss']:.3f} scale {means['logit_scale']:.1f}"

    run_steps(tr.step, out / "log.jsonl", clock, desc="world CLIP", minutes=minutes, max_steps=max_steps,
              checkpoint_minutes=checkpoint_minutes, log_every=log_every, progress=progress, record=record,
              save=lambda: tr.save(out, {"train_seconds": clock.train_seconds()}),
              more=lambda: tr.step_count < tr.cfg.steps)
    extra = {"train_seconds": clock.train_seconds()}
    if eval_n > 0:
        tr.model.eval()
        extra["evaluation"] = evaluate_clip(tr.clip, n=eval_n, render_size=tr.cfg.render_size,
                                            group=min(64, eval_n))
        tr.model.train()
        log.info("held-out: %s", json.dumps(extra["evaluation"]))
    tr.save(out, extra)
    return read_state(out)


def main(argv=None, prog: str = "python -m micromotion.world.clip_train") -> None:
    p = trainer_parser(prog, "Train the face world's CLIP on (render, caption) pairs made on the fly; resumable.",
                       "micromotion world train clip --out runs/wclip --minutes 9 --resume "
                       "--export runs/world-clip.safetensors",
                       what="model", batch=256, export="the model as a Clip file (Clip.load)",
                       compact="export float16 with only the world vocabulary's token embeddings (the shipped file)")
    p.add_argument("--steps", type=int, default=None, help="schedule length of a new run (default 20000)")
    p.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate of a new run (default 5e-4)")
    p.add_argument("--warmup", type=int, default=None, help="warmup steps of a new run (default 500)")
    p.add_argument("--eval-n", type=int, default=1024, help="held-out renders for the final report (0: skip)")
    p.add_argument("--group", type=int, default=None,
                   help="renders of one identity per batch with different motions (new runs; default 1)")
    p.add_argument("--motion-groups", type=float, default=None,
                   help="share of each batch in groups of --group identities sharing one motion state and one "
                        "motion-only caption (new runs; default 0)")
    p.add_argument("--multi-positive", action="store_true",
                   help="identical caption texts in a batch are positives of each other (new runs)")
    p.add_argument("--adv-eps", type=float, default=None,
                   help="adversarial training (new runs): L2 radius of PGD perturbations in [0, 1] pixel units at "
                        "the CLIP input (e.g. 1.0); gives gradients that follow the image. Default 0: off")
    p.add_argument("--adv-steps", type=int, default=None, help="PGD steps per batch (default 3)")
    p.add_argument("--adv-clean", type=float, default=None,
                   help="weight of the clean-image loss beside the adversarial one (default 0.5)")
    p.add_argument("--init", default=None, help="a new run starts from this Clip file's weights")

    def run(a, device: str) -> None:
        cfg = WorldClipConfig.tiny() if a.tiny else WorldClipConfig()
        override(cfg, steps=a.steps, lr=a.lr, group=a.group, multi_positive=a.multi_positive or None,
                 warmup=a.warmup, motion_groups=a.motion_groups, adv_eps=a.adv_eps, adv_steps=a.adv_steps,
                 adv_clean=a.adv_clean)
        cfg.__post_init__()
        if a.minutes > 0 or a.max_steps:
            state = train_world_clip(a.out, a.minutes, cfg, device, a.resume, a.batch, a.checkpoint_minutes,
                                     a.max_steps, eval_n=a.eval_n, init=a.init)
            log.info("done: step %d, %d images", state["step"], state["nimg"])
            if "evaluation" in state:
                log.info("evaluation: %s", json.dumps(state["evaluation"], indent=1))
        if a.export:
            log.info("exported %s", export_clip(a.out, a.export, compact=a.compact))

    run_main(p, argv, run, cudnn_benchmark=False)


if __name__ == "__main__":  # pragma: no cover
    main()
