"""Inversion: a photo's face -> latent codes `ws` of a StyleGAN2 generator (being split into modules)."""
from .projector import (LATENT_FORMAT, LATENT_SUFFIXES, LATENT_VERSION, LOSSES, LPIPSVGG, METHODS, Inversion,
                        PixelLoss, Projection, _paired_net, auto_method, check_latent_path, image_to_tensor, invert,
                        invert_many, load_latent, make_loss, project, psnr, save_latent, synthesize, tensor_to_image,
                        w_stats)

__all__ = ["invert", "invert_many", "Inversion", "METHODS", "auto_method", "project", "Projection", "synthesize",
           "w_stats", "make_loss", "PixelLoss", "LPIPSVGG", "LOSSES", "image_to_tensor", "tensor_to_image", "psnr",
           "save_latent", "load_latent", "check_latent_path", "LATENT_FORMAT", "LATENT_VERSION", "LATENT_SUFFIXES",
           "_paired_net"]
