"""Inversion: a photo's face -> latent codes `ws` of a StyleGAN2 generator.

- `projector`: NVIDIA's optimization projector, its losses, the image <-> tensor conversion, the lr ramp.
- `encoders`: the inversion methods (`METHODS`: projector, ReStyle, a trained encoder) and the "auto" choice.
- `inversion`: `invert(G, photo)` -> `Inversion` (align, run a method, reconstruct, paste back).
- `latents`: latent files (`save_latent`, `load_latent`).

Every public name of the former single module `micromotion.invert`, and the private ones other code imported,
is still importable from here.
"""
from ..models.lpips import LPIPSVGG
from .encoders import METHODS, auto_method, encoder_for, resolve_method
from .inversion import Inversion, invert, invert_many
from .latents import LATENT_FORMAT, LATENT_SUFFIXES, LATENT_VERSION, check_latent_path, load_latent, save_latent
from .projector import (LOSSES, PixelLoss, Projection, get_lr, image_to_tensor, make_loss, project, psnr, synthesize,
                        tensor_to_image, w_stats)

# private names that other modules and scripts imported from the single module
from .encoders import _paired_net  # noqa: F401

__all__ = ["invert", "invert_many", "Inversion", "METHODS", "auto_method", "encoder_for", "resolve_method", "project",
           "Projection", "synthesize", "w_stats", "make_loss", "PixelLoss", "LPIPSVGG", "LOSSES", "get_lr",
           "image_to_tensor", "tensor_to_image", "psnr", "save_latent", "load_latent", "check_latent_path",
           "LATENT_FORMAT", "LATENT_VERSION", "LATENT_SUFFIXES"]
