"""The micromotion space of one generator: decode a `Motion` from anchor latents, compose, apply, save, load.

Follows Wu et al., "Decoding Micromotion in Low-dimensional Latent Spaces from StyleGAN" (CPAL 2024):
anchors of one face at increasing degrees of a motion are split per W+ layer into a low-rank part and
sparse errors by robust PCA (`decompose.rpca`), the low-rank part is truncated to a few dimensions, and the
edit is the difference between its last and first anchor (the original code: `StyleCLIP/optimization/pca.py`
and `mixin.py` of wuqiuche/micromotion-styleGAN). A motion is stamped with its generator's fingerprint so it
is never silently applied to another generator; its file is `.safetensors` with JSON metadata.
"""
from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import torch

from ..errors import InputError
from ..io.files import fingerprint, fingerprint_matches, header_version, save_safetensors
from ..io.files import header as io_header
from .rpca import _TINY, VARIANTS, _paper_lowrank, _rpca

log = logging.getLogger(__name__)

FORMAT_NAME = "micromotion-motion"
FORMAT_VERSION = 1
DIRECTIONS = ("endpoints", "principal")
#: What strength 1 spans (`Motion.from_anchors(span=...)`).
SPANS = ("anchors", "lowrank")
#: The usual range of span="anchors"'s rescaling (1.07-1.6 on the world's clips and text anchors); outside it,
#: a warning.
SPAN_SCALE_USUAL = (0.8, 1.7)

_TENSOR_KEYS = ("direction", "basis", "coords", "times")


# ----------------------------------------------------------------------------------------------------------
# Generators


def generator_fingerprint(G: torch.nn.Module) -> str:
    """'sha256:<hex>' of a generator's config and weights: `micromotion.io.files.fingerprint`."""
    return fingerprint(G)


def generator_label(G: torch.nn.Module) -> str:
    """A readable name for `G`: its `name` attribute if set, else 'stylegan2-<resolution>px'."""
    name = getattr(G, "name", None)
    if isinstance(name, str) and name:
        return name
    res = getattr(G, "resolution", None)
    return f"stylegan2-{res}px" if res else type(G).__name__


def _short(h: str) -> str:
    return h.split(":", 1)[-1][:12] if h else "no fingerprint"


# ----------------------------------------------------------------------------------------------------------
# Motion


def _anchor_span(anchors: torch.Tensor, d: torch.Tensor, name: str) -> tuple[torch.Tensor, float | None, str]:
    """`d` rescaled so that strength 1 spans the anchors along it (see `Motion.from_anchors`, span): returns
    (direction, its length over the low-rank one, "anchors"), or (d, None, "lowrank") when it cannot."""
    length = float(d.norm())
    if not length > 0:
        return d, None, "lowrank"
    u = d / length
    extent = float(((anchors[-1].to(u.dtype) - anchors[0].to(u.dtype)) * u).sum())  # last minus first, along u
    if not (math.isfinite(extent) and extent > 0):
        log.warning("motion '%s': the last anchor is not ahead of the first along the decoded direction (%.3g); "
                    "strength 1 keeps the low-rank span", name, extent)
        return d, None, "lowrank"
    scale = extent / length
    if not SPAN_SCALE_USUAL[0] <= scale <= SPAN_SCALE_USUAL[1]:
        # the scale rests on the first and last anchors: a glitch in either (a bad frame) shows here
        log.warning("motion '%s': the first and last anchors span %.2fx the robust low-rank part along the "
                    "direction (usually %.2g-%.2g); check those anchors, or decode with span='lowrank'", name,
                    scale, *SPAN_SCALE_USUAL)
    return u * extent, scale, "anchors"


@dataclass
class MotionMeta:
    """What a motion is and where it came from; stored as JSON in the motion file.

    source: free-form JSON, by convention {"kind": "text", "template", "degrees", "seed"},
    {"kind": "video", "file", "sha256", "frames": [first, last]}, {"kind": "paper", "file", "sha256"},
    {"kind": "anchors", ...} or {"kind": "composition", "op", "parts"}.
    rpca: the solver settings and outcome (variant, lam, tol, max_iter, seed, iterations, residual).
    """

    name: str = "motion"
    generator_name: str = ""
    generator_hash: str = ""  # generator_fingerprint(); "" = unknown, only shapes are checked
    source: dict = field(default_factory=dict)
    direction_kind: str = "endpoints"  # endpoints | principal | file | composed
    rank: int | None = None  # requested rank (cap), if any
    energy: float | None = None  # requested explained energy, if any
    rpca: dict = field(default_factory=dict)
    # what strength 1 spans: "anchors" (their extent along the direction) | "lowrank" (the low-rank part's);
    # "" for motions written before it was recorded (those are "lowrank") and for directions from elsewhere
    span: str = ""
    span_scale: float | None = None  # the direction's length relative to the low-rank span ("anchors" only)
    library_version: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if not all(isinstance(v, str) for v in (self.name, self.generator_name, self.generator_hash)):
            raise InputError("motion metadata: name, generator_name and generator_hash must be strings")
        if not isinstance(self.source, dict) or not isinstance(self.rpca, dict):
            raise InputError("motion metadata: source and rpca must be JSON objects")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MotionMeta":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            log.debug("motion metadata: ignoring unknown keys %s", unknown)
        return cls(**{k: v for k, v in d.items() if k in known})


