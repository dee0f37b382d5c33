"""`micromotion align` and `micromotion invert`: thin shells over `micromotion.align` and `micromotion.invert`."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from ..errors import InputError

log = logging.getLogger(__name__)

_IMAGE = click.Path(dir_okay=False, path_type=Path)


def _check_image_output(path: Path | None) -> None:
    if path is not None:
        from ..io.images import check_image_output

        check_image_output(path)


_detector_option = click.option("--detector", type=click.Choice(["auto", "hog", "cnn"]), default="auto",
                                show_default=True,
                                help="Face detector: HOG (fast, photos), CNN (paintings, statues, game art), "
                                     "or auto (HOG, then CNN).")
_face_index_option = click.option("--face-index", type=click.IntRange(min=0), default=None,
                                  help="Which face, counting from the largest (0). Default: the largest.")
_max_pixels_option = click.option("--max-pixels", type=click.IntRange(min=1), default=None,
                                  help="Refuse images with more pixels (default 100 million, or "
                                       "$MICROMOTION_MAX_PIXELS).")


@click.command("align")
@click.argument("image", type=_IMAGE)
@click.option("-o", "--output", type=_IMAGE, required=True, help="Aligned face image to write (.png, .jpg, ...).")
@click.option("--size", type=click.IntRange(min=8), default=1024, show_default=True,
              help="Side of the aligned square crop, in pixels.")
@_face_index_option
@_detector_option
@click.option("--json", "json_path", type=_IMAGE, default=None,
              help="Also write landmarks, quad and the crop->photo transform as JSON (for paste-back).")
@_max_pixels_option
def align_command(image: Path, output: Path, size: int, face_index: int | None, detector: str,
                  json_path: Path | None, max_pixels: int | None) -> None:
    """Detect the face in IMAGE and write its FFHQ-aligned crop.

    \b
    Example:
      micromotion align photo.jpg -o aligned.png --size 1024
    """
    from ..align import align_face
    from ..io.images import atomic_output, save_image

    _check_image_output(output)
    if json_path is not None and not json_path.parent.is_dir():
        raise InputError(f"{json_path}: folder {json_path.parent} does not exist; create it first")
    face = align_face(image, size=size, face_index=face_index, detector=detector, max_pixels=max_pixels)
    save_image(face.image, output)
    if json_path is not None:
        record = {"source": str(image), "source_size": list(face.source_size), "size": face.size,
                  "detector": face.detector, "score": face.score, "face_index": face.face_index,
                  "num_faces": face.num_faces, "landmarks": face.landmarks.tolist(), "quad": face.quad.tolist(),
                  "transform": face.transform.tolist(),
                  "transform_convention": "aligned pixel (u, v, 1) -> photo pixel (x, y, 1), pixel centres"}
        with atomic_output(json_path) as tmp:
            tmp.write_text(json.dumps(record, indent=1))
    click.echo(f"{image}: face index {face.face_index} of {face.num_faces} found (detector {face.detector}) -> {output}",
               err=True)


@click.command("invert")
@click.argument("image", type=_IMAGE)
@click.option("--model", default="auto", show_default=True,
              help="Generator: a weights-registry name or a checkpoint file; auto: stylegan2-ffhq-1024 if cached, "
                   "else mobilestylegan-ffhq-1024 if random-face is here, else world.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Latent file to write: .safetensors (ws + metadata) or .pt (a plain ws tensor).")
@click.option("--method", type=click.Choice(["auto", "projector", "restyle-psp", "restyle-e4e", "encoder"]),
              default="auto", show_default=True,
              help="Optimization projector, a ReStyle encoder (iterative refinement), 'encoder' (one trained for "
                   "this generator: the shipped ones for the world and mobilestylegan-ffhq-1024), or auto: that "
                   "encoder if there is one, else the projector.")
@click.option("--encoder", default=None, help="Encoder file or registry name (default: restyle-psp-ffhq / "
                                             "restyle-e4e-ffhq; for 'encoder', the one shipped for the model).")
@click.option("--iters", type=click.IntRange(min=1), default=None,
              help="Encoder refinement iterations [default: 5 for ReStyle, 3 for 'encoder'].")
@click.option("--refine-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="'encoder' only: projector steps that refine the encoder's codes (e.g. 100).")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Projector optimization steps.")
@click.option("--w-plus/--w", "w_plus", default=True, show_default=True,
              help="Optimize one w per layer (W+) or a single w (W).")
@click.option("--loss", type=click.Choice(["auto", "lpips", "pixel"]), default="auto", show_default=True,
              help="Projector distance: LPIPS-VGG (needs cached weights), pixel, or auto.")
@click.option("--optimize-noise/--no-optimize-noise", default=False, show_default=True,
              help="Also fit the per-layer noise maps (saved in .safetensors only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the projector's randomness.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--reconstruction", type=_IMAGE, default=None, help="Also write the reconstructed face image.")
@click.option("--aligned", "aligned_path", type=_IMAGE, default=None, help="Also write the aligned target crop.")
@click.option("--composite", type=_IMAGE, default=None,
              help="Also write the photo with the reconstruction pasted back, at the photo's resolution.")
@click.option("--no-align", is_flag=True, help="IMAGE is already an aligned square face crop.")
@_face_index_option
@_detector_option
@_max_pixels_option
def invert_command(image: Path, model: str, output: Path, method: str, encoder: str | None, iters: int | None,
                   refine_steps: int, steps: int, w_plus: bool, loss: str,
                   optimize_noise: bool, seed: int, device: str, reconstruction: Path | None,
                   aligned_path: Path | None, composite: Path | None, no_align: bool, face_index: int | None,
                   detector: str, max_pixels: int | None) -> None:
    """Invert the face in IMAGE into the generator's latent space and write its ws.

    \b
    Example:
      micromotion invert photo.jpg --model stylegan2-ffhq-1024 -o latent.safetensors \\
          --steps 500 --reconstruction recon.png --composite pasted.png
    """
    from ..devices import resolve_device
    from ..generators import load_generator
    from ..io.images import save_image
    from ..invert import check_latent_path, invert, save_latent

    check_latent_path(output)
    for p in (reconstruction, aligned_path, composite):
        _check_image_output(p)
    if composite is not None and no_align:
        raise InputError("--composite needs the photo's alignment; it cannot be used with --no-align")
    dev = resolve_device(device)
    if model == "auto":
        from ..profiles import auto_model

        model = auto_model()
    G = load_generator(model, device=dev)
    if method == "auto":
        from ..invert import auto_method

        method = auto_method(G)
    if method == "projector":
        opts = dict(steps=steps, w_plus=w_plus, loss=loss, optimize_noise=optimize_noise, seed=seed)
    elif method == "encoder":
        opts = dict(model=encoder, n_iters=iters or 3, refine_steps=refine_steps, seed=seed)
    else:
        opts = dict(model=encoder, n_iters=iters or 5)
    if refine_steps and method != "encoder":
        raise InputError(f"--refine-steps refines an encoder's codes; the method here is {method}")
    result = invert(G, image, method=method, align=not no_align, face_index=face_index, detector=detector,
                    max_pixels=max_pixels, **opts)
    pasted = result.paste_back() if composite is not None else None
    # Everything is computed before anything is written, so a failure leaves no partial output.
    save_latent(result, output, metadata={"model": str(model)})
    if reconstruction is not None:
        save_image(result.reconstruction_image(), reconstruction)
    if aligned_path is not None:
        save_image(result.image, aligned_path)
    if pasted is not None:
        save_image(pasted, composite)
    d = result.details
    found = f", face found by {result.aligned.detector}" if result.aligned is not None else ""
    click.echo(f"{image}: {d['space']} latent ({d['loss']} distance {d['distance']:.4f}, PSNR {d['psnr']:.1f} dB"
               f"{found}) -> {output}", err=True)


COMMANDS = [align_command, invert_command]
