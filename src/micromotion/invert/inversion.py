"""Inversion of photos: a photo's face -> latent codes `ws` of a StyleGAN2 generator.

`invert(G, image)` aligns the face (`micromotion.align`), inverts the crop with a method from `METHODS` and
returns an `Inversion` (ws, the aligned crop, the crop->photo transform, the reconstruction, the method).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..align import AlignedFace, align_face
from ..errors import InputError
from ..io.images import MIN_FACE_SIDE, ImageSource, check_face_size, describe, load_image
from .encoders import METHODS, resolve_method
from .projector import image_to_tensor, psnr, synthesize, tensor_to_image


@dataclass
class Inversion:
    """One face inverted into G's latent space.

    ws: `[1, num_ws, w_dim]` on G's device. image: the aligned crop at G's resolution (the target).
    reconstruction: `G.synthesis(ws)` `[1, 3, R, R]` in [-1, 1]. method: e.g. 'projector'. aligned: the
    alignment (landmarks, quad, photo), None when the input was an already-aligned crop. noise: optimized
    noise maps, when the method fits them. details: method-specific numbers (space, loss, distance, steps).
    """

    ws: torch.Tensor
    image: Image.Image
    reconstruction: torch.Tensor
    method: str
    aligned: AlignedFace | None = None
    noise: list[torch.Tensor] | None = None
    details: dict = field(default_factory=dict)

    @property
    def transform(self) -> np.ndarray | None:
        """`[3, 3]`: pixel of a G-resolution rendering -> photo pixel; None without alignment."""
        if self.aligned is None:
            return None
        return self.aligned.transform_for(self.reconstruction.shape[-1])

    def reconstruction_image(self) -> Image.Image:
        return tensor_to_image(self.reconstruction[0])

    def paste_back(self, face: Image.Image | torch.Tensor | None = None, photo: ImageSource | None = None,
                   **kw) -> Image.Image:
        """Paste `face` (default: the reconstruction; a tensor `[3, R, R]`/`[1, 3, R, R]` or PIL image) into
        the photo; see `micromotion.align.paste_back`."""
        from ..align import paste_back

        if self.aligned is None:
            raise InputError("this inversion was made from an aligned crop, so there is no photo to paste into")
        if face is None:
            face = self.reconstruction
        if isinstance(face, torch.Tensor):
            face = tensor_to_image(face[0] if face.ndim == 4 else face)
        return paste_back(face, self.aligned, photo, **kw)


def _targets(G, images: Sequence[ImageSource], *, align: bool, face_index: int | None, detector: str,
             max_pixels: int | None) -> tuple[list[Image.Image], list[AlignedFace | None]]:
    R = G.resolution
    crops, faces = [], []
    for image in images:
        if align:
            face = align_face(image, size=R, face_index=face_index, detector=detector, max_pixels=max_pixels)
            crops.append(face.image)
            faces.append(face)
        else:
            label = describe(image)
            im = check_face_size(load_image(image, max_pixels=max_pixels, name=label), label, min(MIN_FACE_SIDE, R))
            if abs(im.width - im.height) > 1:
                raise InputError(f"{label}: {im.width}x{im.height} is not square; without alignment the input "
                                 f"must be an aligned face crop (use --align to detect and align the face)")
            crops.append(im if im.size == (R, R) else im.resize((R, R), Image.LANCZOS))
            faces.append(None)
    return crops, faces


def invert_many(G, images: Sequence[ImageSource], *, method: str = "projector", align: bool = True,
                face_index: int | None = None, detector: str = "auto", max_pixels: int | None = None,
                **options) -> list[Inversion]:
    """Invert several photos in one batch; see `invert`."""
    chosen = resolve_method(G, method)
    if method == "auto":  # options of the other kind of method are dropped
        if chosen == "projector":
            drop = ("n_iters", "refine_steps", "model")
        else:
            drop = ("steps", "w_plus", "loss", "optimize_noise")
        options = {k: v for k, v in options.items() if k not in drop}
    method = chosen
    if not images:
        return []
    crops, faces = _targets(G, images, align=align, face_index=face_index, detector=detector,
                            max_pixels=max_pixels)
    dev = G.w_avg.device
    targets = torch.cat([image_to_tensor(c) for c in crops]).to(dev)
    result = METHODS[method](G, targets, **options)
    with torch.no_grad():
        recon = result.images.detach() if result.images is not None else synthesize(G, result.ws, result.noise)
    space = "W+" if options.get("w_plus", True) else "W"
    out = []
    for i, (crop, face) in enumerate(zip(crops, faces)):
        noise = [n[i:i + 1] for n in result.noise] if result.noise is not None else None
        details = {"space": space, "loss": result.loss, "distance": float(result.distance[i]),
                   "psnr": float(psnr(recon[i:i + 1], targets[i:i + 1])[0])}
        if "steps" in options:
            details["steps"] = int(options["steps"])
        if int(options.get("refine_steps") or 0) > 0:
            details["refine_steps"] = int(options["refine_steps"])
        out.append(Inversion(ws=result.ws[i:i + 1], image=crop, reconstruction=recon[i:i + 1], method=method,
                             aligned=face, noise=noise, details=details))
    return out


def invert(G, image: ImageSource, *, method: str = "projector", align: bool = True, face_index: int | None = None,
           detector: str = "auto", max_pixels: int | None = None, **options) -> Inversion:
    """Align the face in `image` and invert it into G's latent space.

    method: a key of `METHODS` ('projector'; options: steps, w_plus, loss, optimize_noise, seed, progress and
    the other `project` arguments. 'restyle-psp', 'restyle-e4e': model, n_iters; G must be the encoder's
    generator, e.g. stylegan2-ffhq. 'encoder': an encoder file trained for G, default the shipped
    world-encoder; model, n_iters, refine_steps), or 'auto' (the encoder made for G if any, else the
    projector; options of the other kind are dropped). align: False when `image` is already an aligned face crop.
    face_index, detector, max_pixels: as in `micromotion.align.align_face`.
    """
    return invert_many(G, [image], method=method, align=align, face_index=face_index, detector=detector,
                       max_pixels=max_pixels, **options)[0]
