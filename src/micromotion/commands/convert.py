"""`micromotion convert`: any supported generator checkpoint -> our safetensors format."""
from pathlib import Path

import click

from ..models.stylegan2_convert import save_generator
from ..generators import load_generator


@click.command("convert")
@click.argument("src")
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
def convert(src: str, dst: Path, overwrite: bool) -> None:
    """Convert a StyleGAN2 generator (rosinality .pt, NVIDIA .pkl, registry name) to .safetensors.

    \b
    Example:
      micromotion convert stylegan2-ffhq-config-f.pt ffhq.safetensors
    """
    if dst.suffix != ".safetensors":
        raise click.ClickException(f"{dst}: the output must end in .safetensors")
    if dst.exists() and not overwrite:
        raise click.ClickException(f"{dst}: already exists; pass --overwrite to replace it")
    if not dst.parent.is_dir():
        raise click.ClickException(f"{dst.parent}: output folder does not exist")
    G = load_generator(src)
    save_generator(G, dst, extra_metadata={"converted_from": Path(src).name})
    c = G.cfg
    click.echo(f"wrote {dst}: StyleGAN2 {c.resolution}x{c.resolution}, {G.num_ws} W+ layers, "
               f"w_dim {c.w_dim}, {sum(p.numel() for p in G.parameters()) / 1e6:.1f}M parameters, "
               f"w_avg from {G.w_avg_source}")


COMMANDS = [convert]
