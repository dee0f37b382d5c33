"""Captions of world renders from their true factors, for training the world CLIP (issue 10).

Each caption names 1-3 factors chosen at random, in the paper's words: motion degrees are quantized to the
paper's degree list (`no, 10%, ..., 100%`, `anchors.text.DEFAULT_DEGREES`) and phrased with the preset
templates ("a person with {degree} smile", "{degree} angry", "a {degree} old person with gray hair",
"a person with eyes {degree} closed", "a person with head {degree} turned to the side") or paraphrases;
identity factors get plain words (hair colour and style, glasses, skin tone, face shape, ...).

Head turn direction is named in the image's frame, as a viewer describes a photo: `head_turn > 0` (nose
toward the image's right, see `render.FACTOR_SPECS`) is "turned to the right", `< 0` "turned to the left".
"""
from __future__ import annotations

import torch

from .faces import FACTOR_SPECS, HAIR_STYLES, MOTION_FACTORS, Factors

__all__ = ["caption", "captions", "degree", "degree_word", "phrases", "ANCHOR_TEMPLATES", "turn_side"]

# The preset templates (presets.py), one per motion factor: the text-anchor route uses exactly these.
ANCHOR_TEMPLATES = {
    "smile": "a person with {degree} smile",
    "anger": "{degree} angry",
    "age": "a {degree} old person with gray hair",
    "eyes_closed": "a person with eyes {degree} closed",
    "head_turn": "a person with head {degree} turned to the side",
}

# Paraphrases per motion; "{degree}" is "no" or "N%". Some read badly with "no"; those get `_NONE` phrases.
_PARAPHRASES = {
    "smile": ["a person with {degree} smile", "a face with {degree} smile", "{degree} smile",
              "a photo of a person with {degree} smile", "a person smiling {degree}"],
    "anger": ["{degree} angry", "a {degree} angry person", "a person with {degree} anger", "a {degree} angry face"],
    "age": ["a {degree} old person with gray hair", "a {degree} old person", "a {degree} old face",
            "a person {degree} old"],
    "eyes_closed": ["a person with eyes {degree} closed", "a face with eyes {degree} closed", "eyes {degree} closed"],
    "head_turn": ["a person with head {degree} turned to the side", "a head {degree} turned to the side"],
}
_NONE = {
    "smile": ["a person with no smile", "a person not smiling", "a face with no smile"],
    "anger": ["no angry", "a person with no anger", "a calm face"],
    "age": ["a no old person with gray hair", "a young person", "a young face"],
    "eyes_closed": ["a person with eyes no closed", "a person with open eyes", "eyes wide open"],
    "head_turn": ["a person with head no turned to the side", "a face looking straight ahead", "a frontal face"],
}
_SIDE = ["a face turned to the {side}", "a person with head {degree} turned to the {side}",
         "a face {degree} turned to the {side}", "a person looking to the {side}"]

_HAIR_COLORS = ["black", "brown", "auburn", "blonde"]
_SKIN = ["very light", "light", "medium", "tan", "brown", "dark"]
_IDENTITY = ("hair", "glasses", "skin_tone", "face_shape", "earrings", "eye_color", "brows")


def degree(value: float, name: str) -> int:
    """A motion factor's value -> its degree in percent of the range away from rest, quantized to 10 %
    steps (head turn: |head_turn|)."""
    s = FACTOR_SPECS[name]
    x = abs(value) if name == "head_turn" else (value - s.low) / s.span
    return int(round(min(max(x, 0.0), 1.0) * 10)) * 10


def degree_word(pct: int) -> str:
    """0 -> "no", 30 -> "30%" (the paper's degree list)."""
    return "no" if pct == 0 else f"{pct}%"


def turn_side(head_turn: float) -> str:
    """The image-frame side the nose points to: "right" for head_turn > 0, "left" for < 0."""
    return "right" if head_turn > 0 else "left"


def _pick(seq, rng: torch.Generator):
    return seq[int(torch.randint(len(seq), (), generator=rng))]


def _motion_phrase(name: str, value: float, rng: torch.Generator) -> str:
    pct = degree(value, name)
    if name == "head_turn" and pct > 0 and torch.rand((), generator=rng) < 0.6:
        return _pick(_SIDE, rng).format(side=turn_side(value), degree=degree_word(pct))
    if pct == 0 and torch.rand((), generator=rng) < 0.5:
        return _pick(_NONE[name], rng)
    return _pick(_PARAPHRASES[name], rng).format(degree=degree_word(pct))


