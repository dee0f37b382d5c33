"""`micromotion extract`: anchors of one micromotion from a text template or a video clip."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from ..anchors.base import Anchors

log = logging.getLogger(__name__)

# One anchor source per option. To add one (e.g. `--video FILE`): add the click option to `extract`, and an
# entry here mapping its parameter name to a function (params: dict) -> Anchors.
_SOURCES: dict = {}


def _from_text(p: dict):
    from ..anchors.text import DEFAULT_DEGREES, TextAnchorSettings, check_degrees, validate_template
    from ..devices import resolve_device
    from ..generators import load_generator
    from ..profiles import profile_for
    from ..text_motion import PROFILE, text_motion_anchors

    validate_template(p["text"])  # before loading anything
    if p["reinvert"] not in ("auto", "none"):
        from ..invert import METHODS

        if p["reinvert"] not in METHODS:
            raise click.BadParameter(f"unknown inversion method {p['reinvert']!r}; choose auto, none or one of: "
                                     f"{', '.join(METHODS)}", param_hint="--reinvert")
    degrees = check_degrees(p["degrees"] if p["degrees"] is not None else DEFAULT_DEGREES)

    def check_reinvert(method: str) -> None:
        if method != "none" and len(degrees) < 2:
            raise click.BadParameter(f"re-inverting the anchors ({method}) leaves out the start and needs at least "
                                     f"2 degrees; give more --degrees or pass --reinvert none", param_hint="--degrees")

    check_reinvert(p["reinvert"] if p["reinvert"] != "auto" else "none")  # what is known before loading
    device = resolve_device(p["device"])
    G = load_generator(p["model"], device=device)
    profile = profile_for(G)  # the model's settings, start faces, CLIP, re-inversion (e.g. world/settings.py)
    reinvert = p["reinvert"] if p["reinvert"] != "auto" else profile.reinvert
    check_reinvert(reinvert)
    if reinvert == "encoder":
        from ..invert import METHODS

        if not METHODS["encoder"].supports(G):
            raise click.BadParameter(f"no encoder was trained for {p['model']}; pass --reinvert none or another "
                                     f"inversion method (e.g. projector, restyle-e4e)", param_hint="--reinvert")
    arcface = profile.arcface if p["arcface"] == "auto" else None if p["arcface"] == "none" else p["arcface"]
    if isinstance(arcface, str) and arcface != "auto":
        from ..models.arcface import load_arcface

        arcface = load_arcface(arcface, device=device)
    changes = {"clip_preprocess": p["preprocess"],
               # an identity network given: its loss at the paper's weight, also on models whose profile has none
               "id_lambda": 0.0 if arcface is None else TextAnchorSettings().id_lambda}
    for key in ("steps", "image_lambda"):
        if p[key] is not None:
            changes[key] = p[key]
    def one(seed):
        return text_motion_anchors(G, p["text"], clip=p["clip"] if p["clip"] != "auto" else PROFILE,
                                   profile=profile, seed=seed, default_seed=0, arcface=arcface,
                                   settings=profile.text_settings(p["text"], **changes), reinvert=reinvert,
                                   degrees=degrees, micro_batch=p["micro_batch"], compile=p["compile_"],
                                   cache=not p["no_cache"], progress=True, generator_name=str(p["model"]))

    first = one(p["seed"])
    if p["identities"] == 1:
        return first, G
    # more faces: the seeds after the first face's (its seed as the anchors record it)
    recorded = first.source.get("seed")  # None when the anchors started from a latent, not a seed
    start = int(recorded) if recorded is not None else (p["seed"] or 0)
    sets = [first] + [one(start + i) for i in range(1, p["identities"])]
    return Anchors.concat(sets), G


_SOURCES["text"] = _from_text


def _from_video(p: dict):
    from ..anchors.video import DEFAULT_STEPS, parse_position, probe_video, video_anchors
    from ..devices import resolve_device
    from ..generators import load_generator

    parse_position(p["start"], "--start")  # before loading anything
    parse_position(p["end"], "--end")
    infos = [probe_video(v) for v in p["video"]]  # every clip checked before the slow work
    device = resolve_device(p["device"])
    G = load_generator(p["model"], device=device)
    results = [video_anchors(G, info.path, start=p["start"], end=p["end"], stride=p["stride"],
                             max_frames=p["max_frames"], face_index=p["face_index"], align=not p["aligned"],
                             steps=p["steps"] or DEFAULT_STEPS, seed=p["seed"] or 0, progress=True,
                             generator_name=str(p["model"])) for info in infos]
    if len(results) == 1:  # the preview: the aligned frames over their reconstructions
        return results[0].anchors, G, results[0].save_preview
    return Anchors.concat([r.anchors for r in results]), G


_SOURCES["video"] = _from_video


@click.command("extract")
@click.option("--text", "text", metavar="TEMPLATE",
              help="Text template with a {degree} placeholder, e.g. 'a person with {degree} smile'.")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", multiple=True,
              help="A clip of one face doing the motion (mp4, mov, avi, webm, gif). Several clips (--video a.mp4 "
                   "b.mp4 c.mp4), of different faces doing the same motion, give anchors of several identities, "
                   "whose shared motion `motion decode` finds.")
@click.argument("more_videos", nargs=-1, type=click.Path(dir_okay=False, path_type=Path), metavar="[CLIP]...")
@click.option("--start", metavar="POS",
              help="Video: where to start, in seconds (2.5, 1:02.5) or as a frame index (30f).")
@click.option("--end", metavar="POS", help="Video: where to stop (exclusive), as --start [default: the end].")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Video: track every n-th frame.")
@click.option("--max-frames", type=click.IntRange(min=2), default=12, show_default=True,
              help="Video: anchors, evenly spread over the frames that show the face.")
@click.option("--face-index", type=click.IntRange(min=0), default=None,
              help="Video: which face to track, 0 the largest [default: 0].")
@click.option("--aligned", is_flag=True, help="Video: the frames are aligned face crops (e.g. world clips); no "
                                              "face detection, only resizing.")
@click.option("--seed", type=int, default=None,
              help="Face of the text anchors: z from this seed (video: the projector's seed). Default 0; on the world "
                   "model a preset's template starts from that preset's chosen face (world/settings.py TEXT_SEEDS).")
@click.option("--degrees", metavar="LIST", help="Comma-separated degrees [default: no,10%,20%,...,100%].")
@click.option("--identities", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Text: optimize the anchors of this many faces (the seeds after the first face's), for a "
                   "motion shared across identities (`motion decode` finds it).")
@click.option("-m", "--model", default="auto", show_default=True,
              help="Generator: registry name or file; auto: stylegan2-ffhq-1024 if cached, else "
                   "mobilestylegan-ffhq-1024 if random-face is here, else world.")
@click.option("--clip", default="auto", show_default=True,
              help="CLIP: registry name or file; auto: world-clip for the world model, else clip-vit-b-32.")
@click.option("--arcface", default="auto", show_default=True,
              help="Identity network for the identity loss: registry name or file, 'auto' (arcface-ir-se50 if it "
                   "is there, else off with a warning), or 'none'.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Optimization steps [default: 40 for --text (the world model: its preset's, e.g. 100 for smile, "
                   "60 for others; world/settings.py world_text_settings); 400 for --video's first frame, a quarter "
                   "for the others].")
@click.option("--image-lambda", type=click.FloatRange(min=0), default=None,
              help="Text: weight of an identity term in image space (mean squared pixel change from the start "
                   "image) [default: the world model's preset settings, e.g. 3 for smile, 1 for head turn, 10 for "
                   "others; else 0].")
@click.option("--reinvert", default="auto", show_default=True, metavar="METHOD",
              help="Text: invert the anchor images again with this inversion method (encoder, restyle-e4e, ...) "
                   "and leave the start out; 'auto': encoder for the world model, else none.")
@click.option("--preprocess", type=click.Choice(["correct", "paper"]), default="correct", show_default=True,
              help="CLIP preprocessing: 'correct' (resize + CLIP mean/std) or the original code's ('paper').")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
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

    From a video: one face tracked through the clip, aligned like photos, its frames inverted in time order
    (labels: frame times in seconds).

    \b
    Examples:
      micromotion extract --text "a person with {degree} smile" --seed 3 -o smile.safetensors
      micromotion extract --video smile.mp4 --start 0.5 --end 2.5 -o smile.safetensors
      micromotion extract --video ann.mp4 bob.mp4 cy.mp4 -o smile3.safetensors     # three faces
      micromotion extract --text "a person with {degree} smile" --identities 3 -o smile3.safetensors
    """
    more = p.pop("more_videos")
    if more and not p["video"]:
        raise click.UsageError(f"unexpected argument {more[0]}; more clips go after --video")
    p["video"] = tuple(p["video"]) + tuple(more) or None
    if p["identities"] > 1 and p["text"] is None:
        raise click.UsageError("--identities is for --text; for videos give one clip per face")
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

    if p["model"] == "auto":
        from ..profiles import auto_model

        p["model"] = auto_model()
    anchors, G, *writer = _SOURCES[given[0]](p)
    anchors.save(out)
    faces = f", {anchors.num_identities} identities" if anchors.num_identities > 1 else ""
    msg = (f"wrote {out}: {len(anchors)} anchors [{anchors.num_ws}, {anchors.w_dim}]{faces} "
           f"({', '.join(map(str, anchors.labels))})")
    if not p["no_preview"]:
        preview = (writer[0] if writer else lambda path: anchors.save_preview(G, path))(out.with_suffix(".png"))
        msg += f"; preview {preview}"
    click.echo(msg)


COMMANDS = [extract]
