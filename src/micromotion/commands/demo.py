"""`micromotion demo`: what `make demo` runs."""
import click


@click.command("demo")
@click.option("-o", "--output", default="demo-out", show_default=True, help="Folder for videos and the report.")
@click.option("--frames", type=int, default=24, show_default=True)
@click.option("--identities", type=int, default=4, show_default=True)
@click.option("--text-steps", type=int, default=40, show_default=True,
              help="Steps of the text route. The smile preset uses 100; the demo takes 40 to fit two minutes on a CPU, "
                   "from a start face chosen for 40 (DEMO_TEXT_SEED); that moves unseen faces about as far as "
                   "the preset, with more drift (numbers: docs/results.md, \"Start faces\").")
def demo(output, frames, identities, text_steps):
    """Run the method offline on the face world and print what was measured.

    \b
    Example:
      micromotion demo -o demo-out
    """
    from ..demo import run_demo

    if frames < 2 or identities < 1 or text_steps < 1:
        raise click.ClickException("--frames must be ≥2, --identities ≥1 and --text-steps ≥1")
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
