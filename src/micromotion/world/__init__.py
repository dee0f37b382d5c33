"""The face world (issue 9): procedural faces with known factors, an oracle that measures them, and the
StyleGAN2 trained on them.

- `render`: `Factors`, `sample_factors`, `render`, `render_clip` (CPU and GPU, batched).
- `oracle`: `Oracle` (a small CNN regressing the factors), `train_oracle`, `load_oracle`, `measure`.
- `train`: StyleGAN2 training on renders made on the fly (`python -m micromotion.world.train`).
"""
from .render import (CONTINUOUS_FACTORS, FACTOR_SPECS, HAIR_STYLES, IDENTITY_FACTORS, MOTION_FACTORS, Factors,
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
