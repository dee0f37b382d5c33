"""The five micromotion presets: names, the paper's text templates, and where each model's motion comes from.

A preset resolves to a `Motion` for a given generator, looked up in this order:
1. the user's preset cache `<home>/presets/<generator hash>/<name>.safetensors` (written by
   `micromotion motion import-paper` / `micromotion presets import`, or computed from text anchors);
2. motions shipped with the package (`data/<model>/presets/<name>.safetensors`: the embedded world model's, and
   the authors' directions carried to MobileStyleGAN FFHQ-1024, `carry_direction`), used when their generator
   fingerprint is `G`'s;
3. for other models: computed on first use from the paper's text template (needs CLIP weights), then cached.

Strength is normalized per preset (`Preset.unit_norm`): strength 1 means "the full motion" for every preset,
so the same number gives a comparable amount of motion. The authors' published directions differ 83-fold in
norm (eyesClose 1.06 ... headsTurn 88.3), so each is rescaled to its preset's unit when imported.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .decompose import Motion, generator_fingerprint, load_motion
from .errors import InputError, MicromotionError
from .io.files import fingerprint_matches, home

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str  # our spelling
    paper_name: str  # the original code's category name
    template: str  # text template with {degree}
    seed: int  # identity seed of the text anchors (the original's default is 1)
    factor: str  # the world oracle's factor this motion moves
    unit_norm: float  # latent-offset norm of strength 1 for imported paper directions (FFHQ W+ units)


# Templates: the paper's README table; head turn is ours (the paper shows it but lists no template).
PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("smile", "smile", "a person with {degree} smile", 1, "smile", 10.0),
    Preset("angry", "angry", "{degree} angry", 1, "anger", 10.0),
    Preset("aging", "aging", "a {degree} old person with gray hair", 1, "age", 10.0),
    Preset("eyes_close", "eyesClose", "a person with eyes {degree} closed", 1, "eyes_closed", 10.0),
    Preset("head_turn", "headsTurn", "a person with head {degree} turned to the side", 1, "head_turn", 10.0),
]}
ALIASES = {p.paper_name: p.name for p in PRESETS.values()} | {"eyes_closed": "eyes_close", "head_turn": "head_turn",
                                                               "anger": "angry", "age": "aging"}


def canonical(name: str) -> str:
    """Our preset name for any accepted spelling; InputError listing the valid ones otherwise."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise InputError(f"unknown motion '{name}'; choose one of: {', '.join(PRESETS)} (the paper's eyesClose, "
                         f"headsTurn also work), or give a .safetensors motion file")
    return key


def packaged_dir() -> Path:
    return Path(__file__).parent / "data" / "world" / "presets"


def shipped_dirs() -> list[Path]:
    """Every folder of presets shipped with the package (`data/<model>/presets`): the world's first."""
    data = Path(__file__).parent / "data"
    return [packaged_dir()] + sorted(d for d in data.glob("*/presets") if d.is_dir() and d != packaged_dir())


# ---------------------------------------------------------------------------------------------------------
# The authors' directions on MobileStyleGAN (issue 21, item 5)
#
# The authors' directions are [18, 512] W+ offsets of StyleGAN2 FFHQ 1024 (NVlabs layout): row 0 modulates the
# 4² conv, and at resolution 2^(k+2) (k = 1..8, 8² ... 1024²) rows 2k-1 and 2k modulate its two convs and row
# 2k+1 its ToRGB (row 17: the 1024² ToRGB). MobileStyleGAN (`models.mobilestylegan`) is a student distilled
# from that generator with 23 rows: row 0 its 4² conv; block b = 0..6 (output 8·2^b, i.e. k = b+1) reads row
# 3b+1 (wavelet upsampling + first conv) and 3b+2 (second conv); row 3b+3 feeds the block's intermediate
# wavelet image (the reference's distillation output; it does not change the final image); row 21 the final
# image layer, which turns the 512² features into the 1024² image; row 22 is spare.
#
# A StyleGAN row controls what happens at its feature resolution (coarse rows: pose and face shape; middle:
# expression; fine: colour and texture), and the student learned to reproduce the teacher's image at every
# resolution from the same W. So each student row gets the teacher row(s) acting at the same resolution:
#   row 0      <- 0                  (4² conv)
#   row 3b+1   <- 2b+1               (first conv at 8·2^b)
#   row 3b+2   <- 2b+2               (second conv at 8·2^b)
#   row 3b+3   <- 2b+3               (that resolution's ToRGB: what the intermediate image output does)
#   row 21     <- mean of 15, 16, 17 (the student has no 1024² convs: its final layer does their work and
#                                     the ToRGB's)
#   row 22     <- row 21             (spare, never read; kept equal so the motion stays in W-like form)
# The alternative, 'wmean', gives every row the mean of the 18 rows: the single W the export was made with.
ROW_SCHEMES = ("resolution", "wmean")
#: The scheme each shipped MobileStyleGAN preset uses: chosen on validation faces (seed 1000, 10 faces): per
#: motion, the scheme that moved the measure the right way on more faces among those keeping identity
#: (dlib distance < 0.6) on ≥ 90 %, ties to the larger mean change (docs/results.md has both schemes' numbers).
#: Row-mapped eyes_close changed identity on 2 of the 10 faces; W-mean closed the eyes on as many, keeping all.
SHIPPED_ROWS = {"smile": "resolution", "angry": "resolution", "aging": "resolution", "eyes_close": "wmean",
                "head_turn": "resolution"}


