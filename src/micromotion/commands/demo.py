"""`micromotion demo`: what `make demo` runs."""
import click


def _real_lines(r) -> list[str]:
    from ..demo_real import measures_table

    how = f"{r.steps} projector steps" if r.method == "projector" else f"photos inverted by the {r.method}"
    lines = [f"micromotion demo: real faces ({r.model}, {r.device}, {r.frames} frames per motion, {how})"]
    lines += [f"note: {n}" for n in r.notes]
    for name, e in r.faces.items():
        if e["kind"] == "photo":
            inv = e.get("inversion", {})
            steps = f", {inv.get('steps', r.steps)} steps" if inv.get("method", r.method) == "projector" else ""
            lines.append(f"{name}: aligned and inverted ({inv.get('method', r.method)}, {inv.get('loss', '?')} "
                         f"loss{steps}, {e['seconds_invert']} s)")
        else:
            lines.append(f"{name}: a sample of the model (seed {e['seed']}, psi {e['psi']})")
    lines.append("measures (dlib; the preset's reading on the first and last frame, descriptor distances: same "
                 "person below 0.6; '–': no face found):")
    lines += measures_table(r).splitlines()
    return lines


@click.command("demo")
@click.option("-o", "--output", default="demo-out", show_default=True, help="Folder for videos and the report.")
@click.option("--world", is_flag=True, help="The face-world demo (the method end to end on our own generator) "
              "instead of real faces.")
@click.option("--photo", "photos", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Real-face demo: a photo to align, invert and animate (repeatable; default: scikit-image's "
                   "astronaut).")
@click.option("--sample/--no-sample", default=True, show_default=True,
              help="Real-face demo: also animate a seeded sample of the model.")
@click.option("--frames", type=int, default=None,
              help="Frames per motion [world: 24; real faces: 3 on a CPU, 24 on a GPU].")
@click.option("--steps", type=int, default=None,
              help="Real-face demo: projector steps, when no encoder ships for the model [10 on a CPU, 200 on a "
                   "GPU].")
@click.option("--paste-back/--no-paste-back", default=True, show_default=True,
              help="Real-face demo: videos of photos at the photo's resolution, the face pasted back.")
@click.option("--device", default="auto", show_default=True, help="Real-face demo: auto, cpu, cuda, mps.")
@click.option("--identities", type=int, default=4, show_default=True, help="World demo: unseen identities.")
@click.option("--text-steps", type=int, default=40, show_default=True,
              help="World demo: steps of the text route. The smile preset uses 100; the demo takes 40 to fit two "
                   "minutes on a CPU, from a start face chosen for 40 (DEMO_TEXT_SEED); that moves unseen faces "
                   "about as far as the preset, with more drift (numbers: docs/results.md, \"Start faces\").")
def demo(output, world, photos, sample, frames, steps, paste_back, device, identities, text_steps):
    """Animate real faces offline with the five presets and print what dlib measured; or, with --world (or
    when the real-face model is not installed), run the method end to end on the face world.

    \b
    Examples:
      micromotion demo -o demo-out
      micromotion demo --photo me.jpg --no-sample --steps 100 --frames 24
      micromotion demo --world
    """
    from ..errors import MicromotionError

    if (frames is not None and frames < 2) or identities < 1 or text_steps < 1 or (steps is not None and steps < 1):
        raise click.ClickException("--frames must be ≥2, --steps, --identities and --text-steps ≥1")
    if not world:
        from ..demo_real import RealModelUnavailable, load_animator, run_real_demo

        try:
            an = load_animator(device)
        except RealModelUnavailable as e:
            if photos:
                raise click.ClickException(str(e)) from None
            click.echo(f"{e}: running the face-world demo instead (micromotion demo --world)")
        else:
            try:
                r = run_real_demo(output, photos=list(photos) or None, sample=sample, frames=frames, steps=steps,
                                  paste_back=paste_back, animator=an)
            except MicromotionError as e:
                raise click.ClickException(str(e)) from None
            for line in _real_lines(r):
                click.echo(line)
            click.echo(f"files in {output}/ ({len(r.files)}: mp4s, contact_sheet.png, measures.md), "
                       f"{r.seconds['total']} s")
            return
    run_world(output, 24 if frames is None else frames, identities, text_steps)


def run_world(output, frames, identities, text_steps):
    from ..demo import run_demo

    r = run_demo(output, frames=frames, identities=identities, text_steps=text_steps)
    click.echo("micromotion demo")
    click.echo("ran:")
    for line in r.ran:
        click.echo(f"  - {line}")
    if r.skipped:
        click.echo("not run:")
        for line in r.skipped:
            click.echo(f"  - {line}")
    click.echo("world clips (target factor: true start->end | oracle start->end):")
    for motion, row in r.numbers["world_clips"].items():
        click.echo(f"  {motion:11s} {row['true_start']:+.2f} -> {row['true_end']:+.2f} | "
                   f"{row['oracle_start']:+.2f} -> {row['oracle_end']:+.2f}")
    rp = r.numbers["robust_pca"]
    click.echo(f"robust PCA on anchors with 5% outliers, cosine to the true direction: robust PCA "
               f"{rp['cos_rpca']:.3f}, the original code's variant {rp['cos_rpca_paper_variant']:.3f}, raw endpoint "
               f"difference {rp['cos_raw_endpoints']:.3f}")
    for motion, row in r.numbers.get("transfer", {}).items():
        click.echo(f"transfer {motion:17s}: {row['target']} {row['target_change_mean']:+.3f} of its motion range at "
                   f"strength {row['strength']:g}, mean over {row['identities']} unseen identities")
    click.echo(f"files in {output}/ ({len(r.files)}), {r.numbers['seconds']} s")


COMMANDS = [demo]
