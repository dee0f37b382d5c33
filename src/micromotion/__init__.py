"""micromotion: decoding micromotion in low-dimensional latent spaces from StyleGAN (Wu et al., CPAL 2024).

Pipeline: weights -> models -> align/invert -> anchors -> decompose -> render.
"""
from .checkpoint import load_generator, save_generator
from .errors import CheckpointError, InputError, MicromotionError, WeightsError
from .models.stylegan2 import Generator, GeneratorConfig

__version__ = "0.1.0"

__all__ = [
    "Generator",
    "GeneratorConfig",
    "load_generator",
    "save_generator",
    "MicromotionError",
    "CheckpointError",
    "InputError",
    "WeightsError",
]
