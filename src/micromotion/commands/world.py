"""`micromotion world render|clip|measure|samples|presets|pick-start-faces|train`: the face world's renders, videos, oracle readings, its
presets' recipes and its trainers (these last import `micromotion.world.train`, outside the runtime path)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from ..devices import resolve_device as _resolve_device
from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _factor_options(fn):
    """One `--<factor> VALUE` option per factor of the world (hair style also by name)."""
    from ..world.faces import FACTOR_SPECS, HAIR_STYLES

    for name, spec in reversed(list(FACTOR_SPECS.items())):
        flag = "--" + name.replace("_", "-")
        if name == "hair_style":
            help_ = f"hair style: {', '.join(HAIR_STYLES)} (or 0-{len(HAIR_STYLES) - 1})"
            fn = click.option(flag, name, type=str, default=None, help=help_)(fn)
        else:
            fn = click.option(flag, name, type=float, default=None, metavar="V",
                              help=f"{spec.doc} [{spec.low:g}..{spec.high:g}]")(fn)
    return fn


def _overrides(values: dict) -> dict:
    from ..world.faces import FACTOR_SPECS, HAIR_STYLES

    out = {}
    for k, v in values.items():
        if v is None or k not in FACTOR_SPECS:
            continue
        if k == "hair_style":
            if v in HAIR_STYLES:
                v = HAIR_STYLES.index(v)
            else:
                try:
                    v = int(v)
                except ValueError:
                    raise InputError(f"unknown hair style '{v}'; choose one of: {', '.join(HAIR_STYLES)}") from None
        s = FACTOR_SPECS[k]
        if not (math.isfinite(float(v)) and s.low <= float(v) <= s.high):
            raise InputError(f"--{k.replace('_', '-')} must be in [{s.low:g}, {s.high:g}], got {v}")
        out[k] = float(v)
    return out


@click.group("world")
def world() -> None:
    """The face world: procedural faces with known factors, their videos, and the oracle that measures them."""


@world.command("render")
@click.option("--seed", type=int, default=0, show_default=True, help="identities (and random factors) come from it")
@click.option("--count", type=click.IntRange(1, 100_000), default=1, show_default=True, help="number of faces")
@click.option("--random-factors", is_flag=True, help="random motion factors too (default: motions at rest)")
@click.option("--size", type=click.IntRange(16, 1024), default=128, show_default=True, help="image size in pixels")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda, cuda:N or mps")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="output folder")
@_factor_options
def render_cmd(seed, count, random_factors, size, device, out, **factors):
    """Render faces as PNGs, with their true factors in factors.json.

    \b
    example: micromotion world render --seed 3 --count 8 --smile 0.8 --head-turn -0.5 -o faces/
    """
    import torch

    from ..render import save_png, to_uint8
    from ..world.faces import render, sample_factors

    dev = _resolve_device(device)
    f = sample_factors(count, torch.Generator().manual_seed(seed), motion="random" if random_factors else "neutral")
    over = _overrides(factors)
    if over:
        f = f.replace(**over)
    f = f.validate().to(dev)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = f.to_dicts()
    faces = []
    for i in range(0, count, 256):
        imgs = to_uint8(render(f[i:i + 256], size))
        for j, arr in enumerate(imgs):
            name = f"face_{i + j:05d}.png"
            save_png(arr, out / name)
            faces.append({"file": name, "factors": rows[i + j]})
    meta = {"seed": seed, "count": count, "random_factors": random_factors, "size": size, "overrides": over,
            "faces": faces}
    (out / "factors.json").write_text(json.dumps(meta, indent=1))
    click.echo(f"wrote {count} face{'s' if count > 1 else ''} and factors.json to {out}")


@world.command("clip")
@click.option("--motion", required=True, help="smile, anger, age, eyes_closed or head_turn")
@click.option("--seed", type=int, default=0, show_default=True, help="the identity (and the jitter) come from it")
@click.option("--frames", type=click.IntRange(2, 10_000), default=48, show_default=True)
@click.option("--fps", type=float, default=24.0, show_default=True)
@click.option("--jitter", type=click.FloatRange(0, 0.5), default=0.03, show_default=True,
              help="drift of the other motion factors, as a fraction of their range")
@click.option("--start", type=float, default=None, help="first value of the motion (default: its range's low)")
@click.option("--end", type=float, default=None, help="last value of the motion (default: its range's high)")
@click.option("--size", type=click.IntRange(16, 1024), default=128, show_default=True)
@click.option("--factors-json", type=click.Path(dir_okay=False), default=None, help="also write each frame's factors")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda, cuda:N or mps")
@click.option("--overwrite", is_flag=True, help="replace an existing output")
@click.option("-o", "--output", "out", required=True, type=click.Path(), help=".mp4, .gif, .webp or a folder of PNGs")
@_factor_options
def clip_cmd(motion, seed, frames, fps, jitter, start, end, size, factors_json, device, overwrite, out, **factors):
    """Render a world video: one identity, one motion easing from low to high, the others jittering.

    \b
    example: micromotion world clip --motion smile --seed 4 -o smile.mp4
    """
    import torch

    from ..render import to_uint8, write_frames
    from ..world.faces import FACTOR_SPECS, MOTION_FACTORS, motion_track, render, sample_factors

    motion = motion.replace("-", "_")
    if motion not in MOTION_FACTORS:
        raise InputError(f"unknown motion '{motion}'; choose one of: {', '.join(MOTION_FACTORS)}")
    spec = FACTOR_SPECS[motion]
    for name, v in (("--start", start), ("--end", end)):
        if v is not None and not spec.low <= v <= spec.high:
            raise InputError(f"{name} must be in [{spec.low:g}, {spec.high:g}] for {motion}, got {v}")
    dev = _resolve_device(device)
    g = torch.Generator().manual_seed(seed)
    identity = sample_factors(1, g, motion="neutral")
    over = _overrides(factors)
    if over:
        identity = identity.replace(**over)
    track = motion_track(identity.validate(), motion, frames, jitter, g, start, end).to(dev)

    def batches():
        for i in range(0, frames, 64):
            yield to_uint8(render(track[i:i + 64], size))

    path = write_frames(batches(), out, fps, overwrite=overwrite)
    if factors_json:
        Path(factors_json).write_text(json.dumps({"motion": motion, "seed": seed, "fps": fps,
                                                  "frames": track.to_dicts()}, indent=1))
    click.echo(f"wrote {frames} frames of '{motion}' to {path}")


def _collect_images(paths) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    if not files:
        raise InputError("no images found; give image files or folders holding .png/.jpg images")
    return files


def _load_image(path: Path):
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from None
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1


@world.command("measure")
@click.argument("images", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON: {file: {factor: value}}")
@click.option("--oracle", "oracle_path", type=click.Path(dir_okay=False), default=None,
              help="oracle .safetensors (default: the one shipped with micromotion)")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda, cuda:N or mps")
def measure_cmd(images, as_json, oracle_path, device):
    """Read the world factors of face images with the oracle.

    \b
    example: micromotion world measure faces/ --json
    """
    import torch
    import torch.nn.functional as F

    from ..world.oracle import load_oracle

    files = _collect_images(images)
    oracle = load_oracle(oracle_path, _resolve_device(device))
    r = oracle.cfg.resolution
    results = {}
    for i in range(0, len(files), 128):
        chunk = files[i:i + 128]
        batch = []
        for p in chunk:
            x = _load_image(p)
            if x.shape[-2:] != (r, r):  # images of any size: resized here, one at a time
                x = F.interpolate(x[None], size=(r, r), mode="bilinear", antialias=True, align_corners=False)[0]
            batch.append(x)
        m = oracle.measure(torch.stack(batch))
        for j, p in enumerate(chunk):
            results[str(p)] = {k: round(float(v[j]), 4) for k, v in m.items()}
    if as_json:
        click.echo(json.dumps(results, indent=1))
        return
    names = list(next(iter(results.values())))
    width = max(len(k) for k in results)
    click.echo(" " * width + "  " + " ".join(f"{n[:11]:>11}" for n in names))
    for k, v in results.items():
        click.echo(f"{k:<{width}}  " + " ".join(f"{v[n]:>11.3f}" for n in names))


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@world.command("presets", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def presets_cmd(args):
    """Rebuild the world model's five shipped presets (`world/recipes.py`; --help for its options).

    \b
    example: micromotion world presets --source video --out presets/
    """
    from ..world.recipes import main

    main(list(args), prog="micromotion world presets")


def _psi_values(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise InputError(f"--psi: cannot read '{text}'; give one value (0.7) or a list (0,0.25,0.5,0.7,0.85,1)")
    return values


@world.command("samples")
@click.option("--model", default="world", show_default=True, help="the generator (name or .safetensors)")
@click.option("--count", type=click.IntRange(1, 4096), default=24, show_default=True,
              help="latent codes (with several --psi values: rows)")
@click.option("--seed", type=int, default=0, show_default=True, help="the codes z come from it")
@click.option("--psi", "psi_text", default="0.7", show_default=True,
              help="truncation ψ; a comma-separated list makes a truncation sweep, one column per value")
@click.option("--cols", type=click.IntRange(1, 256), default=8, show_default=True,
              help="columns of the grid (one --psi value only)")
@click.option("--size", type=click.IntRange(8, 1024), default=96, show_default=True, help="tile size in pixels")
@click.option("--pad", type=click.IntRange(0, 64), default=0, show_default=True, help="white border between tiles")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda, cuda:N or mps")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="output .png")
def samples_cmd(model, count, seed, psi_text, cols, size, pad, device, out):
    """A contact sheet of generator samples, or a truncation sweep: the pictures in README and docs/world.md.

    \b
    examples (the shipped pictures):
      micromotion world samples --count 24 --cols 8 --psi 0.7 -o docs/img/world_samples.png
      micromotion world samples --count 4 --psi 0,0.25,0.5,0.7,0.85,1 -o docs/img/world_truncation.png
    """
    import torch
    import torch.nn.functional as F

    from ..generators import load_generator
    from ..render import contact_sheet, save_png, to_uint8

    psis = _psi_values(psi_text)
    G = load_generator(model, device=_resolve_device(device)).eval()
    dev = G.w_avg.device
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    tiles = []
    with torch.no_grad():
        for i in range(0, count, 64):
            ws = torch.stack([G.mapping(z[i:i + 64], truncation_psi=p) for p in psis], dim=1)  # [n, P, num_ws, w]
            imgs = G.synthesis(ws.flatten(0, 1)).float().clamp(-1, 1)
            if imgs.shape[-1] != size:
                imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            tiles.append(to_uint8(imgs))
    import numpy as np

    sheet = contact_sheet(np.concatenate(tiles), cols=len(psis) if len(psis) > 1 else min(cols, count), pad=pad)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    path = save_png(sheet, out)
    kind = f"ψ {psis[0]:g}" if len(psis) == 1 else f"ψ {', '.join(f'{p:g}' for p in psis)}"
    click.echo(f"wrote {count * len(psis)} samples ({kind}) to {path} ({sheet.shape[1]}x{sheet.shape[0]})")


@world.command("pick-start-faces")
@click.option("--route", type=click.Choice(["video", "text"]), required=True, help="the anchors' route")
@click.option("--motion", required=True, help="preset name: smile, angry, aging, eyes_close or head_turn")
@click.option("--candidates", required=True, help="start-face seeds to try, e.g. 1-60 or 16,19,31")
@click.option("--validation-seed", type=int, default=200, show_default=True,
              help="seed of the validation faces the choice is made on")
@click.option("--test-seeds", default="", show_default=True,
              help="comma-separated seeds of test faces to measure too (reported, never used to choose), e.g. 100,300")
@click.option("--identities", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="faces in each set")
@click.option("--steps", type=click.IntRange(1, 100_000), default=None,
              help="text route: optimization steps instead of the preset's (the demo's face: --steps 40)")
@click.option("--settings", "settings_spec", default=None,
              help='a grid of changes to the route\'s settings, JSON: \'{"image_lambda": [3, 10], "steps": [60, 100]}\'')
@click.option("--model", default="world", show_default=True, help="the world generator (name or .safetensors)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="write every row and the choice as JSON")
def pick_start_faces_cmd(route, motion, candidates, validation_seed, test_seeds, identities, steps, settings_spec,
                         model, device, json_out):
    """Choose a preset's start face (and text settings) on validation faces: the rule VIDEO_SEEDS, TEXT_SEEDS,
    DEMO_TEXT_SEED and smile's text settings come from (docs/results.md, "Start faces").

    Each candidate's motion is added at strength 1 to fresh encoded renders of --validation-seed; the highest
    margin min(success - 0.9, 5 (0.1 - drift)) wins, ties to the lower drift. Slow: one motion per candidate
    (video ~2 s, text ~1-3 min on a CPU).

    \b
    examples:
      micromotion world pick-start-faces --route video --motion smile --candidates 1-60 --json video_smile.json
      micromotion world pick-start-faces --route text --motion smile --candidates 1-120 --steps 40 --device cuda
      micromotion world pick-start-faces --route text --motion smile --candidates 53 \\
          --settings '{"image_lambda": [1, 3, 10], "steps": [60, 100], "l2_lambda": [0.002, 0.004]}'
    """
    import torch

    from ..generators import load_generator
    from ..world.start_faces import parse_candidates, pick_start_faces, settings_grid

    seeds = parse_candidates(candidates)
    try:
        tests = [int(s) for s in test_seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--test-seeds: cannot read '{test_seeds}'; e.g. 100,300") from None
    grid = settings_grid(settings_spec)
    if steps is not None:
        if route != "text":
            raise InputError("--steps is for the text route; the video route has no optimization steps")
        grid = [{**cfg, "steps": steps} for cfg in grid]
    dev = _resolve_device(device)
    G = load_generator(model, device=dev).eval()
    clip = None
    if route == "text":
        from ..models.clip import Clip

        clip = Clip.load("world-clip", device=dev)
    torch.set_grad_enabled(True)

    def fmt(m):
        return (f"{m['target_change_mean']:+.2f} {m['target_success_rate'] * 100:3.0f}% "
                f"{m['nontarget_drift_mean']:.3f}")

    def show(row):
        tail = "".join(f" | {s} {fmt(row[str(s)])}" for s in tests)
        cfg = f" {json.dumps(row['settings'])}" if row["settings"] else ""
        click.echo(f"seed {row['seed']:4d}{cfg} | validation {fmt(row['validation'])}{tail}"
                   f"{'  clears' if row['clears'] else ''}")

    r = pick_start_faces(G, route, motion, seeds, clip=clip, settings=grid, validation_seed=validation_seed,
                         test_seeds=tests, identities=identities, on_row=show)
    c = r["chosen"]
    cfg = f" with {json.dumps(c['settings'])}" if c["settings"] else ""
    click.echo(f"chosen: seed {c['seed']}{cfg} (validation {fmt(c['validation'])}); "
               f"{r['clearing']} of {len(r['rows'])} clear the bar on validation")
    if json_out:
        Path(json_out).write_text(json.dumps(r, indent=1))
        click.echo(f"wrote {json_out}")


@world.group("train")
def train_group() -> None:
    """Train the world's networks: the generator (gan), its CLIP (clip), its encoder (encoder).

    Each takes its own options (`micromotion world train gan --help`); runs stop cleanly after --minutes and
    resume with --resume.
    """


def _trainer(name: str, module: str, example: str):
    @train_group.command(name, context_settings=_PASS_THROUGH, add_help_option=False,
                         help=f"Train the world {module} (world/train/{name}.py; --help for its options).\n\n"
                              f"\b\nexample: {example}")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def run(args):
        import importlib

        trainer = importlib.import_module(f"micromotion.world.train.{name}")  # imported only when asked for
        trainer.main(list(args), prog=f"micromotion world train {name}")

    return run


_trainer("gan", "StyleGAN2", "micromotion world train gan --out runs/world --minutes 8 --resume")
_trainer("clip", "CLIP", "micromotion world train clip --out runs/wclip --minutes 9 --resume")
_trainer("encoder", "encoder", "micromotion world train encoder --generator world.safetensors --out runs/wenc "
                               "--minutes 5")

COMMANDS = [world]
