"""The face world (issue 9): procedural faces with known factors, an oracle that measures them, and the
StyleGAN2 trained on them.

- `faces`: `Factors`, `sample_factors`, `render`, `render_clip` (CPU and GPU, batched).
- `oracle`: `Oracle` (a small CNN regressing the factors), `train_oracle`, `load_oracle`, `measure`.
- `recipes`: the five presets from world clips or text (`micromotion world presets`); `settings`: its text settings.
- `train/`: the trainers (`micromotion world train gan|clip|encoder`), imported by the CLI only.
"""
from .faces import (CONTINUOUS_FACTORS, FACTOR_SPECS, HAIR_STYLES, IDENTITY_FACTORS, MOTION_FACTORS, Factors,
                     motion_track, render, render_clip, sample_factors)

__all__ = [
    "CONTINUOUS_FACTORS",
    "FACTOR_SPECS",
    "HAIR_STYLES",
    "IDENTITY_FACTORS",
    "MOTION_FACTORS",
    "Factors",
    "motion_track",
    "render",
    "render_clip",
    "sample_factors",
]