def _library_version() -> str:
    try:
        from importlib.metadata import version

        return version("micromotion")
    except Exception:  # noqa: BLE001 - any metadata failure just means 'unknown'
        return "unknown"


def _check_anchors(anchors) -> torch.Tensor:
    if isinstance(anchors, (list, tuple)):
        if not all(isinstance(a, torch.Tensor) for a in anchors):
            raise InputError("anchors must be a tensor [K, num_ws, w_dim] or a list of [num_ws, w_dim] tensors")
        if len(anchors) == 0:
            raise InputError("need at least 2 anchors to decode a motion, got 0")
        first = anchors[0].shape
        for k, a in enumerate(anchors):
            if a.shape != first:
                raise InputError(f"anchor {k} has shape {list(a.shape)} but anchor 0 has {list(first)}; "
                                 f"all anchors must be latents of one generator")
        anchors = torch.stack([a.detach() for a in anchors])
    if not isinstance(anchors, torch.Tensor):
        raise InputError(f"anchors must be a tensor [K, num_ws, w_dim], got {type(anchors).__name__}")
    if anchors.ndim == 4 and anchors.shape[1] == 1:  # [K, 1, num_ws, w_dim], as latents often come
        anchors = anchors[:, 0]
    if anchors.ndim != 3:
        raise InputError(f"anchors must have shape [K, num_ws, w_dim], got {list(anchors.shape)}; stack the "
                         f"anchor latents along a new first dimension")
    if anchors.shape[0] < 2:
        raise InputError(f"need at least 2 anchors to decode a motion, got {anchors.shape[0]}; a motion is the "
                         f"change from the first anchor to the last")
    if anchors.shape[1] == 0 or anchors.shape[2] == 0:
        raise InputError(f"anchors must have shape [K, num_ws, w_dim] with num_ws, w_dim >= 1, got {list(anchors.shape)}")
    if not anchors.is_floating_point():
        raise InputError(f"anchors must be floating-point latents, got {anchors.dtype}")
    bad = ~torch.isfinite(anchors)
    if bad.any():
        k, layer, _ = bad.nonzero()[0].tolist()
        raise InputError(f"anchors contain NaN or inf (first in anchor {k}, layer {layer}); the inversion or "
                         f"optimization that made them diverged: make them again")
    return anchors.detach()


def _generator_stamp(generator, generator_name, num_ws: int, w_dim: int, shape: list) -> tuple[str, str]:
    """(name, fingerprint) a motion records for the generator its anchors of `shape` belong to; checks shapes."""
    gen_name, gen_hash = "", ""
    if generator is not None:
        _check_generator_shape(generator, num_ws, w_dim, f"anchors {shape}")
        gen_name, gen_hash = generator_label(generator), generator_fingerprint(generator)
    return (generator_name if generator_name is not None else gen_name), gen_hash


def _check_times(times, K: int, device) -> torch.Tensor:
    if times is None:
        return torch.linspace(0, 1, K, dtype=torch.float64, device=device)
    t = torch.as_tensor(times, dtype=torch.float64).reshape(-1).to(device)
    if t.numel() != K:
        raise InputError(f"times has {t.numel()} values but there are {K} anchors; give one time per anchor")
    if not torch.isfinite(t).all() or not bool((t[1:] > t[:-1]).all()):
        raise InputError(f"times must be finite and strictly increasing (the anchors' order), got {t.tolist()}")
    return (t - t[0]) / (t[-1] - t[0])


def _orth_rows(M: torch.Tensor, rtol: float = 1e-6, atol: float = 0.0) -> torch.Tensor:
    """Orthonormal rows spanning the rows of each layer of `M` [L, n, D]; [L, r, D], zero rows pad.
    Directions with singular values up to max(rtol·largest of the layer, atol) count as numerical noise."""
    M = M.to(torch.float64)
    if M.shape[1] == 0:
        return M
    _, s, Vh = torch.linalg.svd(M, full_matrices=False)
    keep = (s > rtol * s[:, :1]) & (s > atol)
    r = max(int(keep.sum(1).max()), 1)
    return (Vh * keep[..., None])[:, :r]


