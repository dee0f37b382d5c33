"""`micromotion animate` (photo -> micromotion video) and `micromotion presets`."""
from __future__ import annotations

import glob
import logging
from pathlib import Path

import click

from ..errors import InputError, MicromotionError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _inputs(spec: str) -> list[Path]:
    p = Path(spec)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if any(c in spec for c in "*?["):
        return sorted(Path(f) for f in glob.glob(spec) if Path(f).suffix.lower() in IMAGE_SUFFIXES)
    if not p.exists():
        raise click.ClickException(f"{spec}: no such file or folder")
    return [p]


@click.command("animate")
@click.argument("input", metavar="INPUT")
@click.option("-m", "--motion", "motion", required=True,
              help="smile, angry, aging, eyes_close, head_turn (eyesClose/headsTurn too), a motion .safetensors "
                   "file, or several comma-separated (batch mode).")
@click.option("-o", "--output", "output", required=True, help="Video file (.mp4/.gif/.webp), PNG folder, or, in "
                                                            "batch mode, an existing output folder.")
@click.option("--model", default="auto", show_default=True,
              help="auto (stylegan2-ffhq-1024 if cached, else mobilestylegan-ffhq-1024 if random-face is here, "
                   "else world) | registry name | generator file.")
@click.option("--strength", type=float, default=1.0, show_default=True,
              help="How far to move: 1 is the full motion of a preset (normalized per preset).")
@click.option("--frames", type=int, default=100, show_default=True)
@click.option("--fps", type=float, default=25.0, show_default=True)
@click.option("--loop", is_flag=True, help="Go there and back.")
@click.option("--path", "path_kind", type=click.Choice(["line", "anchors"]), default="line", show_default=True,
              help="Straight line along the direction, or the decoded anchor trajectory.")
@click.option("--paste-back", is_flag=True, help="Put the edited face back into the whole photo.")
@click.option("--side-by-side", is_flag=True, help="Show the input next to the result.")
@click.option("--face-index", type=click.IntRange(min=0), default=None,
              help="Which face (0 = largest) when there are several.")
@click.option("--align/--no-align", "align", default=None,
              help="Detect and FFHQ-align the face before inversion, or use the photo as an aligned square crop. "
                   "Default: per input (always for photo models; for the world model when the photo is not "
                   "square or its detected face is not already an aligned crop).")
@click.option("--steps", type=int, default=300, show_default=True, help="Projector steps (when no encoder).")
@click.option("--refine-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="With an encoder for the model: projector steps that refine its codes (closer to the photo, "
                   "slower; e.g. 100).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps")
@click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on CUDA) | fp32 | bf16")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Frames rendered per batch.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def animate(input, motion, output, model, strength, frames, fps, loop, path_kind, paste_back, side_by_side,
            face_index, align, steps, refine_steps, device, dtype, batch_size, overwrite):
    """Make a face in INPUT (photo, folder, glob, or latent file) perform a micromotion; write a video.

    \b
    Examples:
      micromotion animate portrait.jpg --motion smile -o smile.mp4
      micromotion animate portrait.jpg -m head_turn --strength 1.5 --loop --paste-back -o turn.mp4
      micromotion animate photos/ -m smile,aging -o out/          # batch: one model load, a summary
    """
    from ..animate import Animator, check_render_options
    from ..presets import canonical
    from ..render import check_output_path

    motions = [m.strip() for m in motion.split(",") if m.strip()]
    if not motions:
        raise click.ClickException("--motion is empty")
    for m in motions:  # validate everything before loading anything
        if not (m.endswith((".safetensors", ".pt")) or Path(m).is_file()):
            canonical(m)
    check_render_options(strength, frames, fps)
    if batch_size < 1:
        raise click.ClickException(f"--batch-size must be ≥1, got {batch_size}")
    inputs = _inputs(input)
    batch = len(motions) > 1 or Path(input).is_dir() or any(c in input for c in "*?[")
    if not inputs:
        raise click.ClickException(f"{input}: no images found")
    if batch:
        outdir = Path(output)
        if not outdir.is_dir():
            raise click.ClickException(f"{outdir}: in batch mode the output must be an existing folder")
        jobs = [(src, m, outdir / f"{src.stem}_{Path(m).stem}.mp4") for src in inputs for m in motions]
    else:
        check_output_path(output, overwrite)
        jobs = [(inputs[0], motions[0], Path(output))]
    animator = Animator(model=model, device=device, dtype=dtype, invert_steps=steps, refine_steps=refine_steps)
    click.echo(f"model: {animator.model_name} ({animator.G.resolution}x{animator.G.resolution}) on "
               f"{animator.device}", err=True)
    failures = 0
    from tqdm.auto import tqdm

    for src, m, out in tqdm(jobs, desc="animate", unit="video", disable=len(jobs) == 1):
        try:
            res = animator.animate(src, m, out, strength=strength, frames=frames, fps=fps, loop=loop,
                                   path=path_kind, paste_back=paste_back, side_by_side=side_by_side,
                                   overwrite=overwrite, face_index=face_index, align=align, batch_size=batch_size,
                                   progress=len(jobs) == 1)
            secs = ", ".join(f"{k} {v:.2f}s" for k, v in res.seconds.items())
            click.echo(f"wrote {res.out} ({res.frames} frames, motion {res.motion}; {secs})")
        except MicromotionError as e:
            if not batch:
                raise
            failures += 1
            click.echo(f"failed: {src} [{m}]: {e}", err=True)
    if batch:
        click.echo(f"done: {len(jobs) - failures} of {len(jobs)} videos written, {failures} failed")
        if failures:  # the summary stays, but a batch with a failure is not a success
            raise click.exceptions.Exit(1)


@click.group("presets")
def presets_group():
    """The five micromotion presets: list them, import the authors' published directions."""


@presets_group.command("list")
def presets_list():
    """Show each preset, its template, and where its motion comes from."""
    from ..presets import PRESETS
    from ..profiles import PROFILES

    shipping = [pr for pr in PROFILES if pr.shipped_presets is not None]
    for p in PRESETS.values():
        files = {pr.name: pr.shipped_presets / f"{p.name}.safetensors" for pr in shipping}
        shipped = "  ".join(f"{k}: {'shipped' if f.is_file() else 'not shipped'}" for k, f in files.items())
        click.echo(f"{p.name:11s} paper: {p.paper_name:10s} template: \"{p.template}\"  {shipped}")


@presets_group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", required=True, help="The generator the directions belong to (name or file).")
@click.option("--name", default=None, help="Preset name (default: from the path pregen_latents/<name>/d_latent).")
def presets_import(files, model, name):
    """Import the authors' direction files as presets of MODEL.

    \b
    Example:
      micromotion presets import pregen_latents/*/d_latent --model stylegan2-ffhq-1024
    """
    from ..generators import load_generator
    from ..presets import import_paper_direction

    if name and len(files) > 1:
        raise InputError("--name works with one file only")
    G = load_generator(model)
    for f in files:
        out = import_paper_direction(f, G, name=name)
        click.echo(f"imported {f} -> {out}")


COMMANDS = [animate, presets_group]
