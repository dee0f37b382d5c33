"""`micromotion motion ...`: inspect, decode, compose and import motion files (thin shells over decompose)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import click

from ..anchors import Anchors
from ..decompose import DIRECTIONS, SPANS, VARIANTS, Motion, load_anchors, load_motion
from ..errors import InputError

_FILE = click.Path(dir_okay=False, path_type=Path)


def _generator(spec: str | None):
    """The generator named on the command line, labelled by its registry name or file stem."""
    if not spec:
        return None
    from .. import load_generator

    G = load_generator(spec)
    if not getattr(G, "name", None):
        G.name = Path(spec).stem if Path(spec).exists() else spec
    return G


def _read_anchors(path: Path):
    """A micromotion anchors file as `Anchors` (labels, source), any other anchors file as a tensor."""
    if not zipfile.is_zipfile(path):
        try:
            return Anchors.load(path)
        except InputError:
            pass  # not one of ours: a bare tensor file, read below (with its own error if unreadable)
    return load_anchors(path)


def _describe_source(source: dict) -> str:
    if not source:
        return "unknown"
    kind = source.get("kind", "?")
    rest = {k: v for k, v in source.items() if k not in ("kind", "parts")}
    text = kind + (" " + json.dumps(rest, ensure_ascii=False) if rest else "")
    if isinstance(source.get("parts"), list):
        text += " of " + ", ".join(str(p.get("name", "?")) if isinstance(p, dict) else str(p) for p in source["parts"])
    return text


def _describe_rpca(r: dict) -> str:
    try:
        seed = f", seed {r['seed']}" if r.get("seed") is not None else ""
        return (f"{r['variant']}, lambda {float(r['lam']):.4g}, tol {r['tol']}{seed}; {max(r['iterations'])} "
                f"iterations, residual {max(r['residual']):.2e}" + ("" if r.get("converged", True) else " (did not converge)"))
    except (KeyError, TypeError, ValueError):  # written by something else: show it as it is
        return json.dumps(r)


def _ranks(ranks: list[int]) -> str:
    return str(ranks[0]) + " on every layer" if len(set(ranks)) == 1 else " ".join(map(str, ranks))


def _anchors_line(motion: Motion) -> str:
    """What the motion was decoded from: its anchors, or the identities whose shared motion it is."""
    ids, per = motion.meta.rpca.get("identities"), motion.meta.rpca.get("anchors_per_identity")
    if ids and per:
        return f"{sum(per)} anchors of {ids} identities ({', '.join(map(str, per))}), their shared motion"
    return f"{motion.num_anchors} anchors"


def _risk(motion: Motion) -> str:
    """The transfer-risk estimate of a single-face motion (`presets.transfer_risk`), as one line's value."""
    from ..presets import transfer_risk

    r = transfer_risk(motion)
    if r["level"] == "unknown":
        return f"unknown ({r['reason']})"
    size = f"{r['ratio']:.2f}x the size of the shipped '{r['preset']}' preset"
    if r["level"] == "high":
        return (f"high - this motion is {size}; most one-face motions under {r['threshold']:g}x moved fewer than "
                f"half of unseen faces on the world model (docs/results.md)")
    return (f"low - this motion is {size}; one-face motions this large mostly moved more than half of unseen "
            f"faces on the world model (docs/results.md)")


def _written(motion: Motion, path: Path) -> str:
    return (f"wrote {path}: motion '{motion.meta.name}', {motion.num_ws}x{motion.w_dim} latents, "
            f"{_anchors_line(motion)}, rank {_ranks(motion.ranks)}, direction norm {motion.direction.norm():.3g}")


@click.group("motion")
def motion() -> None:
    """Motion files: inspect, decode from anchors, compose, import the authors' directions."""