def _interp(times: torch.Tensor, points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of `points` [K, ...] given at `times` [K], at `t` [T] -> [T, ...]."""
    times = times.to(points.dtype)
    t = t.to(points.dtype)
    i = (torch.searchsorted(times, t, right=True) - 1).clamp(0, times.numel() - 2)
    w = ((t - times[i]) / (times[i + 1] - times[i])).reshape(-1, *([1] * (points.ndim - 1)))
    return points[i] + w * (points[i + 1] - points[i])


def _as_1d(values, what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64)
    if t.ndim > 1:
        raise InputError(f"{what} must be a number or a 1-D sequence, got shape {list(t.shape)}")
    t = t.reshape(-1)
    if not torch.isfinite(t).all():
        raise InputError(f"{what} must be finite, got {t.tolist()}")
    return t


@dataclass(eq=False)  # tensors: compare fields explicitly
class Motion:
    """A micromotion decoded for one generator: an edit direction and the low-rank anchor path.

    direction: [num_ws, w_dim], the latent offset at strength 1 (added to a face's W+ latents).
    basis:     [num_ws, r, w_dim], per layer orthonormal rows spanning the motion's low-rank space
               (layer l uses its first `ranks[l]` rows; the rest are zero).
    coords:    [K, num_ws, r], the anchors' offsets from the first anchor in that basis (coords[0] = 0).
    times:     [K], the anchors' positions along the motion, from 0 to 1.
    meta:      `MotionMeta`.

    Build one with `Motion.from_anchors`, `Motion.from_direction` or `load_motion`.
    """

    direction: torch.Tensor
    basis: torch.Tensor
    coords: torch.Tensor
    times: torch.Tensor
    meta: MotionMeta = field(default_factory=MotionMeta)

    def __post_init__(self):
        for key in _TENSOR_KEYS:
            if not isinstance(getattr(self, key), torch.Tensor):
                raise InputError(f"motion '{key}' must be a tensor, got {type(getattr(self, key)).__name__}")
        d, b, c, t = self.direction, self.basis, self.coords, self.times
        if d.ndim != 2 or b.ndim != 3 or c.ndim != 3 or t.ndim != 1:
            raise InputError(f"motion tensors have the wrong number of dimensions: direction {list(d.shape)}, "
                             f"basis {list(b.shape)}, coords {list(c.shape)}, times {list(t.shape)}; expected "
                             f"[num_ws, w_dim], [num_ws, r, w_dim], [K, num_ws, r], [K]")
        num_ws, w_dim = d.shape
        K = t.shape[0]
        if b.shape[0] != num_ws or b.shape[2] != w_dim or c.shape != (K, num_ws, b.shape[1]):
            raise InputError(f"motion tensors disagree: direction {list(d.shape)}, basis {list(b.shape)}, "
                             f"coords {list(c.shape)}, times {list(t.shape)}; expected [num_ws, w_dim], "
                             f"[num_ws, r, w_dim], [K, num_ws, r], [K]")
        if K < 2:
            raise InputError(f"a motion needs at least 2 anchor times, got {K}")
        for key in _TENSOR_KEYS:
            if not torch.isfinite(getattr(self, key)).all():
                raise InputError(f"motion '{key}' contains NaN or inf")
        if not bool((t[1:] > t[:-1]).all()) or abs(float(t[0])) > 1e-6 or abs(float(t[-1]) - 1) > 1e-6:
            raise InputError(f"motion times must increase from 0 to 1, got {t.tolist()}")
        if not isinstance(self.meta, MotionMeta):
            raise InputError(f"motion meta must be a MotionMeta, got {type(self.meta).__name__}")
        try:
            json.dumps(self.meta.to_dict())
        except (TypeError, ValueError) as e:
            raise InputError(f"motion metadata is not JSON-serializable ({e}); use plain numbers, strings, "
                             f"lists and dicts in 'source'") from None
        self.direction, self.basis, self.coords, self.times = (
            x.detach().to(torch.float32).contiguous() for x in (d, b, c, t))

    # -- shape ---------------------------------------------------------------------------------------------

    @property
    def num_ws(self) -> int:
        return self.direction.shape[0]

    @property
    def w_dim(self) -> int:
        return self.direction.shape[1]

    @property
    def num_anchors(self) -> int:
        return self.times.shape[0]

    @property
    def ranks(self) -> list[int]:
        """Rank of the motion space of each layer."""
        return (self.basis.norm(dim=-1) > 0.5).sum(-1).tolist()

    @property
    def device(self) -> torch.device:
        return self.direction.device

    def to(self, device) -> "Motion":
        """A copy with every tensor on `device`."""
        return replace(self, direction=self.direction.to(device), basis=self.basis.to(device),
                       coords=self.coords.to(device), times=self.times.to(device), meta=replace(self.meta))

    # -- construction --------------------------------------------------------------------------------------

    @classmethod
    @torch.no_grad()
    def from_anchors(cls, anchors, *, times: Sequence[float] | torch.Tensor | None = None, rank: int | None = 4,
                     energy: float | None = None, direction: str = "endpoints", variant: str = "ialm",
                     lam: float | None = None, tol: float = 1e-7, max_iter: int = 1000, seed: int = 0,
                     span: str | None = None, name: str = "motion", generator: torch.nn.Module | None = None,
                     generator_name: str | None = None, source: dict | None = None) -> "Motion":
        """Decode a motion from `anchors` [K, num_ws, w_dim], ordered by degree or time.

        Per layer: robust PCA of the K × w_dim anchor matrix (`variant`, `lam`, `tol`, `max_iter`, see
        `robust_pca`), then a low-rank approximation of its low-rank part:
          variant "ialm":  PCA around the anchors' mean, keeping `rank` components, or with `energy` the
                           fewest reaching that fraction of the variance (at most `rank`, unless None);
          variant "paper": the original's uncentered randomized `pca_lowrank(q=rank)`, seeded by `seed`.
        The anchors' offsets from the first anchor span the motion space (`basis`, `coords`).

        direction: "endpoints" (the paper): the low-rank last anchor minus the first;
                   "principal": per layer the first principal axis of the low-rank anchors, scaled by the
                   least-squares slope of the anchors' coordinate on it against `times` (so its sign
                   follows the anchor order; its length then follows `span`).
        span: what strength 1 spans (default "anchors"; "lowrank" with variant "paper", the original's scale).
              "lowrank": the direction as decoded, the extent of the low-rank part.
              "anchors": the same direction, rescaled to the anchors' own extent along it: the last
              anchor minus the first, projected on the unit direction.
              Robust PCA's sparse part also takes some of the real motion where it is concentrated (the
              far anchors' largest coordinates), so the low-rank span falls short of the anchors (by how
              much: docs/results.md, "Strength 1 spans the anchors"); "anchors" keeps the
              robust direction and restores the extent the anchors show. The anchor path (`coords`,
              `path`) is scaled alike. A last anchor not ahead of the first along the direction keeps
              "lowrank", with a warning; a rescaling outside `SPAN_SCALE_USUAL` warns (it rests on the
              first and last anchors, so a glitch in either shows there).
        times: each anchor's position (degree, frame time); default evenly spaced. Rescaled to [0, 1].
        generator: the generator the anchors belong to; stamps its name and fingerprint on the motion.
        source: JSON metadata on how the anchors were made (see `MotionMeta`).

        `anchors` may also be an `micromotion.anchors.Anchors` stack (anything with `latents`, `labels` and
        `source`): its source is recorded and numeric labels (frame times) become `times`.
        """
        if getattr(anchors, "identities", None) is not None and len(set(anchors.identities)) > 1:
            if times is not None:
                raise InputError("anchors of several faces keep each face's own times (their labels); drop times")
            return cls._from_identities(anchors, rank=rank, energy=energy, direction=direction, variant=variant,
                                        lam=lam, tol=tol, max_iter=max_iter, span=span, name=name,
                                        generator=generator, generator_name=generator_name, source=source)
        if not isinstance(anchors, (torch.Tensor, list, tuple)) and hasattr(anchors, "latents"):
            labels = list(getattr(anchors, "labels", None) or [])
            if times is None and labels and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in labels):
                times = labels
            if source is None and isinstance(getattr(anchors, "source", None), dict):
                source = {**anchors.source, "labels": labels}
            anchors = anchors.latents
        anchors = _check_anchors(anchors)
        K, num_ws, w_dim = anchors.shape
        if direction not in DIRECTIONS:
            raise InputError(f"unknown direction '{direction}'; choose one of: {', '.join(DIRECTIONS)}")
        span = span if span is not None else ("lowrank" if variant == "paper" else "anchors")
        if span not in SPANS:
            raise InputError(f"unknown span '{span}'; choose one of: {', '.join(SPANS)}")
        if variant not in VARIANTS:
            raise InputError(f"unknown robust PCA variant '{variant}'; choose one of: {', '.join(VARIANTS)}")
        if rank is not None and not (isinstance(rank, int) and rank >= 1):
            raise InputError(f"rank must be a positive integer or None, got {rank!r}")
        if energy is not None and not (0 < energy <= 1):
            raise InputError(f"energy must be in (0, 1], got {energy!r}")
        if rank is None and energy is None:
            raise InputError("give a rank, an energy, or both (energy picks the rank per layer, rank caps it)")
        if variant == "paper" and (energy is not None or rank is None):
            raise InputError("variant 'paper' keeps a fixed rank (the original's q=4): pass rank, not energy")
        t = _check_times(times, K, anchors.device)
        gen_name, gen_hash = _generator_stamp(generator, generator_name, num_ws, w_dim, list(anchors.shape))

        D = anchors.permute(1, 0, 2)  # [num_ws, K, w_dim]: one robust PCA per layer
        L, _, stats = _rpca(D, lam, tol, max_iter, variant)
        if variant == "paper":
            low = _paper_lowrank(L, min(rank, K, w_dim), seed)
        else:
            mean = L.mean(1, keepdim=True)
            U, s, Vh = torch.linalg.svd(L - mean, full_matrices=False)
            keep = _keep_components(s, rank, energy)
            low = mean + (U * (s * keep).unsqueeze(1)) @ Vh
        P = low - low[:, :1]  # offsets from the first anchor, [num_ws, K, w_dim]
        # principal axes of the offsets, by variance; below 1e-10 of the anchors' size is rounding noise
        noise = 1e-10 * float(torch.linalg.matrix_norm(L).max())
        basis = _orth_rows(P - P.mean(1, keepdim=True), atol=noise)
        coords = torch.einsum("lkd,lrd->klr", P, basis)
        points = torch.einsum("klr,lrd->kld", coords, basis)  # the offsets within the motion space
        if direction == "endpoints":
            d = points[-1]
        else:
            c = coords[:, :, 0] - coords[:, :, 0].mean(0)  # [K, num_ws] along the first axis
            tc = (t - t.mean()).unsqueeze(1)
            slope = (tc * c).sum(0) / tc.square().sum()
            d = slope.unsqueeze(1) * basis[:, 0]
        span_scale = None
        if span == "anchors":
            d, span_scale, span = _anchor_span(anchors, d, name)
            if span_scale is not None:  # the anchor path scaled alike: path(1) is the direction of "endpoints"
                coords = coords * span_scale
        meta = MotionMeta(
            name=name, generator_name=gen_name, generator_hash=gen_hash,
            source=dict(source) if source is not None else {"kind": "anchors", "num_anchors": K},
            direction_kind=direction, rank=rank, energy=energy, span=span, span_scale=span_scale,
            rpca={"variant": variant, "lam": 1 / math.sqrt(max(K, w_dim)) if lam is None else float(lam), "tol": tol,
                  "max_iter": max_iter, "seed": seed if variant == "paper" else None,
                  "iterations": stats.iterations.tolist(), "residual": [float(f"{r:.3e}") for r in stats.residual.tolist()],
                  "converged": bool(stats.converged.all())},
            library_version=_library_version())
        if not bool(d.abs().max() > 0):
            log.warning("motion '%s': the robust low-rank anchors do not move (zero direction); the anchors are "
                        "identical up to sparse errors", name)
        log.info("motion '%s': %d anchors, ranks %s, %d RPCA iterations at most", name, K,
                 (basis.norm(dim=-1) > 0.5).sum(-1).tolist(), int(stats.iterations.max()))
        return cls(direction=d, basis=basis, coords=coords, times=t, meta=meta)

    @classmethod
    @torch.no_grad()
    def _from_identities(cls, anchors, *, rank, energy, direction, variant, lam, tol, max_iter, span, name,
                         generator, generator_name, source) -> "Motion":
        """The motion several faces share (`Anchors` with `identities`, issue 25): a joint low-rank model with
        one offset per identity. Each identity's anchors are centred on their own mean (the least-squares
        estimate of its offset: what makes the faces differ, whatever their number of anchors), the centred
        stacks of all identities are pooled per layer, and robust PCA of the pool keeps the variation they
        have in common while its sparse part takes what one identity's anchors do alone (a bad frame, an
        expression of that face only). The direction is the first principal axis of the pooled low-rank part,
        signed and scaled by the least-squares slope against each identity's own times ("principal"), or the
        mean over identities of the low-rank last-minus-first anchor ("endpoints"); strength 1 then spans the
        identities' mean extent along it (span "anchors") or the low-rank one. The motion is a straight line.
        """
        if variant != "ialm":
            raise InputError("several identities are decoded with variant 'ialm' only (the paper's solver is "
                             "for one face)")
        if direction not in DIRECTIONS:
            raise InputError(f"unknown direction '{direction}'; choose one of: {', '.join(DIRECTIONS)}")
        span = span or "anchors"
        if span not in SPANS:
            raise InputError(f"unknown span '{span}'; choose one of: {', '.join(SPANS)}")
        if rank is None and energy is None:
            raise InputError("give a rank, an energy, or both (energy picks the rank per layer, rank caps it)")
        groups = anchors.groups()
        parts, times, bounds = [], [], []
        for g in groups:
            x = _check_anchors(g.latents).to(torch.float64)
            labels = list(g.labels)
            numeric = labels and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels)
            t = _check_times(labels if numeric else None, x.shape[0], x.device)
            start = bounds[-1][1] if bounds else 0
            bounds.append((start, start + x.shape[0]))
            parts.append(x - x.mean(0, keepdim=True))
            times.append(t - t.mean())
        pooled = torch.cat(parts)  # [ΣK, num_ws, w_dim], identity offsets removed
        K, num_ws, w_dim = pooled.shape
        gen_name, gen_hash = _generator_stamp(generator, generator_name, num_ws, w_dim, list(pooled.shape))
        L, _, stats = _rpca(pooled.permute(1, 0, 2), lam, tol, max_iter, variant)  # [num_ws, ΣK, w_dim]
        mean = L.mean(1, keepdim=True)
        U, sv, Vh = torch.linalg.svd(L - mean, full_matrices=False)
        low = mean + (U * (sv * _keep_components(sv, rank, energy)).unsqueeze(1)) @ Vh
        axis = Vh[:, 0]  # [num_ws, w_dim], the first principal axis per layer
        if direction == "principal":
            c = torch.einsum("lkd,ld->kl", low, axis)  # [ΣK, num_ws]
            tc = torch.cat(times).unsqueeze(1)
            cc = torch.cat([c[a:b] - c[a:b].mean(0) for a, b in bounds])
            d = ((tc * cc).sum(0) / tc.square().sum()).unsqueeze(1) * axis
        else:
            d = torch.stack([low[:, b - 1] - low[:, a] for a, b in bounds]).mean(0)
        span_scale = None
        if span == "anchors" and float(d.norm()) > 0:
            u = d / d.norm()
            extents = [float(((p[-1] - p[0]) * u).sum()) for p in parts]
            extent = sum(extents) / len(extents)
            if extent > 0:
                span_scale = extent / float(d.norm())
                d = u * extent
            else:
                log.warning("motion '%s': the identities' last anchors are not ahead of their first along the "
                            "shared direction; strength 1 keeps the low-rank span", name)
                span = "lowrank"
        elif span == "anchors":
            span = "lowrank"
        motion = cls.from_direction(d.to(torch.float32), name=name)
        ids = len(groups)
        motion.meta = MotionMeta(
            name=name, generator_name=gen_name, generator_hash=gen_hash,
            source=dict(source) if source is not None else {**anchors.source, "identities": ids},
            direction_kind=direction, rank=rank, energy=energy, span=span, span_scale=span_scale,
            rpca={"variant": variant, "lam": 1 / math.sqrt(max(K, w_dim)) if lam is None else float(lam), "tol": tol,
                  "max_iter": max_iter, "seed": None, "iterations": stats.iterations.tolist(),
                  "residual": [float(f"{r:.3e}") for r in stats.residual.tolist()],
                  "converged": bool(stats.converged.all()), "identities": ids,
                  "anchors_per_identity": [len(p) for p in parts]},
            library_version=_library_version())
        log.info("motion '%s': %d identities, %d anchors, %d RPCA iterations at most", name, ids, K,
                 int(stats.iterations.max()))
        return motion

    @classmethod
    def from_direction(cls, direction: torch.Tensor, *, name: str = "motion", generator: torch.nn.Module | None = None,
                       generator_name: str | None = None, source: dict | None = None) -> "Motion":
        """A straight-line motion from a bare direction [num_ws, w_dim] (or [1, num_ws, w_dim])."""
        if not isinstance(direction, torch.Tensor):
            raise InputError(f"direction must be a tensor [num_ws, w_dim], got {type(direction).__name__}")
        d = direction.detach()
        if d.ndim == 3 and d.shape[0] == 1:
            d = d[0]
        if d.ndim != 2 or 0 in d.shape:
            raise InputError(f"direction must have shape [num_ws, w_dim] or [1, num_ws, w_dim], got {list(direction.shape)}")
        if not d.is_floating_point() or not torch.isfinite(d).all():
            raise InputError("direction must be finite floating-point values (it contains NaN, inf or integers)")
        d = d.to(torch.float32)
        norms = d.norm(dim=-1, keepdim=True)
        basis = torch.where(norms > 0, d / norms.clamp_min(1e-30), torch.zeros_like(d)).unsqueeze(1)
        coords = torch.stack([torch.zeros_like(norms), norms])  # [2, num_ws, 1]
        gen_name = generator_label(generator) if generator is not None else ""
        gen_hash = ""
        if generator is not None:
            _check_generator_shape(generator, d.shape[0], d.shape[1], f"direction {list(d.shape)}")
            gen_hash = generator_fingerprint(generator)
        meta = MotionMeta(name=name, generator_name=generator_name if generator_name is not None else gen_name,
                          generator_hash=gen_hash, source=dict(source or {"kind": "direction"}), direction_kind="file",
                          library_version=_library_version())
        return cls(direction=d, basis=basis, coords=coords, times=torch.tensor([0.0, 1.0], device=d.device), meta=meta)

    # -- use -----------------------------------------------------------------------------------------------

    def anchor_offsets(self) -> torch.Tensor:
        """The low-rank anchors' offsets from the first anchor, [K, num_ws, w_dim]."""
        return torch.einsum("klr,lrd->kld", self.coords, self.basis)

    def path(self, t) -> torch.Tensor:
        """Latent offsets [T, num_ws, w_dim] along the low-rank anchor path at `t` in [0, 1].

        Piecewise linear between anchors: path(0) = 0 and path(1) is the last anchor's offset (the
        `direction` of an "endpoints" motion). Scale a motion (`scaled`) to go further than its anchors.
        """
        t = _as_1d(t, "path position t")
        if bool(((t < 0) | (t > 1)).any()):
            raise InputError(f"path positions must lie in [0, 1], got {t.tolist()}; use motion.scaled(factor) "
                             f"or offsets(strengths) to exaggerate a motion")
        c = _interp(self.times, self.coords, t.to(self.device))
        return torch.einsum("tlr,lrd->tld", c, self.basis)

    def offsets(self, strengths) -> torch.Tensor:
        """Straight-line latent offsets strength·direction, [T, num_ws, w_dim] for strengths [T]."""
        s = _as_1d(strengths, "strengths").to(self.device, torch.float32)
        return s[:, None, None] * self.direction

    def apply(self, ws: torch.Tensor, strengths, generator: torch.nn.Module | None = None) -> torch.Tensor:
        """Edited latents ws + s·direction for each strength s: [T, N, num_ws, w_dim] for ws [N, num_ws, w_dim]
        ([T, num_ws, w_dim] for ws [num_ws, w_dim]). With `generator`, first checks the motion is for it."""
        if generator is not None:
            self.check_generator(generator)
        if not isinstance(ws, torch.Tensor) or ws.ndim not in (2, 3) or tuple(ws.shape[-2:]) != (self.num_ws, self.w_dim):
            shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise InputError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}] or [{self.num_ws}, {self.w_dim}] "
                             f"for motion '{self.meta.name}', got {shape}")
        off = self.offsets(strengths).to(ws.device, ws.dtype)
        return ws.unsqueeze(0) + (off if ws.ndim == 2 else off.unsqueeze(1))

    def check_generator(self, G: torch.nn.Module) -> None:
        """Raise InputError unless this motion was made for `G` (same latent shape and, if the motion has
        one, the same fingerprint)."""
        _check_generator_shape(G, self.num_ws, self.w_dim, f"motion '{self.meta.name}'")
        if not self.meta.generator_hash:
            log.info("motion '%s' has no generator fingerprint; only its latent shape was checked", self.meta.name)
            return
        fp = generator_fingerprint(G)
        if not fingerprint_matches(self.meta.generator_hash, G):
            raise InputError(
                f"motion '{self.meta.name}' was made for generator '{self.meta.generator_name or 'unnamed'}' "
                f"({_short(self.meta.generator_hash)}), not for '{generator_label(G)}' ({_short(fp)}); decode the "
                f"motion again with this generator, or use the generator it was made for")

    # -- composition ---------------------------------------------------------------------------------------

    def scaled(self, factor: float) -> "Motion":
        """This motion times `factor` (direction and path); negative reverses it."""
        f = float(factor)
        if not math.isfinite(f):
            raise InputError(f"scale factor must be finite, got {factor!r}")
        meta = self._derived_meta(self.meta.name if f == 1 else f"{f:g}*{self.meta.name}", "scale", [self], factor=f)
        return Motion(self.direction * f, self.basis.clone(), self.coords * f, self.times.clone(), meta)

    def plus(self, other: "Motion") -> "Motion":
        """The sum of two motions: directions add, paths add at the union of their anchor times."""
        self._check_compatible(other)
        t = torch.unique(torch.cat([self.times, other.times.to(self.device)]))
        pa = _interp(self.times, self.anchor_offsets(), t)
        pb = _interp(other.times.to(self.device), other.anchor_offsets().to(self.device), t)
        basis = _orth_rows(torch.cat([self.basis, other.basis.to(self.device)], dim=1))
        points = (pa + pb).to(torch.float64)
        coords = torch.einsum("kld,lrd->klr", points, basis)
        meta = self._derived_meta(f"{self.meta.name}+{other.meta.name}", "add", [self, other])
        return Motion(self.direction + other.direction.to(self.device), basis, coords, t, meta)

    def orthogonalized(self, *others: "Motion") -> "Motion":
        """This motion with, per layer, every component along the other motions' directions removed
        (e.g. smile with head turn removed): direction, path and basis are projected."""
        if not others:
            raise InputError("orthogonalized() needs at least one motion to remove")
        for o in others:
            self._check_compatible(o)
        A = torch.stack([o.direction.to(self.device) for o in others], dim=1)  # [num_ws, n, w_dim]
        Q = _orth_rows(A)  # [num_ws, q, w_dim]

        def project(x):  # x [..., num_ws, w_dim] -> x with span(Q[l]) removed at each layer l
            x = x.to(torch.float64)
            return x - torch.einsum("...lq,lqd->...ld", torch.einsum("...ld,lqd->...lq", x, Q), Q)

        points = project(self.anchor_offsets())
        basis = _orth_rows(project(self.basis.transpose(0, 1)).transpose(0, 1))
        coords = torch.einsum("kld,lrd->klr", points, basis)
        names = ",".join(o.meta.name for o in others)
        meta = self._derived_meta(f"{self.meta.name}-without-{names}", "orthogonalize", [self, *others])
        return Motion(project(self.direction), basis, coords, self.times.clone(), meta)

    def __mul__(self, factor: float) -> "Motion":
        return self.scaled(factor)

    __rmul__ = __mul__

    def __neg__(self) -> "Motion":
        return self.scaled(-1.0)

    def __add__(self, other: "Motion") -> "Motion":
        return self.plus(other)

    def __sub__(self, other: "Motion") -> "Motion":
        return self.plus(other.scaled(-1.0))

    def _check_compatible(self, other: "Motion") -> None:
        if not isinstance(other, Motion):
            raise InputError(f"can only combine a motion with another Motion, got {type(other).__name__}")
        if (other.num_ws, other.w_dim) != (self.num_ws, self.w_dim):
            raise InputError(f"motion '{other.meta.name}' has latents {other.num_ws}x{other.w_dim} but "
                             f"'{self.meta.name}' has {self.num_ws}x{self.w_dim}; they belong to different generators")
        a, b = self.meta.generator_hash, other.meta.generator_hash
        if a and b and a != b:
            raise InputError(f"motion '{self.meta.name}' is for generator '{self.meta.generator_name}' ({_short(a)}) "
                             f"but '{other.meta.name}' is for '{other.meta.generator_name}' ({_short(b)}); only "
                             f"motions of one generator can be combined")

    def _derived_meta(self, name: str, op: str, parts: list["Motion"], **extra) -> MotionMeta:
        owner = next((p for p in parts if p.meta.generator_hash), parts[0])
        return MotionMeta(
            name=name, generator_name=owner.meta.generator_name, generator_hash=owner.meta.generator_hash,
            source={"kind": "composition", "op": op, **extra,
                    "parts": [{"name": p.meta.name, "source": p.meta.source} for p in parts]},
            direction_kind="composed", library_version=_library_version())

    # -- files ---------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write a `.safetensors` motion file (tensors + JSON metadata), atomically."""
        path = Path(path)
        if not path.parent.is_dir():
            raise InputError(f"{path}: folder {path.parent} does not exist; create it first")
        meta = replace(self.meta, library_version=_library_version(), format_version=FORMAT_VERSION)
        header = io_header(FORMAT_NAME, FORMAT_VERSION, meta=json.dumps(meta.to_dict()))

        save_safetensors({k: getattr(self, k).float() for k in _TENSOR_KEYS}, path, header)
        log.info("wrote motion '%s' to %s", self.meta.name, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, generator: torch.nn.Module | None = None) -> "Motion":
        """Read a motion file written by `save`; with `generator`, refuse a motion made for another one."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such motion file")
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            if zipfile.is_zipfile(path):
                raise InputError(f"{path}: a torch file, not a motion file; if it is one of the authors' published "
                                 f"directions, read it with load_motion() or `micromotion motion import-paper`") from None
            raise InputError(f"{path}: not a readable motion file ({str(e).splitlines()[0][:160]}); the file may be "
                             f"truncated or not a .safetensors motion") from None
        if header.get("format") != FORMAT_NAME:
            raise InputError(f"{path}: a safetensors file but not a micromotion motion (format={header.get('format')!r})")
        try:
            version = header_version(header)  # files before the one convention have `format_version`
        except ValueError:
            version = -1
        if version > FORMAT_VERSION:
            raise InputError(f"{path}: motion format version {version} is newer than this micromotion reads "
                             f"({FORMAT_VERSION}); upgrade micromotion")
        if version < 1:
            got = header.get("version", header.get("format_version"))
            raise InputError(f"{path}: bad motion format version {got!r}")
        missing = [k for k in _TENSOR_KEYS if k not in tensors]
        if missing:
            raise InputError(f"{path}: motion file lacks tensor '{missing[0]}'; it is damaged or not written by micromotion")
        try:
            meta = MotionMeta.from_dict(json.loads(header.get("meta", "{}")))
            motion = cls(**{k: tensors[k] for k in _TENSOR_KEYS}, meta=meta)
        except (ValueError, TypeError) as e:  # InputError is a ValueError
            raise InputError(f"{path}: bad motion file ({e})") from None
        if generator is not None:
            try:
                motion.check_generator(generator)
            except InputError as e:
                raise InputError(f"{path}: {e}") from None
        return motion


def _check_generator_shape(G: torch.nn.Module, num_ws: int, w_dim: int, what: str) -> None:
    g_num_ws, g_w_dim = getattr(G, "num_ws", None), getattr(G, "w_dim", None)
    if g_num_ws is None or g_w_dim is None:
        raise InputError(f"generator must have num_ws and w_dim (a micromotion Generator), got {type(G).__name__}")
    if (g_num_ws, g_w_dim) != (num_ws, w_dim):
        raise InputError(f"{what} has latents {num_ws}x{w_dim} but generator '{generator_label(G)}' uses "
                         f"{g_num_ws}x{g_w_dim}; use the generator the latents were made with")


def _keep_components(s: torch.Tensor, rank: int | None, energy: float | None) -> torch.Tensor:
    """Mask [L, k] of the principal components kept per layer (see `Motion.from_anchors`)."""
    k = s.shape[-1]
    idx = torch.arange(k, device=s.device)
    cap = k if rank is None else min(rank, k)
    if energy is None:
        n = torch.full(s.shape[:-1], cap, device=s.device)
    else:
        var = s.square()
        frac = var.cumsum(-1) / var.sum(-1, keepdim=True).clamp_min(_TINY)
        n = ((frac < energy - 1e-12).sum(-1) + 1).clamp_max(cap)
        n = torch.where(var.sum(-1) > 0, n, torch.zeros_like(n))
    return (idx < n.unsqueeze(-1)).to(s.dtype)


@torch.no_grad()
def anchor_stability(anchors, **decode) -> dict:
    """How much a decoded direction rests on single anchors (issue 25's transfer-risk estimate): the motion is
    decoded again with each anchor left out (each identity, for anchors of several faces) and compared with
    the full decode. Returns {"min_cosine", "mean_cosine", "worst": index left out, "decodes"}; a low minimum
    means one anchor (one face) decides the direction, so it may not transfer. `decode`: `Motion.from_anchors`
    options."""
    from ..anchors.base import Anchors

    if not isinstance(anchors, Anchors):
        x = _check_anchors(anchors)
        anchors = Anchors(x, list(range(x.shape[0])))
    full = Motion.from_anchors(anchors, **decode).direction.flatten()
    groups = anchors.groups()
    if len(groups) > 1:
        outs = [Anchors.concat([g for j, g in enumerate(groups) if j != i]) if len(groups) > 2 else
                groups[1 - i] for i in range(len(groups))]
    else:
        if len(anchors) < 3:
            raise InputError("leaving an anchor out needs at least 3 anchors")
        outs = [Anchors(torch.cat([anchors.latents[:i], anchors.latents[i + 1:]]),
                        anchors.labels[:i] + anchors.labels[i + 1:], anchors.source) for i in range(len(anchors))]
    cos = []
    for a in outs:
        d = Motion.from_anchors(a, **decode).direction.flatten()
        cos.append(float((d @ full) / (d.norm() * full.norm()).clamp_min(1e-30)))
    worst = min(range(len(cos)), key=cos.__getitem__)
    return {"min_cosine": cos[worst], "mean_cosine": sum(cos) / len(cos), "worst": worst, "decodes": len(cos)}
