"""`micromotion extract`: anchors of one micromotion from a text template (and, later, from a video)."""
from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger(__name__)

# One anchor source per option. To add one (e.g. `--video FILE`): add the click option to `extract`, and an
# entry here mapping its parameter name to a function (params: dict) -> Anchors.
_SOURCES: dict = {}


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise click.BadParameter(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N", param_hint="--device")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu", param_hint="--device")
    return name


def _from_text(p: dict):
    from ..anchors.text import DEFAULT_DEGREES, TextAnchorSettings, check_degrees, text_anchors, validate_template
    from ..checkpoint import load_generator
    from ..models.clip import Clip

    validate_template(p["text"])  # before loading anything
    degrees = check_degrees(p["degrees"] if p["degrees"] is not None else DEFAULT_DEGREES)
    settings = TextAnchorSettings(steps=p["steps"], clip_preprocess=p["preprocess"],
                                  **({"id_lambda": 0.0} if p["arcface"] == "none" else {}))
    device = _device(p["device"])
    clip = Clip.load(p["clip"], device=device)
    G = load_generator(p["model"], device=device)
    arcface = None
    if p["arcface"] == "auto":
        arcface = "auto"
    elif p["arcface"] != "none":
        from ..models.arcface import load_arcface

        arcface = load_arcface(p["arcface"], device=device)
    return text_anchors(G, clip, p["text"], degrees=degrees, seed=p["seed"], arcface=arcface, settings=settings,
                        micro_batch=p["micro_batch"], compile=p["compile_"], cache=not p["no_cache"], progress=True,
                        generator_name=str(p["model"])), G


_SOURCES["text"] = _from_text


@click.command("extract")
@click.option("--text", "text", metavar="TEMPLATE",
              help="Text template with a {degree} placeholder, e.g. 'a person with {degree} smile'.")
@click.option("--seed", type=int, default=0, show_default=True, help="Face of the anchors: z from this seed.")
@click.option("--degrees", metavar="LIST", help="Comma-separated degrees [default: no,10%,20%,...,100%].")
@click.option("-m", "--model", default="stylegan2-ffhq-1024", show_default=True,
              help="Generator: registry name or file.")
@click.option("--clip", default="clip-vit-b-32", show_default=True, help="CLIP: registry name or file.")
@click.option("--arcface", default="auto", show_default=True,
              help="Identity network for the identity loss: registry name or file, 'auto' (arcface-ir-se50 if it "
                   "is there, else off with a warning), or 'none'.")
@click.option("--steps", type=click.IntRange(min=1), default=40, show_default=True, help="Optimization steps.")
@click.option("--preprocess", type=click.Choice(["correct", "paper"]), default="correct", show_default=True,
              help="CLIP preprocessing: 'correct' (resize + CLIP mean/std) or the original code's ('paper').")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--micro-batch", type=click.IntRange(min=1), default=None,
              help="Degrees per forward/backward pass [default: all]; smaller uses less GPU memory, runs slower.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the generator (about a minute once per process; faster steps on GPUs).")
@click.option("--no-cache", is_flag=True, help="Recompute even if these anchors are cached.")
@click.option("--no-preview", is_flag=True, help="Do not write the preview grid OUTPUT.png.")
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output anchors file (.safetensors); the preview grid goes beside it as .png.")
def extract(**p) -> None:
    """Compute the anchors of a micromotion: one face at increasing degrees.

    From text: the face of --seed, optimized in W+ toward the template at each degree with CLIP (all degrees
    in one batch). Anchors are cached, so running the same command again is instant.

    \b
    Example:
      micromotion extract --text "a person with {degree} smile" --seed 3 -o smile.safetensors
    """
    given = [name for name in _SOURCES if p.get(name) is not None]
    options = " or ".join(f"--{name}" for name in _SOURCES)
    if len(given) != 1:
        raise click.UsageError(f"give one anchor source: {options}" if not given else
                               f"give only one anchor source, not {' and '.join('--' + g for g in given)}")
    out: Path = p["output"]
    if out.suffix != ".safetensors":
        raise click.BadParameter(f"{out}: the output must end in .safetensors", param_hint="-o")
    if out.exists() and not p["overwrite"]:
        raise click.ClickException(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise click.ClickException(f"{out.parent}: output folder does not exist")

    anchors, G = _SOURCES[given[0]](p)
    anchors.save(out)
    msg = f"wrote {out}: {len(anchors)} anchors [{anchors.num_ws}, {anchors.w_dim}] ({', '.join(map(str, anchors.labels))})"
    if not p["no_preview"]:
        preview = anchors.save_preview(G, out.with_suffix(".png"))
        msg += f"; preview {preview}"
    click.echo(msg)


COMMANDS = [extract]