@motion.command("info")
@click.argument("file", type=_FILE)
@click.option("-g", "--generator", help="Also check that the motion is for this generator (file or registry name).")
def info(file: Path, generator: str | None) -> None:
    """Show what a motion file holds: its generator, source, rank, solver settings and direction.

    FILE is a .safetensors motion or one of the authors' direction torch files.

    \b
    Examples:
      micromotion motion info smile.safetensors
      micromotion motion info pregen_latents/smile/d_latent -g stylegan2-ffhq-config-f.pt
    """
    m = load_motion(file, generator=_generator(generator))
    meta = m.meta
    norms = m.direction.norm(dim=-1)
    top = norms.argsort(descending=True)[:3].tolist()
    times = ", ".join(f"{t:.3g}" for t in m.times.tolist())
    gen = meta.generator_name or "unknown"
    gen += f" ({meta.generator_hash})" if meta.generator_hash else " (no fingerprint: only shapes can be checked)"
    if zipfile.is_zipfile(file):
        fmt = "the authors' published direction (torch file)"
    else:
        fmt = f"micromotion motion v{meta.format_version}"
        fmt += f", written by micromotion {meta.library_version}" if meta.library_version else ""
    asked = ([f"rank {meta.rank}"] if meta.rank else []) + ([f"energy {meta.energy}"] if meta.energy else [])
    rows = [
        ("file", str(file)),
        ("name", meta.name),
        ("format", fmt),
        ("generator", gen),
        ("source", _describe_source(meta.source)),
        ("latents", f"{m.num_ws} x {m.w_dim}"),
        ("anchors", _anchors_line(m) if meta.rpca.get("identities") else f"{m.num_anchors} at t = {times}"),
        ("rank", _ranks(m.ranks) + (f" (asked: {', '.join(asked)})" if asked else "")),
        ("direction", f"{meta.direction_kind}; norm {norms.norm():.4g}; largest on layers "
                      + ", ".join(f"{i} ({norms[i]:.3g})" for i in top)),
    ]
    if meta.span:
        scale = f", {meta.span_scale:.3g}x the low-rank span" if isinstance(meta.span_scale, (int, float)) else ""
        rows.append(("strength 1", f"spans the anchors (last minus first along the direction{scale})"
                     if meta.span == "anchors" else "spans the low-rank anchors"))
    if meta.rpca:
        rows.append(("robust PCA", _describe_rpca(meta.rpca)))
    rows.append(("transfer risk", _risk(m)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key + ':':<{width + 2}}{value}")


@motion.command("decode")
@click.argument("anchors", type=_FILE)
@click.option("-o", "--output", type=_FILE, required=True, help="Motion file to write (.safetensors).")
@click.option("--name", help="Motion name (default: the output file's stem).")
@click.option("--rank", type=click.IntRange(min=1), default=4, show_default=True,
              help="Dimensions kept per layer (with --energy: at most this many).")
@click.option("--energy", type=click.FloatRange(0, 1, min_open=True), help="Keep the fewest dimensions per layer that "
              "explain this fraction of the anchors' variance.")
@click.option("--direction", type=click.Choice(DIRECTIONS), default="endpoints", show_default=True,
              help="endpoints: last minus first low-rank anchor (the paper); principal: first principal axis.")
@click.option("--variant", type=click.Choice(VARIANTS), default="ialm", show_default=True,
              help="Robust PCA solver; 'paper' reproduces the original code.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the paper variant's randomized PCA.")
@click.option("--span", type=click.Choice(SPANS), default=None,
              help="What strength 1 spans: anchors (default: the last anchor minus the first, along the decoded "
              "direction) or lowrank (the low-rank part's extent; the default with --variant paper).")
@click.option("--times", help="Comma-separated positions of the anchors (degrees, frame times); default evenly spaced.")
@click.option("-g", "--generator", help="Generator the anchors belong to (file or registry name): recorded with its "
              "fingerprint, so the motion is refused by other generators.")
@click.option("--generator-name", help="Name to record for the generator.")
def decode(anchors: Path, output: Path, name, rank, energy, direction, variant, seed, span, times, generator,
           generator_name) -> None:
    """Decode a motion from anchor latents [K, num_ws, w_dim], ordered by degree or time.

    ANCHORS is an anchors file from `micromotion extract` (its labels and source are kept), a torch file
    holding a tensor or a list of latents (as the original code saves latent/<text>_s<seed>_pre_pca), or a
    .safetensors file with a tensor named 'anchors'.

    \b
    Example:
      micromotion motion decode latent/smile_s1_pre_pca -o smile.safetensors -g stylegan2-ffhq-config-f.pt
    """
    stack = _read_anchors(anchors)
    if isinstance(stack, Anchors):
        source = {**stack.source, "labels": stack.labels, "anchors_file": anchors.name}
    else:
        source = {"kind": "anchors", "file": anchors.name, "num_anchors": stack.shape[0]}
    parsed = None
    if times:
        try:
            parsed = [float(x) for x in times.split(",")]
        except ValueError:
            raise click.BadParameter(f"'{times}' is not a comma-separated list of numbers", param_hint="--times") from None
    m = Motion.from_anchors(stack, times=parsed, rank=rank, energy=energy, direction=direction, variant=variant,
                           seed=seed, span=span, name=name or output.stem, generator=_generator(generator),
                           generator_name=generator_name, source=source)
    m.save(output)
    click.echo(_written(m, output))
    click.echo(f"transfer risk: {_risk(m)}")


@motion.command("compose")
@click.option("--add", "parts", type=(_FILE, float), multiple=True, required=True, metavar="FILE SCALE",
              help="Add this motion times SCALE; repeatable.")
@click.option("--remove", type=_FILE, multiple=True, metavar="FILE",
              help="Remove, layer by layer, everything along this motion's direction; repeatable.")
@click.option("-o", "--output", type=_FILE, required=True, help="Motion file to write (.safetensors).")
@click.option("--name", help="Motion name (default: the output file's stem).")
@click.option("-g", "--generator", help="Check every motion against this generator (file or registry name).")
def compose(parts, remove, output: Path, name, generator) -> None:
    """Combine motions: a weighted sum, with other motions' directions removed.

    \b
    Example (a smile without head turn, plus a little aging):
      micromotion motion compose --add smile.safetensors 1 --add aging.safetensors 0.3 \\
          --remove head_turn.safetensors -o smile_still.safetensors
    """
    G = _generator(generator)
    result = None
    for path, scale in parts:
        part = load_motion(path, generator=G).scaled(scale)
        try:
            result = part if result is None else result + part
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
    if remove:
        result = result.orthogonalized(*(load_motion(p, generator=G) for p in remove))
    result.meta.name = name or output.stem
    result.save(output)
    click.echo(_written(result, output))


@motion.command("import-paper")
@click.argument("file", type=_FILE)
@click.option("-o", "--output", type=_FILE, required=True, help="Motion file to write (.safetensors).")
@click.option("--name", help="Motion name (default: the folder name of pregen_latents/<name>/d_latent, else the file stem).")
@click.option("-g", "--generator", help="Generator the direction is for (file or registry name): checked for shape "
              "and recorded with its fingerprint.")
@click.option("--generator-name", help="Name to record for the generator, e.g. stylegan2-ffhq-config-f.")
def import_paper(file: Path, output: Path, name, generator, generator_name) -> None:
    """Convert one of the authors' published directions (a torch file [1, 18, 512]) to a motion file.

    \b
    Example:
      micromotion motion import-paper pregen_latents/smile/d_latent -o smile.safetensors \\
          --generator-name stylegan2-ffhq-config-f
    """
    if file.is_file() and not zipfile.is_zipfile(file):
        raise InputError(f"{file}: not a torch file (already a micromotion motion file?); import-paper reads the "
                         f"authors' direction files such as pregen_latents/smile/d_latent")
    m = load_motion(file, generator=_generator(generator), name=name)
    if generator_name:
        m.meta.generator_name = generator_name
    m.save(output)
    click.echo(_written(m, output))


@motion.command("carry-paper")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="The MobileStyleGAN generator to carry them to (registry name or file), "
              "e.g. mobilestylegan-ffhq-1024.")
@click.option("--rows", type=click.Choice(["shipped", "resolution", "wmean"]), default="shipped", show_default=True,
              help="resolution: each of the 23 rows from the StyleGAN2 rows at its feature resolution; wmean: the 18 "
                   "rows' mean on every row; shipped: each preset's scheme as shipped (presets.SHIPPED_ROWS).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for <preset>.safetensors (default: the package's data/mobilestylegan/presets).")
def carry_paper(files, model, rows, output_dir) -> None:
    """Carry the authors' StyleGAN2 FFHQ directions ([1, 18, 512]) to MobileStyleGAN's 23 W+ rows as presets.

    Each is normalised as the FFHQ presets are (strength 1 = the preset's unit norm over the 18 rows) and
    stamped with MODEL's fingerprint; the authors' credit (MIT) is kept in each file's metadata.

    \b
    Example (the shipped presets):
      micromotion motion carry-paper ../shared/reference/paper_directions/*.pt \\
          --model mobilestylegan-ffhq-1024
    """
    from ..presets import write_carried_presets

    G = _generator(model)
    for path in write_carried_presets(files, G, rows=rows, out_dir=output_dir):
        click.echo(_written(load_motion(path), path))


COMMANDS = [motion]