def _identity_phrase(name: str, row: dict, rng: torch.Generator) -> str:
    if name == "hair":
        color = "gray" if row["age"] > 0.7 else _HAIR_COLORS[min(int(row["hair_color"] * 4), 3)]
        style = HAIR_STYLES[int(round(row["hair_style"]))]
        style = {"crop": "short cropped", "swept": "swept", "bob": "bob", "long": "long", "bun": "bun",
                 "curly": "curly"}[style]
        return _pick([f"a person with {color} hair", f"a person with {style} {color} hair",
                      f"{style} hair", f"a person with {style} hair"], rng)
    if name == "glasses":
        return "a person wearing glasses" if row["glasses"] > 0.5 else _pick(["a person without glasses", "no glasses"], rng)
    if name == "earrings":
        return "a person with earrings" if row["earrings"] > 0.5 else "a person without earrings"
    if name == "skin_tone":
        return f"a person with {_SKIN[min(int(row['skin_tone'] * 6), 5)]} skin"
    if name == "eye_color":
        eyes = ["dark brown", "brown", "hazel", "green", "blue", "gray"][min(int(row["eye_color"] * 6), 5)]
        return f"a person with {eyes} eyes"
    if name == "brows":
        return "a person with thick eyebrows" if row["brow_thickness"] > 0.5 else "a person with thin eyebrows"
    # face shape from the most extreme of width, length, jaw
    words = {"face_width": ("a narrow face", "a wide face"), "face_length": ("a short face", "a long face"),
             "jaw": ("a pointed chin", "a square jaw")}
    k = max(words, key=lambda k: abs(row[k] - 0.5))
    return f"a person with {words[k][int(row[k] > 0.5)]}"


def caption(row: dict, rng: torch.Generator, p_motion: float = 0.7, motion_only: bool = False) -> str:
    """One caption of one face (`row`: factor name -> float, as `Factors.to_dicts()` gives), mentioning 1-3
    factors chosen at random; at least one is a motion factor with probability `p_motion`; with `motion_only`
    only motion factors (a caption that fits every face with these motions, whoever it is)."""
    n = 1 + int(torch.randint(3, (), generator=rng))
    names = list(MOTION_FACTORS) if motion_only else list(MOTION_FACTORS) + list(_IDENTITY)
    chosen: list[str] = []
    if torch.rand((), generator=rng) < p_motion:
        chosen.append(_pick(MOTION_FACTORS, rng))
    while len(chosen) < n:
        k = _pick(names, rng)
        if k not in chosen:
            chosen.append(k)
    order = torch.randperm(len(chosen), generator=rng).tolist()
    phrases = []
    for i in order:
        k = chosen[i]
        p = _motion_phrase(k, row[k], rng) if k in MOTION_FACTORS else _identity_phrase(k, row, rng)
        # the first phrase keeps its article; later ones are joined as clauses
        phrases.append(p if not phrases else p.removeprefix("a person with ").removeprefix("a person "))
    return ", ".join(phrases)


def captions(factors: Factors, generator: torch.Generator, p_motion: float = 0.7) -> list[str]:
    """One caption per face of `factors` ([N] each), deterministic given the state of `generator` (a CPU
    `torch.Generator`; drawing captions never syncs a GPU). `p_motion`: see `caption`."""
    if generator.device.type != "cpu":
        raise ValueError(f"captions need a CPU torch.Generator, got one on {generator.device}")
    cols = {k: v.detach().float().cpu().tolist() for k, v in factors.items()}
    return [caption({k: c[i] for k, c in cols.items()}, generator, p_motion) for i in range(len(factors))]


def phrases() -> list[str]:
    """Every phrase a caption can be made of (each motion phrase at every degree and side, every identity
    phrase), so the world CLIP's vocabulary is known: its compact file keeps exactly these tokens' embeddings."""
    out: list[str] = list(ANCHOR_TEMPLATES.values())
    degrees = [degree_word(p) for p in range(0, 101, 10)]
    for name in MOTION_FACTORS:
        out += [t.format(degree=d) for t in _PARAPHRASES[name] for d in degrees] + list(_NONE[name])
    out += [t.format(side=side, degree=d) for t in _SIDE for side in ("left", "right") for d in degrees]
    styles = ["short cropped", "swept", "bob", "long", "bun", "curly"]
    for color in _HAIR_COLORS + ["gray"]:
        out += [f"a person with {color} hair"] + [f"a person with {st} {color} hair" for st in styles]
    out += [f"{st} hair" for st in styles] + [f"a person with {st} hair" for st in styles]
    out += ["a person wearing glasses", "a person without glasses", "no glasses", "a person with earrings",
            "a person without earrings", "a person with thick eyebrows", "a person with thin eyebrows"]
    out += [f"a person with {sk} skin" for sk in _SKIN]
    out += [f"a person with {e} eyes" for e in ["dark brown", "brown", "hazel", "green", "blue", "gray"]]
    out += [f"a person with {w}" for pair in [("a narrow face", "a wide face"), ("a short face", "a long face"),
                                              ("a pointed chin", "a square jaw")] for w in pair]
    # as `caption` joins them: later phrases lose their article, and the joining comma sticks to a trailing
    # punctuation mark ("20%," is one word to CLIP's tokenizer)
    out += [q.removeprefix("a person with ").removeprefix("a person ") for q in out]
    return out + [q + "," for q in out]
