"""The face world's renderer: procedural faces with known factors, analytic and batched (issue 9).

Every face is drawn from a `Factors` record alone, so a render is a pure function of its factors and a
data set is reproducible from a seed (`sample_factors(n, generator)`). Shapes are signed distance fields
over the pixel grid, made into soft masks one pixel wide (anti-aliasing) and composited back to front:
background, hair behind the head, neck and shirt, ears, face (lit as a rounded surface, with shadows),
features, the ear turned toward the viewer, hair in front, earrings, glasses.

Head turn is a yaw of the head as a vertical cylinder: a pixel at x on the face is the surface point of
longitude `asin(x / W) - yaw`, so features are drawn in frontal coordinates `u = W sin(longitude)` and come
out shifted and foreshortened; points in front of the surface (nose tip, lips) shift by `depth * tan(yaw)`
more, the lower face's outline follows the chin, and each ear is in front of or behind the head by the
side of its longitude. Coordinates are normalized: x and y in [-1, 1] across the image, y down.

The five motion factors (`MOTION_FACTORS`) are what the paper calls micromotions: smile, anger, age,
eyes_closed, head_turn. Their ranges and every identity factor are in `FACTOR_SPECS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from ..errors import InputError

# ----------------------------------------------------------------------------------------------------------
# Factors


@dataclass(frozen=True)
class FactorSpec:
    """One factor: its range, kind ('continuous', 'binary' or 'categorical') and meaning."""

    low: float
    high: float
    kind: str
    doc: str
    neutral: float = 0.5

    @property
    def span(self) -> float:
        return self.high - self.low


HAIR_STYLES = ("crop", "swept", "bob", "long", "bun", "curly")

FACTOR_SPECS: dict[str, FactorSpec] = {
    # identity
    "face_width": FactorSpec(0, 1, "continuous", "narrow (0) to wide (1) face"),
    "face_length": FactorSpec(0, 1, "continuous", "short (0) to long (1) face"),
    "jaw": FactorSpec(0, 1, "continuous", "pointed chin (0) to square jaw (1)"),
    "skin_tone": FactorSpec(0, 1, "continuous", "light (0) to dark (1) skin"),
    "hair_style": FactorSpec(0, len(HAIR_STYLES) - 1, "categorical", "index into HAIR_STYLES: " + ", ".join(HAIR_STYLES), 0),
    "hair_length": FactorSpec(0, 1, "continuous", "short/flat (0) to long/full (1) within the style"),
    "hair_color": FactorSpec(0, 1, "continuous", "black, brown, auburn, blonde (0 to 1)"),
    "eye_color": FactorSpec(0, 1, "continuous", "dark brown, brown, hazel, green, blue, gray (0 to 1)"),
    "eye_spacing": FactorSpec(0, 1, "continuous", "close-set (0) to wide-set (1) eyes"),
    "nose_size": FactorSpec(0, 1, "continuous", "small (0) to large (1) nose"),
    "mouth_width": FactorSpec(0, 1, "continuous", "narrow (0) to wide (1) mouth"),
    "brow_thickness": FactorSpec(0, 1, "continuous", "thin (0) to thick (1) eyebrows"),
    "bg_hue": FactorSpec(0, 1, "continuous", "background hue (HSV, cyclic)"),
    "bg_light": FactorSpec(0, 1, "continuous", "dark (0) to light (1) background"),
    "shirt_hue": FactorSpec(0, 1, "continuous", "shirt hue (HSV, cyclic)"),
    "glasses": FactorSpec(0, 1, "binary", "no glasses (0) or glasses (1)", 0),
    "earrings": FactorSpec(0, 1, "binary", "no earrings (0) or earrings (1)", 0),
    # micromotion
    "smile": FactorSpec(0, 1, "continuous", "neutral (0) to broad smile with teeth (1): mouth curve and opening, cheeks", 0),
    "anger": FactorSpec(0, 1, "continuous", "neutral (0) to angry (1): brows angled down and together, tense mouth", 0),
    "age": FactorSpec(0, 1, "continuous", "young (0) to old (1): wrinkles, gray hair, paler skin", 0),
    "eyes_closed": FactorSpec(0, 1, "continuous", "open (0) to closed (1) eyelids", 0),
    "head_turn": FactorSpec(-1, 1, "continuous", "yaw: -1 nose to the image's left, 0 frontal, 1 nose to the image's right (40 degrees)", 0),
}
MOTION_FACTORS = ("smile", "anger", "age", "eyes_closed", "head_turn")
IDENTITY_FACTORS = tuple(k for k in FACTOR_SPECS if k not in MOTION_FACTORS)
CONTINUOUS_FACTORS = tuple(k for k, s in FACTOR_SPECS.items() if s.kind == "continuous")

YAW_MAX = math.radians(40)


@dataclass
class Factors:
    """A batch of faces: one tensor `[N]` (float32) per factor of `FACTOR_SPECS`, all on one device.

    Build with `sample_factors`, `Factors.neutral`, `Factors.from_dicts`, or directly; `replace` sets
    some factors (a number applies to every face), `f[i]` / `f[a:b]` selects faces.
    """

    face_width: torch.Tensor
    face_length: torch.Tensor
    jaw: torch.Tensor
    skin_tone: torch.Tensor
    hair_style: torch.Tensor
    hair_length: torch.Tensor
    hair_color: torch.Tensor
    eye_color: torch.Tensor
    eye_spacing: torch.Tensor
    nose_size: torch.Tensor
    mouth_width: torch.Tensor
    brow_thickness: torch.Tensor
    bg_hue: torch.Tensor
    bg_light: torch.Tensor
    shirt_hue: torch.Tensor
    glasses: torch.Tensor
    earrings: torch.Tensor
    smile: torch.Tensor
    anger: torch.Tensor
    age: torch.Tensor
    eyes_closed: torch.Tensor
    head_turn: torch.Tensor

    def __post_init__(self):
        n = None
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, torch.Tensor):
                v = torch.as_tensor(v, dtype=torch.float32)
            if v.ndim == 0:
                v = v.reshape(1)
            if v.ndim != 1:
                raise InputError(f"factor '{f.name}' must be a 1-D tensor [N], got shape {list(v.shape)}")
            if n is None:
                n, device = v.shape[0], v.device
            elif v.shape[0] != n or v.device != device:
                raise InputError(f"factor '{f.name}' has {v.shape[0]} values on {v.device}; expected {n} on {device} "
                                 f"like the other factors")
            object.__setattr__(self, f.name, v.to(torch.float32))

    def __len__(self) -> int:
        return self.face_width.shape[0]

    @property
    def device(self) -> torch.device:
        return self.face_width.device

    def __getitem__(self, idx) -> "Factors":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return Factors(**{k: v[idx] for k, v in self.items()})

    def items(self):
        return ((f.name, getattr(self, f.name)) for f in fields(self))

    def to(self, device) -> "Factors":
        return Factors(**{k: v.to(device) for k, v in self.items()})

    def replace(self, **values) -> "Factors":
        """A copy with some factors set: a number (every face) or a tensor [N]."""
        d = dict(self.items())
        for k, v in values.items():
            if k not in d:
                raise InputError(f"unknown factor '{k}'; choose one of: {', '.join(FACTOR_SPECS)}")
            d[k] = torch.as_tensor(v, dtype=torch.float32, device=self.device).expand(len(self)).clone()
        return Factors(**d)

    def validate(self) -> "Factors":
        """Raise `InputError` naming the first factor outside its range; returns self."""
        for k, v in self.items():
            s = FACTOR_SPECS[k]
            if v.numel() and (not torch.isfinite(v).all() or v.min() < s.low - 1e-6 or v.max() > s.high + 1e-6):
                raise InputError(f"factor '{k}' must be in [{s.low:g}, {s.high:g}], got values from "
                                 f"{v.min().item():g} to {v.max().item():g}")
        return self

    def stack(self, names=CONTINUOUS_FACTORS) -> torch.Tensor:
        """Selected factors as columns: `[N, len(names)]`."""
        return torch.stack([getattr(self, k) for k in names], dim=1)

    def to_dicts(self) -> list[dict]:
        """One plain dict per face (categorical and binary factors as ints), e.g. for JSON."""
        cols = {k: v.detach().cpu().tolist() for k, v in self.items()}
        out = []
        for i in range(len(self)):
            d = {}
            for k, spec in FACTOR_SPECS.items():
                x = cols[k][i]
                d[k] = int(round(x)) if spec.kind != "continuous" else round(float(x), 6)
            out.append(d)
        return out

    @classmethod
    def from_dicts(cls, rows: list[dict], device="cpu") -> "Factors":
        """Inverse of `to_dicts`; missing factors take their neutral value."""
        unknown = {k for r in rows for k in r} - set(FACTOR_SPECS)
        if unknown:
            raise InputError(f"unknown factor '{sorted(unknown)[0]}'; choose from: {', '.join(FACTOR_SPECS)}")
        return cls(**{k: torch.tensor([float(r.get(k, s.neutral)) for r in rows], dtype=torch.float32, device=device)
                      for k, s in FACTOR_SPECS.items()})

    @classmethod
    def neutral(cls, n: int = 1, device="cpu") -> "Factors":
        """Average identities with every motion factor at rest."""
        return cls(**{k: torch.full((n,), float(s.neutral), device=device) for k, s in FACTOR_SPECS.items()})

    @classmethod
    def cat(cls, items: list["Factors"]) -> "Factors":
        return cls(**{f.name: torch.cat([getattr(x, f.name) for x in items]) for f in fields(cls)})


def sample_factors(n: int, generator: torch.Generator | None = None, device=None, motion: str = "random",
                   p_glasses: float = 0.25, p_earrings: float = 0.3) -> Factors:
    """Random faces: identity factors uniform (hair style uniform over `HAIR_STYLES`, accessories Bernoulli).

    motion: 'random' (each motion factor uniform over its range, independently) or 'neutral' (all at rest).
    Draws from `generator` (its device is used unless `device` is given), so a seed fixes the faces.
    """
    if motion not in ("random", "neutral"):
        raise InputError(f"motion must be 'random' or 'neutral', got {motion!r}")
    device = torch.device(device) if device is not None else (generator.device if generator is not None else torch.device("cpu"))
    u = torch.rand(len(FACTOR_SPECS), n, generator=generator, device=device)
    vals = {}
    for (k, s), row in zip(FACTOR_SPECS.items(), u):
        if k in MOTION_FACTORS and motion == "neutral":
            vals[k] = torch.full_like(row, s.neutral)
        elif s.kind == "categorical":
            vals[k] = torch.floor(row * (s.high - s.low + 1)).clamp(max=s.high - s.low) + s.low
        elif s.kind == "binary":
            vals[k] = (row < {"glasses": p_glasses, "earrings": p_earrings}.get(k, 0.5)).float()
        else:
            vals[k] = s.low + row * s.span
    return Factors(**vals)


# ----------------------------------------------------------------------------------------------------------
# Palettes (sRGB in [0, 1]); a continuous factor walks piecewise-linearly through the stops

_SKIN = [(0.98, 0.85, 0.76), (0.94, 0.76, 0.64), (0.84, 0.63, 0.49), (0.68, 0.47, 0.33), (0.48, 0.32, 0.22),
         (0.32, 0.21, 0.15)]
_HAIR = [(0.07, 0.06, 0.06), (0.20, 0.13, 0.09), (0.38, 0.24, 0.14), (0.56, 0.25, 0.12), (0.68, 0.52, 0.32),
         (0.90, 0.78, 0.52)]
_EYES = [(0.24, 0.13, 0.07), (0.42, 0.26, 0.11), (0.50, 0.44, 0.20), (0.28, 0.50, 0.30), (0.28, 0.48, 0.76),
         (0.55, 0.60, 0.66)]


def _palette(stops, t: torch.Tensor) -> torch.Tensor:
    """t [N] in [0, 1] -> colours [N, 3] (linear interpolation between stops)."""
    p = torch.tensor(stops, dtype=torch.float32, device=t.device)
    x = t.clamp(0, 1) * (len(stops) - 1)
    i = x.floor().clamp(max=len(stops) - 2).long()
    return torch.lerp(p[i], p[i + 1], (x - i).unsqueeze(1))


def _hsv(h: torch.Tensor, s, v) -> torch.Tensor:
    """HSV -> RGB, h [N] cyclic in [0, 1]; s, v broadcast with h. Returns [N, 3]."""
    k = torch.tensor([5.0, 3.0, 1.0], device=h.device)
    kk = (k + h.unsqueeze(1) * 6) % 6
    s = torch.as_tensor(s, device=h.device).reshape(-1, 1) if torch.is_tensor(s) else s
    v = torch.as_tensor(v, device=h.device).reshape(-1, 1) if torch.is_tensor(v) else v
    return v - v * s * torch.minimum(kk, 4 - kk).clamp(0, 1)


def _gray(c: torch.Tensor) -> torch.Tensor:
    return (c * torch.tensor([0.30, 0.59, 0.11], device=c.device)).sum(1, keepdim=True).expand_as(c)


# ----------------------------------------------------------------------------------------------------------
# Rendering


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


class _Canvas:
    """A window of the pixel grid and soft-mask helpers; masks are coverages in [0, 1] of shape [N, h, w].

    Edges are box-filtered over one pixel (a linear ramp across a straight edge); `pw` is the pixel width
    in the units of the distance given (image units by default; `px * jac` for shapes drawn in u).
    Windows (`sub`) let small parts (eyes, mouth, ears) be computed on the pixels that can hold them.
    """

    def __init__(self, size: int, device, y0: float = -1.0, y1: float = 1.0, x0: float = -1.0, x1: float = 1.0):
        self.size, self.px = size, 2.0 / size
        c = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) * self.px - 1.0

        def span(a, b):
            lo = max(0, int(math.floor((a + 1) / self.px)))
            return slice(lo, max(lo + 1, min(size, int(math.ceil((b + 1) / self.px)))))

        self.bounds = (y0, y1, x0, x1)
        self.rows, self.cols = span(y0, y1), span(x0, x1)
        self.x = c[self.cols].reshape(1, 1, -1)
        self.y = c[self.rows].reshape(1, -1, 1)
        self.device = device

    def sub(self, y0: float, y1: float, x0: float = -1.0, x1: float = 1.0) -> "_Canvas":
        return _Canvas(self.size, self.device, y0, y1, x0, x1)

    def view(self, img: torch.Tensor) -> torch.Tensor:
        """The part of a full-size [N, C, H, W] tensor under this window (a view: painting it paints img)."""
        return img[:, :, self.rows, self.cols]

    def cover(self, d: torch.Tensor, pw=None) -> torch.Tensor:
        """Coverage of the region d < 0 (d a signed distance)."""
        return (0.5 - d / (self.px if pw is None else pw)).clamp_(0, 1)

    def band(self, t: torch.Tensor, lo, hi, pw=None) -> torch.Tensor:
        """Coverage of lo < t < hi: the overlap of the pixel's footprint with the band, so a band thinner
        than a pixel fades instead of leaving a line (closing eyelids, a closing mouth)."""
        pw = self.px if pw is None else pw
        top = torch.minimum(t + 0.5 * pw, hi) if torch.is_tensor(hi) else (t + 0.5 * pw).clamp(max=hi)
        bottom = torch.maximum(t - 0.5 * pw, lo) if torch.is_tensor(lo) else (t - 0.5 * pw).clamp(min=lo)
        return ((top - bottom) / pw).clamp_(0, 1)

    def line(self, dist: torch.Tensor, half_width, pw=None) -> torch.Tensor:
        """A stroke of half-width `half_width` along the curve dist = 0."""
        return self.band(dist, -half_width, half_width, pw)

    def ellipse(self, dx, dy, rx, ry, pw=None) -> torch.Tensor:
        """Axis-aligned ellipse (distance approximated through the smaller radius)."""
        q = torch.sqrt((dx / rx) ** 2 + (dy / ry) ** 2 + 1e-12)
        r = torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))
        return self.cover((q - 1) * r, pw)

    @staticmethod
    def soft(dx, dy, rx, ry) -> torch.Tensor:
        """Gaussian blob for shading, exp(-(dx/rx)^2 - (dy/ry)^2), as a product so that separable
        arguments ([N,1,w] and [N,h,1]) cost two small exps."""
        parts = [torch.exp(-(d / r) ** 2) for d, r in ((dx, rx), (dy, ry)) if torch.is_tensor(d)]
        return parts[0] * parts[1] if len(parts) == 2 else parts[0]


def _p(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, 1, 1)


def _c(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, 3, 1, 1)


def _rgb(r: float, g: float, b: float, device) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.float32, device=device).reshape(1, 3, 1, 1)


def _paint(img: torch.Tensor, color: torch.Tensor, alpha: torch.Tensor) -> None:
    """img [N,3,h,w] <- colour over img with coverage alpha [N,h,w]; colour [N|1,3,1|h,1|w]."""
    img.lerp_(color.expand_as(img) if color.shape != img.shape else color, alpha.unsqueeze(1))


class _Head:
    """Per-face geometry and colours as [N,1,1] tensors, and the cylinder map from x to frontal u."""

    def __init__(self, f: Factors):
        dev = f.device
        self.smile, self.anger = _p(f.smile.clamp(0, 1)), _p(f.anger.clamp(0, 1))
        self.age, self.closed = _p(f.age.clamp(0, 1)), _p(f.eyes_closed.clamp(0, 1))
        yaw = _p(f.head_turn.clamp(-1, 1)) * YAW_MAX
        self.sy, self.cyw, self.ty = torch.sin(yaw), torch.cos(yaw), torch.tan(yaw)
        self.W = _p(0.35 + 0.07 * f.face_width)  # half-width of the face
        self.Hh = _p(0.50 + 0.07 * f.face_length)  # half-height of the face
        self.jaw_p = _p(1.7 + 1.6 * f.jaw)  # superellipse exponent of the lower face: pointed to square
        self.cy = 0.05
        Hh, cy = self.Hh, self.cy
        self.ey, self.by, self.hly = cy - 0.12 * Hh, cy - 0.34 * Hh, cy - 0.62 * Hh  # eyes, brows, hairline
        self.ny = cy + (0.19 + 0.10 * _p(f.nose_size)) * Hh  # nose tip: a larger nose is longer
        self.my = cy + 0.52 * Hh  # mouth
        self.es = _p(0.150 + 0.05 * f.eye_spacing) * (self.W / 0.385)  # eye centre offset
        self.ns = _p(0.7 + 0.7 * f.nose_size)  # and wider
        self.mw0 = _p(0.095 + 0.045 * f.mouth_width)
        self.bt = _p(0.010 + 0.008 * f.brow_thickness)
        self.hair_length = _p(f.hair_length)
        self.style = f.hair_style.round().long().clamp(0, len(HAIR_STYLES) - 1)
        self.glasses, self.earrings = _p(f.glasses), _p(f.earrings)
        self.any_glasses = bool((f.glasses > 0.5).any())
        self.any_earrings = bool((f.earrings > 0.5).any())
        # colours [N, 3]
        a1 = f.age.clamp(0, 1).unsqueeze(1)
        skin = _palette(_SKIN, f.skin_tone)
        self.skin = torch.lerp(skin, _gray(skin) * torch.tensor([1.03, 1.0, 0.95], device=dev), 0.4 * a1) * (1 - 0.06 * a1)
        hair = _palette(_HAIR, f.hair_color)
        self.hair = torch.lerp(hair, torch.full_like(hair, 0.80), 0.72 * _smoothstep(0.3, 1.0, a1))
        self.brow = torch.lerp(self.hair * 0.7, torch.full_like(hair, 0.62), 0.5 * _smoothstep(0.4, 1.0, a1))
        self.iris = _palette(_EYES, f.eye_color)
        self.lip = torch.lerp(self.skin * torch.tensor([0.92, 0.58, 0.58], device=dev),
                              torch.tensor([0.72, 0.30, 0.32], device=dev).expand_as(skin), 0.3)
        bg_v = 0.45 + 0.45 * f.bg_light
        self.bg_top = _hsv(f.bg_hue, 0.30, (bg_v + 0.08).clamp(max=1))
        self.bg_bot = _hsv(f.bg_hue, 0.38, bg_v - 0.12)
        self.shirt = _hsv(f.shirt_hue, 0.55, 0.55)

    def frontal(self, x: torch.Tensor, pw: float):
        """x [1,1,w] -> (u, pixel width in u, facing) each [N,1,w]: the surface point under x of the head
        turned by yaw, its frontal coordinate u = W sin(longitude), and how much it faces the viewer."""
        xs = (x / self.W).clamp(-0.995, 0.995)
        ca = torch.sqrt(1 - xs * xs)
        u = self.W * (xs * self.cyw - ca * self.sy)
        cos_lon = ca * self.cyw + xs * self.sy
        jac = (cos_lon / ca).clamp(0.25, 1.5)  # du/dx
        return u, pw * jac, (cos_lon * 8).clamp(0, 1)


def _face_outline(cv: _Canvas, h: _Head):
    """Face coverage [N,H,W] and the lit-surface shading [N,H,W]. A superellipse, rounder on top, with the
    jaw exponent below; the lower face follows the chin when the head turns, and sags a little with age."""
    x, y = cv.x, cv.y
    tt = (y - h.cy) / h.Hh
    shift = 0.28 * h.W * h.sy * _smoothstep(-0.2, 1.0, tt)
    wrow = h.W * (1 + 0.07 * h.age * (tt - 0.2).clamp(min=0))
    xn = (x - shift) / wrow
    dxn, at = xn.abs(), tt.abs()
    pexp = torch.where(tt < 0, torch.full_like(tt, 2.1), h.jaw_p)
    fx, fy = dxn.clamp(min=1e-6) ** pexp, at.clamp(min=1e-6) ** pexp
    grad = pexp * torch.sqrt((fx / dxn.clamp(min=1e-3) / wrow) ** 2 + (fy / at.clamp(min=1e-3) / h.Hh) ** 2) + 1e-3
    face_a = cv.cover((fx + fy - 1) / grad)
    nxs = xn.clamp(-1, 1)
    ttc = tt.clamp(-1, 1)
    nz = torch.sqrt((1 - 0.85 * nxs * nxs - 0.45 * ttc * ttc).clamp(min=0.02))
    lambert = -0.42 * nxs - 0.30 * ttc + 0.86 * nz
    shade = 0.55 + 0.45 * lambert.clamp(min=0) + 0.06 * lambert
    return face_a, shade


def _hair(cv: _Canvas, h: _Head):
    """(hair colour [N,3,H,W], hair behind the head [N,H,W], hair in front of the face [N,H,W])."""
    x, y = cv.x, cv.y
    sel = [_p((h.style == i).float()) for i in range(len(HAIR_STYLES))]
    hl = h.hair_length
    vol = sum(s * v for s, v in zip(sel, (0.010 + 0.025 * hl, 0.03 + 0.05 * hl, 0.03 + 0.03 * hl,
                                         0.02 + 0.03 * hl, 0.008 + 0.01 * hl, 0.05 + 0.05 * hl)))
    hx0 = 0.06 * h.W * h.sy
    hy0 = h.cy - 0.10 * h.Hh
    W, Hh = h.W, h.Hh
    cap = cv.ellipse(x - hx0, y - hy0, W * 1.04 + vol, Hh * 0.93 + vol)
    # hairline in frontal u (it turns with the face): temples come down to the ears as sideburns
    u, pw_u, _ = h.frontal(x, cv.px)
    side = u.abs() / W
    hairline = h.hly + 0.10 * Hh * _smoothstep(0.4, 1.0, h.age) * (sel[0] + sel[1] + sel[4])  # receding
    hairline = hairline + 0.05 * Hh * side ** 2 + (h.ey + 0.02 - h.hly) * _smoothstep(0.72, 0.93, side)
    hairline = hairline + 0.20 * Hh * _smoothstep(-0.7, 0.7, u / W) * sel[1]  # swept fringe, parted on the left
    hairline = hairline + sel[2] * (torch.maximum(hairline, h.by - 0.04 * Hh) - hairline)  # straight bangs
    hairline = hairline + 0.06 * Hh * side * sel[3] + 0.012 * torch.sin(u * 45) * sel[5]  # centre part; curls
    front = cap * cv.cover(y - hairline, pw_u)
    dx = (x - hx0).abs()
    below_crown = cv.cover(hy0 - y)
    w_cap = W * 1.04 + vol
    # bob and long hair: the cap's outline continued downward, flaring, with a rounded end
    bob_bottom = h.cy + (0.25 + 0.30 * hl) * Hh
    long_bottom = h.cy + (1.1 + 0.7 * hl) * Hh
    qb = ((y - hy0) / (bob_bottom - hy0)).clamp(0, 1)
    ql = ((y - hy0) / (long_bottom - hy0)).clamp(0, 1)
    bob_w = (w_cap + 0.07 * qb) * (1 - qb ** 6).clamp(min=0).sqrt()
    long_w = (w_cap + 0.22 * ql) * (1 - ql ** 8).clamp(min=0).sqrt()
    back = cap * cv.cover(y - (h.ey + 0.05))  # behind the head down to the ears
    bob = below_crown * cv.cover(dx - bob_w) * cv.cover(y - bob_bottom)
    long = below_crown * cv.cover(dx - long_w) * cv.cover(y - long_bottom)
    back = torch.maximum(back, torch.maximum(sel[2] * bob, sel[3] * long))
    bun = cv.ellipse(x - 0.6 * hx0, y - (hy0 - Hh * 0.93 - 0.05), 0.10 + 0.04 * hl, 0.09 + 0.03 * hl)
    back = torch.maximum(back, sel[4] * bun)
    ang = torch.atan2(x - hx0, y - hy0 + 0.02)
    curly_r = W * 1.32 + 0.12 * hl + 0.022 * torch.sin(11 * ang)
    afro = cv.cover(torch.sqrt((x - hx0) ** 2 + (y - hy0 + 0.02) ** 2) - curly_r) * cv.cover(y - (h.cy + (0.3 + 0.3 * hl) * Hh))
    back = torch.maximum(back, sel[5] * afro)
    # side locks framing the face (bob, long): in front of the cheeks' edges and the ears
    framing = cv.cover(W * (0.78 + 0.05 * hl) + 0.15 * (y - h.ey).clamp(min=0) - dx)
    front = torch.maximum(front, framing * torch.maximum(sel[2] * bob, sel[3] * long))
    # lit from the upper left; strands radiate from the crown, curls mottle
    crown = torch.atan2(x - hx0, y - hy0 + Hh)
    strands = 0.06 * torch.sin(crown * 40 + 2 * torch.sin(crown * 7)) * (1 - sel[5])
    curls = 0.07 * sel[5] * torch.sin(ang * 23) * torch.sin((x - hx0) ** 2 * 60 + (y - hy0) ** 2 * 60)
    light = (0.88 - 0.35 * (x - hx0 + 0.6 * (y - hy0)).clamp(-0.6, 0.8)) * (1 + strands + curls)
    sheen = 0.10 * torch.exp(-((torch.sqrt((x - hx0 + 0.15) ** 2 + (y - hy0 + 0.25) ** 2) - 0.25) / 0.05) ** 2)
    rgb = _c(h.hair) * light.unsqueeze(1) + sheen.unsqueeze(1)
    return rgb, back, front


def _neck_and_shirt(cv: _Canvas, h: _Head, img: torch.Tensor) -> None:
    x, y = cv.x, cv.y
    nx = 0.10 * h.W * h.sy
    neck_w = h.W * 0.48
    neck = cv.cover((x - nx).abs() - neck_w) * cv.cover(h.cy + 0.2 - y)
    neck_shade = 0.62 + 0.2 * _smoothstep(0.0, 0.25, y - (h.cy + h.Hh * 0.85)) - 0.12 * (x - nx) / neck_w
    _paint(img, _c(h.skin) * neck_shade.unsqueeze(1), neck)
    shoulder_y = 0.80 + 0.30 * (x.abs() / 0.9) ** 2.5
    collar = cv.ellipse(x - nx, y - 0.80, neck_w * 1.15, 0.09)
    shirt_a = cv.cover(shoulder_y - y) * (1 - collar)
    shirt_rgb = _c(h.shirt) * (1 - 0.25 * x.clamp(-1, 1) - 0.15 * (y - 0.8).clamp(min=0)).unsqueeze(1)
    _paint(img, shirt_rgb, shirt_a)


def _ears(cv: _Canvas, h: _Head):
    """Per ear: (coverage, colour, earring coverage, how much it is in front of the head)."""
    x, y = cv.x, cv.y
    ear_y, ear_ry = h.cy, 0.17 * h.Hh
    out = []
    for s in (-1.0, 1.0):
        facing = (-s * h.sy).clamp(min=0)  # this ear turns toward the viewer
        ex = s * (h.W + 0.02) * h.cyw
        erx = 0.030 + 0.035 * facing
        dy = y - ear_y
        taper = 1 - 0.35 * _smoothstep(0.0, 1.0, dy / ear_ry)
        dx = x - ex - s * 0.012 * (1 - facing)
        outer = cv.ellipse(dx, dy, erx * taper, ear_ry)
        inner = cv.ellipse(dx + s * 0.008, dy + 0.01, erx * taper * 0.5, ear_ry * 0.6)
        rgb = _c(h.skin) * (0.88 - 0.25 * inner).unsqueeze(1)
        ring = None
        if h.any_earrings:
            r = torch.sqrt((x - ex - s * 0.005) ** 2 + (y - (ear_y + ear_ry + 0.02)) ** 2)
            ring = h.earrings * cv.line(r - 0.016, 0.0045)
        out.append((outer, rgb, ring, _smoothstep(0.12, 0.35, facing)))
    return out


def _features(cv: _Canvas, h: _Head, face: torch.Tensor) -> None:
    """Shadows, creases and features painted into `face` ([N,3,h,w], the face colour under the window).

    Drawn in frontal (u, y); parts in front of or behind the cylinder shift by depth * tan(yaw).
    """
    dev = face.device
    x, y = cv.x, cv.y
    u, pw, front = h.frontal(x, cv.px)
    smile, anger, age, closed, ty = h.smile, h.anger, h.age, h.closed, h.ty
    ey, by, ny, my, es, ns, sy = h.ey, h.by, h.ny, h.my, h.es, h.ns, h.sy
    skin = _c(h.skin)
    eu = u + 0.02 * h.W * ty  # eyes sit behind the surface
    nose_depth = 0.02 + 0.07 * ns * _smoothstep(0.0, 1.0, (y - ey) / (ny - ey))
    nu = u - nose_depth * ty
    mu = u - 0.035 * ty

    # mouth geometry: corners rise with smile and fall with anger; smile opens it over the teeth
    mw = h.mw0 * (1 + 0.22 * smile - 0.14 * anger)
    tm = mu / mw
    hm = (1 - tm * tm).clamp(min=0)
    shm = hm.sqrt()
    lift = 0.040 * smile - 0.028 * anger
    ym = my - lift * tm * tm + 0.008 * smile + 0.008 * anger * hm
    open_h = 0.05 * _smoothstep(0.3, 1.0, smile)
    y_otop = ym - open_h * 0.18 * hm
    y_obot = ym + open_h * shm
    lip_scale = (1 - 0.45 * anger) * (1 - 0.3 * age) * (1 - 0.25 * smile)
    lip_top = y_otop - 0.016 * lip_scale * shm * (1 - 0.35 * torch.exp(-(tm / 0.18) ** 2))  # Cupid's bow
    lip_bot = y_obot + 0.022 * lip_scale * shm

    # ---- shading map: sockets, nose, lips, folds, cheeks, wrinkles (multiplies the skin)
    dark = torch.zeros_like(face[:, 0])  # sum of log-ish darkenings, applied once
    for s in (-1.0, 1.0):
        dark += 0.14 * cv.soft(eu - s * es, y - (ey - 0.015), 0.085, 0.045)
    band = cv.soft(0, y - (ey + ny) / 2, 1, (ny - ey) * 0.55)
    dark += (0.18 + 0.20 * sy.clamp(min=0)) * band * cv.soft(nu - 0.032 * ns, 0, 0.014, 1)
    dark += (0.06 + 0.20 * (-sy).clamp(min=0)) * band * cv.soft(nu + 0.032 * ns, 0, 0.014, 1)
    dark += 0.25 * cv.soft(nu, y - (ny + 0.028), 0.05 * ns, 0.016)  # under the nose
    dark += 0.20 * cv.soft(mu, y - (lip_bot + 0.018), mw * 0.6, 0.012)  # under the lower lip
    for s in (-1.0, 1.0):
        # nasolabial fold: from the nose wing to beyond the mouth corner; deepens with smile and age
        y0, y1 = ny - 0.02, ym + 0.02 - lift
        q = ((y - y0) / (y1 - y0)).clamp(0, 1)
        x0, x1 = 0.055 * ns + 0.01, mw + 0.018
        xf = x0 + (x1 - x0) * q + 0.025 * q * (1 - q)
        on = cv.band(y, y0, y1)
        dark += on * (cv.line(s * mu - xf, 0.003, pw) * (0.35 * smile + 0.25 * age)
                      + cv.soft(s * mu - xf - 0.012, 0, 0.014, 1) * (0.14 * smile + 0.08 * age))
        # cheeks rise and round with smile
        cheek_y = h.cy + 0.28 * h.Hh - 0.05 * smile
        dark -= (0.05 + 0.10 * smile) * cv.soft(s * u - (es + 0.02), y - cheek_y, 0.085, 0.055)
        dark += 0.10 * smile * cv.soft(s * u - (es + 0.03), y - (cheek_y + 0.07), 0.08, 0.03)
        # age: crow's feet, eye bags, marionette lines
        cu = s * eu - (es + 0.085)
        seg = cv.band(cu, 0.0, 0.045, pw)
        for slope in (-0.5, 0.0, 0.55):
            dark += 0.40 * age * seg * cv.line((y - ey - slope * cu) / math.sqrt(1 + slope * slope), 0.0028, pw)
        du = s * eu - es
        dark += 0.40 * age * cv.line(y - (ey + 0.045 + 0.02 * (du / 0.06) ** 2), 0.003, pw) * cv.cover(du.abs() - 0.055, pw)
        mq = ((y - ym) / 0.07).clamp(0, 1)
        dark += 0.35 * age * cv.band(y, ym, ym + 0.07) * cv.line(s * mu - (mw + 0.012 - 0.01 * mq), 0.003, pw)
        # anger: vertical frown lines between the brows
        dark += 0.50 * anger * cv.line(u - s * 0.018 - s * 0.12 * (y - by), 0.004, pw) * cv.band(y, by - 0.025, by + 0.035)
    for k in range(3):  # forehead lines (age)
        fl = by - 0.045 - 0.028 * k - 0.02 * (u / 0.16) ** 2
        wl = cv.line(y - fl + 0.01 * anger, 0.003, pw) * cv.cover(u.abs() - 0.17 + 0.02 * k, pw)
        dark += 0.38 * _smoothstep(0.15 + 0.2 * k, 0.8 + 0.05 * k, age) * wl
    dark += 0.18 * anger * cv.soft(nu, y - (ey + 0.005), 0.03, 0.01)  # nose-bridge crease
    face.mul_((1 - dark * front).clamp_(min=0.2).unsqueeze(1))

    # blush, stronger with smile
    for s in (-1.0, 1.0):
        blush = (0.10 + 0.22 * smile) * front * cv.soft(s * u - (es + 0.03), y - (h.cy + 0.27 * h.Hh - 0.05 * smile), 0.07, 0.05)
        _paint(face, _rgb(1.38, 0.68, 0.68, dev) * skin.mean(1, keepdim=True), blush)

    # ---- eyes: almond between two lids; the upper lid comes down to the lower one as the eye closes
    rx, ryu, ryl = 0.068, 0.050, 0.032
    lid = (closed + 0.10 * anger * (1 - closed)).clamp(0, 1)
    for s in (-1.0, 1.0):
        du = eu - s * es
        hh = 1 - (du / rx) ** 2
        hp = hh.clamp(min=0)
        yl = ey + ryl * hp - 0.006 * smile * hp
        yu = torch.lerp(ey - ryu * hp * (1 - 0.12 * (s * du / rx)), yl, lid)
        opening = cv.band(y, yu, yl, pw) * cv.cover(-hh * rx / 2, pw) * front
        _paint(face, _rgb(0.88, 0.86, 0.83, dev) * (0.8 + 0.2 * hp).unsqueeze(1), opening)
        d_iris = torch.sqrt(du ** 2 + (y - ey - 0.002) ** 2)
        iris = cv.cover(d_iris - 0.030, pw) * opening
        _paint(face, _c(h.iris) * (0.65 + 0.55 * ((y - ey + 0.03) / 0.06).clamp(0, 1)).unsqueeze(1), iris)
        _paint(face, _rgb(0.04, 0.04, 0.04, dev), cv.cover(d_iris - 0.013, pw) * opening)
        glint = torch.sqrt((du + 0.010) ** 2 + (y - ey + 0.012) ** 2)
        _paint(face, _rgb(1, 1, 1, dev), 0.85 * cv.cover(glint - 0.0075, pw) * opening)
        _paint(face, skin * 0.5, 0.5 * cv.line(y - yu - 0.004, 0.004, pw) * opening)  # lid shadow on the eyeball
        span = cv.cover(du.abs() - rx * 1.04, pw) * front
        _paint(face, _rgb(0.09, 0.08, 0.08, dev), 0.9 * cv.line(y - yu, 0.0042 + 0.0025 * lid, pw) * span)  # lashes
        _paint(face, skin * 0.6, 0.35 * (1 - lid) * cv.line(y - yl, 0.0025, pw) * span)
        crease = cv.line(y - (ey - ryu * hp - 0.018), 0.003, pw) * cv.cover(du.abs() - rx * 0.9, pw) * front
        _paint(face, skin * 0.65, 0.45 * (1 - 0.6 * lid) * crease)

    # ---- eyebrows: an arch; anger lowers them and pulls the inner ends down and together
    for s in (-1.0, 1.0):
        inner = es - 0.062 - 0.016 * anger
        t = (s * eu - inner) / (0.16 + 0.016 * anger)
        tc = t.clamp(0, 1)
        yb = by - 0.022 * torch.sin(math.pi * tc ** 0.8) + anger * (0.012 + 0.048 * (1 - tc) ** 1.5 - 0.012 * tc)
        thick = h.bt * (1.1 - 0.5 * tc * tc) * (1 + 0.25 * anger)
        ends = cv.cover(torch.maximum(-t, t - 1) * 0.16, pw) * front
        _paint(face, skin * 0.7, 0.35 * ends * cv.soft(0, y - yb - thick - 0.012, 1, 0.012))
        _paint(face, _c(h.brow), 0.92 * ends * cv.line(y - yb, thick, pw))

    # ---- nose: nostrils, wings, a highlight on the tip
    for s in (-1.0, 1.0):
        _paint(face, skin * 0.32, 0.75 * front * cv.ellipse(nu - s * 0.024 * ns, y - (ny + 0.006), 0.012 * ns, 0.007, pw))
        wing = cv.line(torch.sqrt((nu - s * 0.036 * ns) ** 2 + (y - ny) ** 2) - 0.017 * ns, 0.003, pw)
        wing = wing * cv.cover(s * (0.036 * ns - nu), pw) * cv.cover(y - (ny + 0.012), pw) * front
        _paint(face, skin * 0.55, 0.5 * wing)
    _paint(face, _rgb(1, 1, 1, dev), 0.22 * front * cv.soft(nu + 0.006, y - (ny - 0.02), 0.014 * ns, 0.012 * ns))

    # ---- mouth: lips, the opening with teeth, the seam of a closed mouth, corners
    inside = cv.cover(mu.abs() - mw, pw) * front
    lips = cv.band(y, lip_top, lip_bot, pw) * inside
    _paint(face, _c(h.lip) * (0.95 + 0.12 * ((y - ym) / 0.02).clamp(-1, 1)).unsqueeze(1), lips)
    mouth = cv.band(y, y_otop, y_obot, pw) * inside
    _paint(face, _rgb(0.30, 0.06, 0.08, dev), mouth)
    teeth = mouth * cv.cover(y - (y_otop + 0.55 * open_h * shm), pw) * cv.cover(mu.abs() - 0.8 * mw, pw)
    _paint(face, _rgb(0.96, 0.94, 0.89, dev), teeth)
    seam = cv.line(y - ym, 0.0035, pw) * cv.cover(mu.abs() - 1.02 * mw, pw) * front
    _paint(face, _c(h.lip) * 0.35, 0.85 * (1 - _smoothstep(0.005, 0.02, open_h)) * seam)
    for s in (-1.0, 1.0):
        corner = cv.soft(mu - s * mw * 1.02, y - (ym - lift), 0.008, 0.008) * front
        _paint(face, skin * 0.45, (0.25 + 0.35 * smile + 0.3 * anger).clamp(max=0.8) * corner)


def _glasses(cv: _Canvas, h: _Head, img: torch.Tensor, face_a: torch.Tensor) -> None:
    """Rounded-rectangle rims in front of the eyes, a bridge and the temples toward the ears (clipped to
    the face outline `face_a`, so a far rim never floats beside a turned head)."""
    dev = img.device
    x, y = cv.x, cv.y
    u, pw, front = h.frontal(x, cv.px)
    gu = u - 0.045 * h.ty
    on = h.glasses * front * face_a
    rim = _rgb(0.08, 0.07, 0.07, dev)
    for s in (-1.0, 1.0):
        qx = (gu - s * (h.es + 0.005)).abs() - 0.062
        qy = (y - (h.ey + 0.006)).abs() - 0.036
        d = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2) + torch.maximum(qx, qy).clamp(max=0) - 0.022
        _paint(img, _rgb(0.85, 0.9, 0.95, dev), 0.12 * on * cv.cover(d, pw))
        _paint(img, rim, on * cv.line(d, 0.005, pw))
        temple = cv.line(y - (h.ey - 0.02), 0.0045) * cv.cover(h.es + 0.09 - s * gu, pw) * cv.cover(x.abs() - h.W * h.cyw)
        _paint(img, rim, on * temple)
    bridge = cv.line(y - (h.ey - 0.01 - 0.01 * (1 - (gu / 0.05) ** 2).clamp(min=0)), 0.0045, pw)
    _paint(img, rim, on * bridge * cv.cover(gu.abs() - (h.es - 0.08), pw))


# windows (normalized image coordinates) that hold every face's features and ears, whatever its factors
_FEATURE_BOX = (-0.30, 0.52, -0.46, 0.46)
_EAR_BOX = (-0.08, 0.24, -0.56, 0.56)


@torch.no_grad()
def render(factors: Factors, size: int = 128) -> torch.Tensor:
    """Faces for `factors`: images `[N, 3, size, size]` in [-1, 1] (float32, on the factors' device).

    Deterministic: the same factors give the same pixels. Works on CPU and CUDA; batch for speed.
    """
    if not isinstance(factors, Factors):
        raise InputError(f"render() takes a Factors batch, got {type(factors).__name__}")
    if size < 16:
        raise InputError(f"size must be at least 16 pixels, got {size}")
    n, dev = len(factors), factors.device
    if n == 0:
        return torch.zeros(0, 3, size, size, device=dev)
    h = _Head(factors)
    cv = _Canvas(size, dev)

    # background: vertical gradient, soft vignette
    img = torch.lerp(_c(h.bg_top), _c(h.bg_bot), ((cv.y + 1) / 2).unsqueeze(1)) * (1 - 0.18 * (cv.x ** 2 + 0.5 * cv.y ** 2)).unsqueeze(1)
    img = img.expand(n, 3, size, size).contiguous()

    hair_rgb, hair_back, hair_front = _hair(cv, h)
    _paint(img, hair_rgb * 0.78, hair_back)
    _neck_and_shirt(cv, h, img)

    ecv = cv.sub(*_EAR_BOX)
    ears = _ears(ecv, h)
    gold = _rgb(0.92, 0.76, 0.32, dev)
    for outer, rgb, ring, _ in ears:  # behind the head
        _paint(ecv.view(img), rgb, outer)
        if ring is not None:
            _paint(ecv.view(img), gold, ring)

    face_a, shade = _face_outline(cv, h)
    face = _c(h.skin) * shade.unsqueeze(1)
    fcv = cv.sub(*_FEATURE_BOX)
    _features(fcv, h, fcv.view(face))
    _paint(img, face, face_a)

    for outer, rgb, ring, facing in ears:  # the ear turned toward the viewer lies on the visible side
        _paint(ecv.view(img), rgb, outer * facing)
        if ring is not None:
            _paint(ecv.view(img), gold, ring * facing)

    if h.any_glasses:  # under the hair that frames the face
        _glasses(fcv, h, fcv.view(img), face_a[:, fcv.rows, fcv.cols])
    _paint(img, hair_rgb, hair_front)
    return img.mul_(2).sub_(1).clamp_(-1, 1)


# ----------------------------------------------------------------------------------------------------------
# Clips


def ease_in_out(t: torch.Tensor) -> torch.Tensor:
    """Smooth 0 -> 1 with zero speed at both ends (cubic smoothstep)."""
    t = t.clamp(0, 1)
    return t * t * (3 - 2 * t)


def motion_track(identity: Factors, motion: str, frames: int, jitter: float = 0.03,
                 generator: torch.Generator | None = None, start: float | None = None,
                 end: float | None = None) -> Factors:
    """Factors of a clip: `motion` eases from `start` (default its range's low) to `end` (high) over `frames`,
    the other motion factors drift by about `jitter` (a slow sum of sinusoids), identity factors stay."""
    if motion not in MOTION_FACTORS:
        raise InputError(f"unknown motion '{motion}'; choose one of: {', '.join(MOTION_FACTORS)}")
    if len(identity) != 1:
        raise InputError(f"a clip takes one identity, got {len(identity)}")
    if frames < 2:
        raise InputError(f"a clip needs at least 2 frames, got {frames}")
    spec = FACTOR_SPECS[motion]
    lo = spec.low if start is None else float(start)
    hi = spec.high if end is None else float(end)
    dev = identity.device
    t = torch.linspace(0, 1, frames, device=dev)
    vals = {k: v.expand(frames).clone() for k, v in identity.items()}
    vals[motion] = lo + (hi - lo) * ease_in_out(t)
    if jitter > 0:
        for k in MOTION_FACTORS:
            if k == motion:
                continue
            s = FACTOR_SPECS[k]
            vals[k] = (vals[k] + jitter * s.span * slow_wave(t, generator) / 2).clamp(s.low, s.high)
    return Factors(**vals)


def slow_wave(t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A slow random wander over clip times `t` [T] in [0, 1]: a sum of 3 sinusoids of 0.5-2 cycles per clip,
    each of amplitude 1/frequency, shifted to start at 0 (so about ±2 at most). Draws 6 numbers from
    `generator`. The world's clips jitter their other motions by it; `clips.motion_clip` moves heads by it."""
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    r = torch.rand(3, 2, generator=generator, device=gen_dev).to(t.device)
    freq, phase = 0.5 + 1.5 * r[:, 0], 2 * math.pi * r[:, 1]
    wave = (torch.sin(2 * math.pi * freq[:, None] * t[None] + phase[:, None]) / freq[:, None]).sum(0)
    return wave - wave[0]  # start from the identity's own value


def render_clip(identity: Factors, motion: str, frames: int = 32, jitter: float = 0.03,
                generator: torch.Generator | None = None, size: int = 128, start: float | None = None,
                end: float | None = None, batch: int = 64) -> tuple[torch.Tensor, Factors]:
    """A world video: one identity, `motion` easing from low to high, small jitter in the other motions.

    Returns (frames `[T, 3, size, size]` in [-1, 1], their `Factors`).
    """
    track = motion_track(identity, motion, frames, jitter, generator, start, end)
    imgs = torch.cat([render(track[i:i + batch], size) for i in range(0, frames, batch)])
    return imgs, track