def mobilestylegan_row_map(num_ws: int = 23) -> list[tuple[int, ...]]:
    """For each of MobileStyleGAN's `num_ws` rows (3 per block + 2), the StyleGAN2 W+ rows it takes (mean)."""
    blocks = (num_ws - 2) // 3
    if num_ws != 3 * blocks + 2 or blocks < 1:
        raise InputError(f"a MobileStyleGAN W+ has 3 rows per block + 2 (23 at 1024²), got {num_ws}")
    top = 2 * blocks + 4  # StyleGAN2 rows of the generator of the same output resolution: 18 for 7 blocks
    rows: list[tuple[int, ...]] = [(0,)]
    for b in range(blocks):
        rows += [(2 * b + 1,), (2 * b + 2,), (2 * b + 3,)]
    rows[-1:] = []  # the last block's row 3b+3 is the final image layer (row 21), not an intermediate output
    final = (top - 3, top - 2, top - 1)
    return rows + [final, final]


def carry_direction(direction: torch.Tensor, num_ws: int = 23, rows: str = "resolution") -> torch.Tensor:
    """A StyleGAN2 FFHQ W+ direction [18, 512] carried to MobileStyleGAN's [num_ws, 512] (see the table above):
    rows 'resolution' (each row from the StyleGAN2 rows at its resolution) or 'wmean' (the 18 rows' mean)."""
    d = torch.as_tensor(direction, dtype=torch.float32)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    blocks = (num_ws - 2) // 3
    want = 2 * blocks + 4
    if d.ndim != 2 or d.shape[0] != want:
        raise InputError(f"a StyleGAN2 W+ direction for a {num_ws}-row MobileStyleGAN has {want} rows, got shape "
                         f"{list(d.shape)}")
    if rows == "wmean":
        return d.mean(0, keepdim=True).expand(num_ws, -1).clone()
    if rows != "resolution":
        raise InputError(f"unknown row scheme '{rows}'; choose one of: {', '.join(ROW_SCHEMES)}")
    return torch.stack([d[list(src)].mean(0) for src in mobilestylegan_row_map(num_ws)])


PAPER_CREDIT = ("direction by Qiucheng Wu et al., 'Decoding Micromotion in Low-dimensional Latent Spaces from "
                "StyleGAN' (2024), github.com/wuqiuche/micromotion-styleGAN, MIT License, Copyright (c) 2022 "
                "Qiucheng Wu")


def carried_paper_motion(path: str | os.PathLike, G, rows: str = "resolution", name: str | None = None,
                         generator_name: str | None = None) -> Motion:
    """One of the authors' StyleGAN2 FFHQ directions as a preset of MobileStyleGAN generator `G`: normalised as
    today's presets are (`normalize_to_unit` on the 18 StyleGAN2 rows, so each resolution moves as the FFHQ
    preset moves it at the same strength), then carried to G's rows by `carry_direction`; stamped with G's
    fingerprint (and `generator_name`, default the registry name G was loaded by) and the authors' credit."""
    from .decompose.formats import _file_sha256, _paper_name, read_paper_direction

    path = Path(path)
    preset = PRESETS[canonical(name or _paper_name(path))]
    d18 = read_paper_direction(path)
    n = float(d18.norm())
    if n == 0:
        raise InputError(f"{path}: the direction is zero; it cannot be normalized")
    scale = preset.unit_norm / n
    d = carry_direction(d18 * scale, G.num_ws, rows)
    source = {"kind": "paper-carried", "file": path.name, "sha256": _file_sha256(path), "rows": rows,
              "from": "stylegan2-ffhq-1024 W+ [18, 512]", "normalized_to": preset.unit_norm, "original_norm": n,
              "paper_scale": scale, "hosted_default_scale": 5.0, "credit": PAPER_CREDIT, "license": "MIT"}
    return Motion.from_direction(d.to(G.w_avg.device), name=preset.name, generator=G, source=source,
                                 generator_name=generator_name or getattr(G, "registry_name", None))


