"""Decompose: anchor latents -> robust PCA -> a low-rank micromotion space -> a `Motion` (Wu et al., CPAL 2024).

- `rpca`: the robust PCA solver (principal component pursuit, inexact ALM; the original code's variant).
- `motion`: `Motion` (decode from anchors, compose, apply to faces) and its `.safetensors` file.
- `formats`: the paper's own files (published directions, anchor lists) and `load_motion` for any of them.

Every public name of the former single module `micromotion.decompose`, and the private ones other code imported,
is still importable from here.
"""
from .formats import load_anchors, load_motion, read_paper_direction
from .motion import (DIRECTIONS, FORMAT_NAME, FORMAT_VERSION, SPAN_SCALE_USUAL, SPANS, Motion, MotionMeta,
                     anchor_stability, generator_fingerprint, generator_label)
from .rpca import VARIANTS, RPCAStats, robust_pca

# private names that modules, benchmarks and tests imported from the single module
from .motion import _anchor_span, _check_anchors  # noqa: F401
from .rpca import _rpca, _svt  # noqa: F401

__all__ = ["Motion", "MotionMeta", "anchor_stability", "load_motion", "load_anchors", "read_paper_direction",
           "robust_pca",
           "RPCAStats", "generator_fingerprint", "generator_label", "FORMAT_NAME", "FORMAT_VERSION", "VARIANTS",
           "DIRECTIONS", "SPANS", "SPAN_SCALE_USUAL"]
