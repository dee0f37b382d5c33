"""micromotion: decoding micromotion in low-dimensional latent spaces from StyleGAN (Wu et al., CPAL 2024).

Pipeline (one module per stage, data flows one way):
weights -> models -> align/invert -> anchors -> decompose -> render.
"""
from .align import AlignedFace, align_face, paste_back
from .anchors import Anchors
from .anchors.text import text_anchors
from .anchors.video import video_anchors
from .animate import Animator
from .models.stylegan2_convert import save_generator
from .decompose import Motion, load_motion, robust_pca
from .errors import CheckpointError, InputError, MicromotionError, WeightsError
from .generators import load_generator
from .invert import Inversion, invert
from .models.stylegan2 import Generator, GeneratorConfig
from .weights import resolve_model

__version__ = "0.1.0"

__all__ = [
    "Generator",
    "GeneratorConfig",
    "load_generator",
    "save_generator",
    "resolve_model",
    "align_face",
    "AlignedFace",
    "paste_back",
    "invert",
    "Inversion",
    "Anchors",
    "text_anchors",
    "video_anchors",
    "robust_pca",
    "Motion",
    "load_motion",
    "Animator",
    "MicromotionError",
    "CheckpointError",
    "InputError",
    "WeightsError",
]