def cache_path(name: str, G, cache_dir=None) -> Path:
    fp = generator_fingerprint(G).split(":")[-1][:16]
    return home(cache_dir) / "presets" / fp / f"{canonical(name)}.safetensors"


def normalize_to_unit(motion: Motion, unit_norm: float) -> Motion:
    """Rescale a motion so strength 1 moves the latents by `unit_norm` (Frobenius norm over W+)."""
    n = float(motion.direction.norm())
    if n == 0:
        raise InputError(f"motion '{motion.meta.name}' has a zero direction; it cannot be normalized")
    out = motion.scaled(unit_norm / n)
    out.meta.name = motion.meta.name
    out.meta.source = dict(motion.meta.source, normalized_to=unit_norm, original_norm=n)
    return out


def import_paper_direction(path: str | os.PathLike, G, name: str | None = None, cache_dir=None,
                           rows: str = "shipped") -> Path:
    """Import one of the authors' direction files (`pregen_latents/<name>/d_latent`) as `G`'s preset. For a
    MobileStyleGAN `G` (3 rows per block + 2, from the 18 rows of StyleGAN2 at the same resolution) the direction
    is carried to its rows (`carried_paper_motion`; rows 'shipped': the scheme of the shipped preset)."""
    from .decompose.formats import read_paper_direction

    path = Path(path)
    guess = name or (path.parent.name if path.stem == "d_latent" else path.stem)
    preset = PRESETS[canonical(guess)]
    src_rows = read_paper_direction(path).shape[0]
    if G.num_ws != src_rows and G.num_ws == 3 * ((src_rows - 4) // 2) + 2:
        motion = carried_paper_motion(path, G, rows=SHIPPED_ROWS[preset.name] if rows == "shipped" else rows,
                                      name=preset.name)
    else:
        motion = normalize_to_unit(load_motion(path, generator=G, name=preset.name), preset.unit_norm)
    out = cache_path(preset.name, G, cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    motion.save(out)
    log.info("imported %s as preset '%s' for %s", path, preset.name, motion.meta.generator_name)
    return out


def shipped_dir_for(G) -> Path:
    """Where presets shipped for MobileStyleGAN generator `G` live (`data/mobilestylegan/presets`)."""
    return Path(__file__).parent / "data" / "mobilestylegan" / "presets"


def write_carried_presets(files, G, rows: str = "resolution", out_dir: str | os.PathLike | None = None,
                          generator_name: str | None = None) -> list[Path]:
    """`carried_paper_motion` for each of the authors' direction files, written as `<out_dir>/<preset>.safetensors`
    (default: the package's `data/mobilestylegan/presets`) -> the paths written. rows 'shipped': each preset's
    scheme from `SHIPPED_ROWS` (how the shipped files are made)."""
    from .decompose.formats import _paper_name

    out = Path(out_dir) if out_dir is not None else shipped_dir_for(G)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        scheme = SHIPPED_ROWS[canonical(_paper_name(Path(f)))] if rows == "shipped" else rows
        m = carried_paper_motion(f, G, rows=scheme, generator_name=generator_name)
        path = out / f"{m.meta.name}.safetensors"
        m.save(path)
        log.info("carried %s (%s rows) -> %s", f, rows, path)
        written.append(path)
    return written


def preset_motion(name: str, G, cache_dir=None, compute=None) -> Motion:
    """The `Motion` of preset `name` for generator `G` (see the module docstring for the lookup order).

    `compute(preset) -> Motion` is called when nothing is cached (e.g. text anchors with CLIP); its result is
    normalized and cached. Without it, a missing preset is an error that says how to make one.
    """
    preset = PRESETS[canonical(name)]
    cached = cache_path(preset.name, G, cache_dir)
    if cached.is_file():
        return load_motion(cached, generator=G)
    for folder in shipped_dirs():
        shipped = folder / f"{preset.name}.safetensors"
        if shipped.is_file():
            m = load_motion(shipped)
            if fingerprint_matches(m.meta.generator_hash, G):
                return m
    how = (f"make one with `micromotion extract --text \"{preset.template}\" -o {preset.name}.safetensors` (needs "
           f"CLIP weights) or import the authors' direction with `micromotion presets import "
           f"pregen_latents/{preset.paper_name}/d_latent --model ...`")
    if compute is None:
        raise InputError(f"no '{preset.name}' motion for this generator yet; {how}")
    try:
        motion = compute(preset)
    except MicromotionError as e:
        raise InputError(f"no '{preset.name}' motion for this generator yet and it could not be computed from "
                         f"text ({e}); {how}") from None
    motion = normalize_to_unit(motion, preset.unit_norm) if motion.meta.source.get("kind") == "paper" else motion
    cached.parent.mkdir(parents=True, exist_ok=True)
    motion.save(cached)
    return motion


def resolve_motion(spec: str, G, cache_dir=None, compute=None) -> Motion:
    """A preset name (any accepted spelling) or a motion file path -> `Motion` checked against `G`."""
    p = Path(spec)
    if p.suffix in (".safetensors", ".pt") or p.name == "d_latent" or p.is_file():
        if not p.is_file():
            raise InputError(f"{p}: no such motion file")
        m = load_motion(p, generator=G)
        if m.meta.source.get("kind") == "paper" or m.meta.direction_kind == "file" and p.suffix != ".safetensors":
            key = ALIASES.get(m.meta.name, m.meta.name)
            if key in PRESETS:
                m = normalize_to_unit(m, PRESETS[key].unit_norm)
        return m
    return preset_motion(spec, G, cache_dir, compute)


def strengths(frames: int, strength: float, loop: bool = False) -> torch.Tensor:
    """t·S for t from 0 to 1 inclusive (the original stops at 0.99); with `loop`, there and back."""
    t = torch.linspace(0, 1, frames, dtype=torch.float64)
    if loop:
        t = 1 - (2 * t - 1).abs()
    return t * strength


# ---------------------------------------------------------------------------------------------------------
# Transfer risk of a motion made from one face (issue 25, item 3)
#
# How well a single-face motion moves other faces is not known until it is rendered and measured. What a user can
# see beforehand: its size next to the shipped preset of the same motion. On the world model, in a test fixed
# before its 22 motions were made (docs/results.md, "Transfer risk of one-face motions, tested"), the 3 that moved
# fewer than half of 50 unseen faces were all under 0.7x the shipped preset's direction norm, as was 1 of the 19
# that moved more (a text head turn, 0.52x); every video motion was over 0.7x (the smallest 0.72x).
#: Below this fraction of the shipped preset's norm a single-face motion is flagged as high transfer risk.
RISK_RATIO = 0.7


def risk_folders() -> tuple[Path, ...]:
    """Shipped preset folders the risk rule was measured against: the world's only (MobileStyleGAN's presets are
    the authors' directions rescaled to a unit norm, so a motion's size next to them says nothing measured)."""
    return (packaged_dir(),)


def _shipped_preset_of(name: str, generator_hash: str, folders) -> Motion | None:
    for folder in folders:
        path = Path(folder) / f"{name}.safetensors"
        if path.is_file():
            m = load_motion(path)
            if m.meta.generator_hash == generator_hash:
                return m
    return None


def transfer_risk(motion: Motion, folders=None) -> dict:
    """How likely a motion decoded from one face is to move other faces, from its size alone (see above).

    Compares `motion` with the shipped preset of the same name (`PRESETS`, any accepted spelling) made for the
    same generator (by the fingerprint stamped in both files), in `folders` (default `risk_folders()`).
    -> {"level": "high" | "low" | "unknown", "ratio": ||direction|| / ||preset direction|| or None,
        "preset": preset name or None, "threshold": RISK_RATIO, "reason": why, when "unknown"}.
    """
    out = {"level": "unknown", "ratio": None, "preset": None, "threshold": RISK_RATIO, "reason": ""}
    meta = motion.meta
    name = ALIASES.get(meta.name, meta.name)
    ids = meta.rpca.get("identities")
    if isinstance(ids, int) and ids > 1:  # first: no name would make the rule apply
        out["reason"] = f"shared by {ids} faces; the rule is measured on motions from one face"
    elif name not in PRESETS:
        out["reason"] = (f"no preset is named '{meta.name}' to compare with; if it is one of these motions, "
                         f"decode it under that name: {', '.join(PRESETS)}")
    elif not meta.generator_hash:
        out["reason"] = "the motion has no generator fingerprint (decode it with -g)"
    else:
        ref = _shipped_preset_of(name, meta.generator_hash, risk_folders() if folders is None else folders)
        if ref is None:
            out["reason"] = f"no shipped '{name}' preset of this generator that the rule was measured against"
        elif float(ref.direction.norm()) == 0:
            out["reason"] = f"the shipped '{name}' preset has a zero direction"
        else:
            ratio = float(motion.direction.norm()) / float(ref.direction.norm())
            out.update(level="high" if ratio < RISK_RATIO else "low", ratio=ratio, preset=name)
    return out
