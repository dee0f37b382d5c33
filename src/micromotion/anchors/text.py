"""Text anchors: CLIP-guided W+ optimization of one face toward "a person with {degree} smile" at each degree.

The paper's procedure (Wu et al., CPAL 2024, Sec. 3.2; code: `StyleCLIP/optimization/text.py`
`get_text_latent`, called from `main.py`), itself StyleCLIP's latent optimization (Patashnik et al. 2021,
`optimization/run_optimization.py`):

- start: w from a seed (z ~ N(0, I) from `torch.manual_seed(seed)`, truncation 0.7 toward the average w), or
  the W+ code of an inverted photo;
- for each degree, from the same start: minimize `clip + l2_lambda * ||w - w0||^2 + id_lambda * id` with
  `clip = 1 - logit_scale * cos(image, text) / 100` (the original's `1 - model(image, text)[0] / 100`) and
  `id = 1 - <ArcFace(image), ArcFace(start image)>`; Adam, lr 0.1 with StyleCLIP's cosine ramp (rampup 0.05,
  rampdown 0.25), 40 steps, l2_lambda 0.008, id_lambda 0.005 (StyleCLIP's own defaults: 300 steps and
  id_lambda 0; see `TextAnchorSettings.styleclip`).

Unlike the original, which runs the degrees one after another, every degree is one sample of ONE batch. The
per-sample losses are summed, not averaged, so each sample's gradient is the gradient of its own loss; Adam
works element by element, so each sample follows exactly the trajectory it would follow alone (nothing else
couples samples: the generator uses constant noise, ArcFace is frozen in eval mode).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import string
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..errors import InputError, MicromotionError
from ..invert.projector import get_lr  # StyleCLIP's schedule is NVIDIA's projector's
from ..models.clip import PREPROCESS_MODES, Clip
from ..io.files import legacy_blake2b
from .base import Anchors, anchors_cache_dir, module_fingerprint, tensor_fingerprint

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_DEGREES", "TextAnchorSettings", "text_anchors", "optimize_latents", "validate_template",
           "check_prompts_differ", "MAX_TEMPLATE_CHARS", "render_template", "check_degrees", "get_lr", "start_latent", "clip_loss", "CLIP_LOSSES",
           "reinvert_anchors"]

DEFAULT_DEGREES = ("no", "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "100%")
CLIP_LOSSES = ("logits", "cosine")
CACHE_VERSION = 1
MAX_TEMPLATE_CHARS = 500  # CLIP reads 77 tokens (about 300 characters of English); longer is a mistake or an attack


@dataclass(frozen=True)
class TextAnchorSettings:
    """Optimization settings. Defaults: the paper's code (micromotion-styleGAN `main.py`), with the corrected
    CLIP preprocessing; `paper()` also uses its preprocessing, `styleclip()` StyleCLIP's defaults.

    clip_loss: "logits" is the original formula `1 - logit_scale * cos / 100` (= 1 - cos for OpenAI's CLIPs,
    whose logit scale is 100); "cosine" is `1 - cos` whatever the model's logit scale.
    """

    steps: int = 40
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    l2_lambda: float = 0.008
    id_lambda: float = 0.005
    image_lambda: float = 0.0  # mean squared pixel change from the start image (identity term without ArcFace)
    truncation: float = 0.7
    clip_preprocess: str = "correct"
    clip_loss: str = "logits"
    noise_mode: str = "const"
    precision: str = "auto"  # "auto": bf16 autocast on GPUs, fp32 on CPUs; "fp32": fp32 everywhere

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"steps must be a positive integer, got {self.steps!r}")
        for name in ("lr", "l2_lambda", "id_lambda", "image_lambda"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (0 < self.lr_rampup <= 1 and 0 < self.lr_rampdown <= 1):
            raise InputError(f"lr_rampup and lr_rampdown must be in (0, 1], got {self.lr_rampup}, {self.lr_rampdown}")
        if self.clip_preprocess not in PREPROCESS_MODES:
            raise InputError(f"unknown CLIP preprocessing {self.clip_preprocess!r}; choose one of: "
                             f"{', '.join(PREPROCESS_MODES)}")
        if self.clip_loss not in CLIP_LOSSES:
            raise InputError(f"unknown CLIP loss {self.clip_loss!r}; choose one of: {', '.join(CLIP_LOSSES)}")
        if self.precision not in ("auto", "fp32"):
            raise InputError(f"precision must be 'auto' (bf16 autocast on GPUs) or 'fp32', got {self.precision!r}")
        if self.noise_mode not in ("const", "none"):
            raise InputError(f"noise_mode must be 'const' or 'none' (random noise would differ between samples and "
                             f"runs), got {self.noise_mode!r}")

    @classmethod
    def paper(cls, **kw) -> "TextAnchorSettings":
        """The original code exactly, including its CLIP preprocessing (upsample x7 + avgpool, no mean/std)."""
        return cls(clip_preprocess="paper", **kw)

    @classmethod
    def styleclip(cls, **kw) -> "TextAnchorSettings":
        """StyleCLIP `run_optimization.py` defaults: 300 steps, no identity loss."""
        return cls(**{"steps": 300, "id_lambda": 0.0, "clip_preprocess": "paper", **kw})

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["image_lambda"]:  # off: the same cache keys as before the setting existed
            del d["image_lambda"]
        return d


# ----------------------------------------------------------------------------------------------------------
# Templates


def validate_template(template: str) -> None:
    """Accept only literal text and `{degree}` placeholders; `{{` and `}}` are literal braces.

    Refused (InputError): any other field (`{0}`, `{}`, `{other}`), attribute access or indexing
    (`{degree.__class__}`, `{degree[0]}`), conversions (`{degree!r}`), format specs (`{degree:>10}`), unbalanced
    braces, and templates without `{degree}`. The original builds the text with `eval` of an f-string.
    """
    if not isinstance(template, str) or not template.strip():
        raise InputError("the text template is empty; give one like 'a person with {degree} smile'")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InputError(f"the text template is {len(template)} characters long; CLIP reads about 300, so keep it "
                         f"under {MAX_TEMPLATE_CHARS} (e.g. 'a person with {{degree}} smile')")
    if any(c in template for c in "\r\n\x0b\x0c\x85\u2028\u2029"):
        raise InputError(f"text template {_shown(template)}: write it on one line")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise InputError(f"text template {_shown(template)}: {e}; write literal braces as '{{{{' and '}}}}'") from None
    found = False
    for _literal, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if field_name != "degree" or conversion is not None or spec:
            shown = "{" + field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise InputError(f"text template {_shown(template)}: {shown[:40]} is not allowed; the only placeholder is "
                             f"{{degree}} (no attributes, indexing, conversions or format specs); write literal "
                             f"braces as '{{{{' and '}}}}'")
        found = True
    if not found:
        raise InputError(f"text template {_shown(template)} has no {{degree}} placeholder; e.g. 'a person with {{degree}} "
                         f"smile'")


def _shown(text: str, limit: int = 80) -> str:
    """`text` quoted for a one-line message, cut to about `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def check_prompts_differ(template: str, texts: Sequence[str], degrees: Sequence[str], tokenizer) -> None:
    """Refuse prompts that CLIP would read as the same text: `{degree}` past the tokenizer's context length
    (77 tokens) is cut off, and every degree would then optimize toward one prompt (no motion, only noise).

    texts: the template rendered at each degree; tokenizer: `list[str] -> LongTensor [T, context_length]`.
    """
    ids = tokenizer(list(texts))
    rows = [tuple(r.tolist()) for r in ids]
    seen: dict[tuple, str] = {}
    for row, degree in zip(rows, degrees):
        if row in seen:
            raise InputError(f"text template {_shown(template)}: CLIP reads the prompts for degrees "
                             f"{seen[row]!r} and {degree!r} as the same text (only the first {ids.shape[1]} tokens "
                             f"count, so {{degree}} must come early); shorten the template or move {{degree}} "
                             f"forward")
        seen[row] = degree


def render_template(template: str, degree: str) -> str:
    """`template` with every `{degree}` replaced by `degree` (validated first; nothing is evaluated)."""
    validate_template(template)
    out = []
    for literal, field_name, _spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        if field_name is not None:
            out.append(str(degree))
    return "".join(out)


def check_degrees(degrees) -> list[str]:
    """A list of distinct, non-empty degree strings (a comma-separated string is split)."""
    if isinstance(degrees, str):
        degrees = [d.strip() for d in degrees.split(",")]
    degrees = list(degrees)
    if not degrees:
        raise InputError("give at least one degree, e.g. no,10%,20%,...,100%")
    for d in degrees:
        if not isinstance(d, str) or not d.strip():
            raise InputError(f"degrees must be non-empty strings, got {d!r}")
    dup = sorted({d for d in degrees if degrees.count(d) > 1})
    if dup:
        raise InputError(f"degree {dup[0]!r} is given more than once")
    return degrees


# ----------------------------------------------------------------------------------------------------------
# The optimization


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
              kind: str = "logits") -> torch.Tensor:
    """Per-sample CLIP loss [N] of image i against text i (unit features [N, D])."""
    cos = (image_features * text_features).sum(-1)
    if kind == "logits":
        return 1 - logit_scale * cos / 100
    if kind == "cosine":
        return 1 - cos
    raise InputError(f"unknown CLIP loss {kind!r}; choose one of: {', '.join(CLIP_LOSSES)}")


def start_latent(G, seed: int, truncation: float = 0.7) -> torch.Tensor:
    """W+ start [num_ws, w_dim] from `seed`: z = randn(1, z_dim) from `torch.manual_seed(seed)` on the CPU, as
    the original draws it, mapped and truncated toward `G.w_avg`."""
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(int(seed)))
    with torch.no_grad():
        return G.mapping(z.to(G.w_avg.device, G.w_avg.dtype), truncation_psi=truncation)[0]


def _same_device(device: torch.device, module: torch.nn.Module, what: str) -> None:
    other = next(iter(module.buffers()), None)
    other = other if other is not None else next(iter(module.parameters()), None)
    if other is not None and other.device != device:
        raise InputError(f"the {what} network is on {other.device} and the generator on {device}; move them to one "
                         f"device (.to(device))")


def _autocast(device: torch.device, precision: str = "auto"):
    # bf16 on GPUs (the original ran CLIP in fp16); exact fp32 on the CPU.
    if device.type == "cuda" and precision == "auto":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def optimize_latents(G, clip: Clip, texts: Sequence[str], w0: torch.Tensor, settings: TextAnchorSettings | None = None,
                     arcface=None, *, batch_size: int | None = None, micro_batch: int | None = None,
                     compile: bool = False, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimize one W+ code per text from the same start `w0` [num_ws, w_dim].

    Returns `(ws [T, num_ws, w_dim], losses [steps, T])` on the generator's device, `losses` being each
    sample's total loss before each step. `arcface`: an `ArcFace` for the identity term, or None to leave it out.

    None of these change the result beyond floating-point rounding: `batch_size` (default: all texts) is how
    many samples share one optimizer, `batch_size=1` being the original's structure; `micro_batch` (default:
    all of them) is how many go through the networks at once, less memory for more passes, gradients
    accumulated before each step; `compile` runs the generator's synthesis network under `torch.compile`
    (compiled once per generator and batch shape; worth it on GPUs for repeated runs).
    """
    settings = settings or TextAnchorSettings()
    texts = list(texts)
    if not texts:
        raise InputError("no texts to optimize for")
    if w0.ndim == 3 and w0.shape[0] == 1:
        w0 = w0[0]
    if w0.ndim != 2 or tuple(w0.shape) != (G.num_ws, G.w_dim):
        raise InputError(f"the start latent must have shape [{G.num_ws}, {G.w_dim}] (W+ of this generator), got "
                         f"{list(w0.shape)}")
    device = G.w_avg.device
    _same_device(device, clip, "CLIP")
    if arcface is not None:
        _same_device(device, arcface, "ArcFace")
    w0 = w0.detach().to(device, G.w_avg.dtype)
    bs = len(texts) if batch_size is None else int(batch_size)
    mb = bs if micro_batch is None else int(micro_batch)
    if bs < 1 or mb < 1:
        raise InputError(f"batch_size and micro_batch must be >= 1, got {batch_size}, {micro_batch}")
    use_id = arcface is not None and settings.id_lambda > 0
    synthesis = _synthesis_fn(G, compile)
    with torch.no_grad(), _autocast(device, settings.precision):
        text_features = clip.encode_text(texts)
        id0 = arcface.embed(G.synthesis(w0[None], noise_mode=settings.noise_mode)) if use_id else None
        img0 = (G.synthesis(w0[None], noise_mode=settings.noise_mode).float()
                if settings.image_lambda > 0 else None)
    logit_scale = clip.logit_scale.detach()

    def sample_losses(w: torch.Tensor, tf: torch.Tensor) -> torch.Tensor:
        with _autocast(device, settings.precision):
            img = synthesis(w, noise_mode=settings.noise_mode)
            per = clip_loss(clip.encode_image(img, settings.clip_preprocess), tf, logit_scale, settings.clip_loss)
            if use_id:
                per = per + settings.id_lambda * (1 - (arcface.embed(img) * id0).sum(-1))
        if img0 is not None:
            per = per + settings.image_lambda * (img.float() - img0).square().mean(dim=(1, 2, 3))
        return per + settings.l2_lambda * (w - w0).square().sum(dim=(1, 2))

    out_ws, out_losses = [], []
    bar = tqdm(total=settings.steps * math.ceil(len(texts) / bs), desc="text anchors", unit="step",
               disable=None if progress else True, leave=False)
    try:
        for start in range(0, len(texts), bs):
            tf = text_features[start:start + bs]
            n = tf.shape[0]
            w = w0.expand(n, -1, -1).clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=settings.lr)
            history = []
            for i in range(settings.steps):
                opt.param_groups[0]["lr"] = get_lr(i / settings.steps, settings.lr, settings.lr_rampdown,
                                                   settings.lr_rampup)
                opt.zero_grad(set_to_none=True)
                per = []
                for c in range(0, n, mb):
                    loss = sample_losses(w[c:c + mb], tf[c:c + mb])
                    loss.sum().backward()  # summed: each sample's gradient is that of its own loss
                    per.append(loss.detach())
                opt.step()
                per = torch.cat(per)
                history.append(per)
                if not bar.disable:  # .item() waits for the GPU: only when the bar is shown
                    bar.set_description(f"text anchors: loss {per.mean().item():.4f}", refresh=False)
                bar.update(1)
            out_ws.append(w.detach())
            out_losses.append(torch.stack(history))
    finally:
        bar.close()
    return torch.cat(out_ws), torch.cat(out_losses, dim=1)


_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _synthesis_fn(G, compile: bool):
    if not compile:
        return G.synthesis
    fn = _COMPILED.get(G)
    if fn is None:
        fn = _COMPILED[G] = torch.compile(G.synthesis_net)
    return fn


# ----------------------------------------------------------------------------------------------------------
# Anchors with a cache

_WARNED_NO_ARCFACE = False
def _fingerprint(module: torch.nn.Module) -> str:
    """`micromotion.io.files.fingerprint` (remembered while no tensor of the module changes)."""
    return module_fingerprint(module)


def _resolve_arcface(arcface, settings: TextAnchorSettings, device: torch.device):
    global _WARNED_NO_ARCFACE
    if settings.id_lambda == 0 or arcface is None:
        return None
    if not isinstance(arcface, str):
        return arcface
    if arcface != "auto":
        raise InputError(f"arcface must be an ArcFace network, None or 'auto', got {arcface!r}")
    from ..models.arcface import load_arcface

    try:
        return load_arcface("arcface-ir-se50", device=device, download=False)
    except MicromotionError as e:
        if not _WARNED_NO_ARCFACE:
            log.warning("identity loss off: ArcFace IR-SE50 weights are not available (%s)", e)
            _WARNED_NO_ARCFACE = True
        return None


def text_anchors(G, clip: Clip, template: str, *, degrees: Sequence[str] = DEFAULT_DEGREES, seed: int = 0,
                 start: torch.Tensor | None = None, arcface="auto", settings: TextAnchorSettings | None = None,
                 batch_size: int | None = None, micro_batch: int | None = None, compile: bool = False,
                 cache: bool = True,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True,
                 generator_name: str | None = None) -> Anchors:
    """Anchors for `template` at each degree: latents [D + 1, num_ws, w_dim], the start first.

    G: the generator (its device is used). clip: a `Clip`. start: a W+ code [num_ws, w_dim] (an inverted
    photo) instead of the seed's face. arcface: an `ArcFace`, None (no identity term), or "auto" (the
    registry's `arcface-ir-se50` if it is there, else off with a warning). `batch_size`, `micro_batch`,
    `compile`: speed and memory only (see `optimize_latents`). Results are cached under
    `anchors_cache_dir(cache_dir)` by everything they depend on, so a rerun returns at once.
    """
    settings = settings or TextAnchorSettings()
    validate_template(template)
    degrees = check_degrees(degrees)
    seed = int(seed)
    texts = [render_template(template, d) for d in degrees]
    check_prompts_differ(template, texts, degrees, clip.tokenizer)
    device = G.w_avg.device
    net = _resolve_arcface(arcface, settings, device)
    if start is not None:
        w0 = start.detach().to(device, G.w_avg.dtype)
        if w0.ndim == 3 and w0.shape[0] == 1:
            w0 = w0[0]
        if tuple(w0.shape) != (G.num_ws, G.w_dim):
            raise InputError(f"the start latent must have shape [{G.num_ws}, {G.w_dim}], got {list(start.shape)}")
        start_desc = {"kind": "latent", "hash": tensor_fingerprint(w0)}
    else:
        w0 = start_latent(G, seed, settings.truncation)
        start_desc = {"kind": "seed", "seed": seed, "truncation": settings.truncation}

    identity = {
        "version": CACHE_VERSION,
        "generator": _fingerprint(G),
        "clip": _fingerprint(clip.model),
        "clip_image_size": clip.image_size,
        "arcface": _fingerprint(net) if net is not None else None,
        "template": template,
        "degrees": degrees,
        "start": start_desc,
        "settings": settings.to_dict(),
        "numerics": "cuda-bf16" if device.type == "cuda" and settings.precision == "auto" else f"{device.type}-fp32",
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    source = {"kind": "text", "template": template, "degrees": degrees, "seed": seed if start is None else None,
              "start": start_desc, "texts": texts, "generator": generator_name, "generator_hash": identity["generator"],
              "clip": clip.name, "clip_hash": identity["clip"], "identity_loss": net is not None,
              "settings": settings.to_dict(), "cache_key": key}
    path = anchors_cache_dir(cache_dir) / f"text-{key}.safetensors"
    if cache and not path.is_file():  # entries written before the one fingerprint: keyed by its old blake2b form
        old = {**identity, **{k: legacy_blake2b(m) for k, m in (("generator", G), ("clip", clip.model),
                                                                 ("arcface", net)) if m is not None}}
        old_key = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:32]
        if path.with_name(f"text-{old_key}.safetensors").is_file():
            path, key = path.with_name(f"text-{old_key}.safetensors"), old_key
    if cache and path.is_file():
        try:
            hit = Anchors.load(path)
            if hit.source.get("cache_key") == key and (hit.num_ws, hit.w_dim) == (G.num_ws, G.w_dim):
                log.info("text anchors from the cache: %s", path)
                hit.source["generator"] = generator_name
                return hit
            log.warning("ignoring cache file %s: it does not hold these anchors", path)
        except InputError as e:
            log.warning("ignoring unreadable cache file %s (%s)", path, e)

    t0 = time.perf_counter()
    ws, losses = optimize_latents(G, clip, texts, w0, settings, net, batch_size=batch_size,
                                  micro_batch=micro_batch, compile=compile, progress=progress)
    log.info("text anchors: %d degrees x %d steps in %.1f s; loss %.4f -> %.4f", len(degrees), settings.steps,
             time.perf_counter() - t0, losses[0].mean().item(), losses[-1].mean().item())
    source["loss_first"] = [round(v, 6) for v in losses[0].tolist()]
    source["loss_last"] = [round(v, 6) for v in losses[-1].tolist()]
    anchors = Anchors(torch.cat([w0[None], ws]).float().cpu(), ["start", *degrees], source)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            anchors.save(path)
        except (OSError, InputError) as e:
            log.warning("could not write the anchors cache %s (%s)", path, e)
    return anchors


def reinvert_anchors(G, anchors: Anchors, method: str = "encoder", *, drop_start: bool = True,
                     batch_size: int = 16, **options) -> Anchors:
    """The anchors' images inverted again into W+ with an inversion `method` (`invert.METHODS`), as video
    frames are; with `drop_start`, the optimization's start latent (label "start") is left out, so the motion
    runs from the lowest degree to the highest.

    Why: CLIP-guided optimization reaches, for ONE face, the nearest latents that show each degree, and those
    often move along directions peculiar to that face (on the world: a full smile of the anchor face at a
    latent offset of norm 1 that leaves other faces unchanged). An encoder trained on many faces represents a
    motion the same way for all of them, so the decoded motion transfers: on the world, text anchors barely
    move unseen faces without it (docs/results.md, "World text route").
    """
    from ..invert import METHODS

    if method not in METHODS:
        raise InputError(f"unknown inversion method {method!r}; choose one of: {', '.join(METHODS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    noise_mode = (anchors.source.get("settings") or {}).get("noise_mode", "const")  # as the anchors were made
    labels = list(anchors.labels)
    latents = anchors.latents
    if drop_start and labels and labels[0] == "start":
        if len(labels) < 3:
            raise InputError("dropping the start leaves fewer than 2 anchors; give at least 2 degrees")
        latents, labels = latents[1:], labels[1:]
    device = G.w_avg.device
    out = []
    for i in range(0, latents.shape[0], batch_size):
        with torch.no_grad():
            images = G.synthesis(latents[i:i + batch_size].to(device, G.w_avg.dtype), noise_mode=noise_mode)
        out.append(METHODS[method](G, images.float().clamp(-1, 1), progress=False, **options).ws.detach()
                   .float().cpu())
    stale = ("cache_key", "loss_first", "loss_last")  # they describe the optimized latents, not these
    source = {k: v for k, v in anchors.source.items() if k not in stale}
    source["reinverted"] = {"method": method, "drop_start": bool(drop_start),
                            "options": {k: v for k, v in options.items() if isinstance(v, (int, float, str, bool))}}
    return Anchors(torch.cat(out), labels, source)
