"""`micromotion weights`: list, download, import, locate and remove pretrained models (see micromotion.weights)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import weights as W

cache_dir_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Cache folder (files go in its weights/ subfolder). Default: $MICROMOTION_HOME, else ~/.cache/micromotion.")


def _human(n: int | None, exact: bool) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            text = f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
            return text if exact else "~" + text
        n /= 1000
    raise AssertionError  # pragma: no cover


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.group("weights")
def weights() -> None:
    """Find, download, verify and import the pretrained models micromotion uses.

    \b
    Examples:
      micromotion weights list
      micromotion weights download stylegan2-ffhq-1024
      micromotion weights import e4e-ffhq ~/Downloads/e4e_ffhq_encode.pt
      micromotion weights download mobilestylegan-ffhq-1024   # pip fetches the random-face wheel (--no-deps)
      micromotion weights path clip-vit-b-32

    Set MICROMOTION_OFFLINE=1 to forbid any network access.
    """


@weights.command("list")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per model instead of a table.")
def list_cmd(cache_dir: Path | None, as_json: bool) -> None:
    """Show every model: purpose, size, license, how it is verified, whether it is cached, and where.

    \b
    CHECK is "sha256" (published checksum), "TOFU" (checksum recorded when the file was first
    downloaded or imported, verified since) or "TOFU (not yet recorded)".
    Example: micromotion weights list --cache-dir /data/micromotion
    """
    statuses = W.list_weights(cache_dir)
    if as_json:
        for st in statuses:
            click.echo(json.dumps(st.as_dict(), sort_keys=True))
        return
    rows = [["NAME", "PURPOSE", "SIZE", "LICENSE", "CHECK", "CACHED", "PATH"]]
    for st in statuses:
        s = st.spec
        if s.kind == "bundled":
            cached = "bundled" if st.cached else "missing"
        elif st.cached:
            cached = "yes" if st.verified else "yes (verify on use)"
        elif s.package is not None and W.available(s.name, cache_dir):
            cached = f"{s.package.distribution} here (converted on first use)"
        elif st.partial_bytes:
            cached = f"partial {_human(st.partial_bytes, True)}"
        else:
            cached = "manual" if s.manual else "no"
        rows.append([s.name, s.purpose, _human(s.size, s.size_exact), s.license, st.check, cached, str(st.path)])
    click.echo(_table(rows))
    for st in statuses:
        if st.spec.package is not None:
            click.echo(f"\n{st.spec.name}: license: {st.spec.license}. {st.spec.note}")
    todo = [st.spec for st in statuses if st.spec.manual and not st.cached]
    if todo:
        click.echo("\nManual downloads (Google Drive): save the file, then run the import command:")
        for s in todo:
            click.echo(f"  {s.name}: {s.manual_url}\n    micromotion weights import {s.name} {s.filename}")


@weights.command("download")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@cache_dir_option
@click.option("--force", is_flag=True, help="Download again even if a verified copy is cached.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download_cmd(names: tuple[str, ...], cache_dir: Path | None, force: bool, quiet: bool) -> None:
    """Download, verify (sha256) and cache models; resumes an interrupted download.

    \b
    Example: micromotion weights download stylegan2-ffhq-1024 lpips-vgg
    Prints the cached path of each model.
    """
    for name in names:
        W.get_spec(name)  # fail on a typo before downloading anything
    for name in names:
        path = W.download(name, cache_dir, force=force, progress=not quiet)
        click.echo(str(path))


@weights.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path), metavar="FILE")
@cache_dir_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def import_cmd(name: str, file: Path, cache_dir: Path | None, quiet: bool) -> None:
    """Verify FILE as model NAME and copy it into the cache.

    \b
    The file must match the published or recorded sha256; where none is known it must load as the
    expected architecture, and its sha256 is recorded (trust on first use). For a model shipped inside a
    package (mobilestylegan-ffhq-1024), FILE is the package's wheel or a folder of its files: each is
    checked by sha256, then converted once.
    Examples:
      micromotion weights import e4e-ffhq ~/Downloads/e4e_ffhq_encode.pt
      micromotion weights import mobilestylegan-ffhq-1024 random_face-2021.7.21.1-py3-none-any.whl
    """
    spec = W.get_spec(name)
    first_use = spec.tofu and spec.package is None and W.expected_sha256(name, cache_dir) is None
    path = W.import_file(name, file, cache_dir, progress=not quiet)
    how = ("structure checked, sha256 recorded (trust on first use)" if first_use else
           f"{spec.package.distribution} files sha256-verified, converted" if spec.package else "sha256 verified")
    click.echo(f"imported {name}: {path} ({how})")


@weights.command("path")
@click.argument("name")
@cache_dir_option
@click.option("--expected", is_flag=True, help="Print where the file goes even if it is not cached yet.")
def path_cmd(name: str, cache_dir: Path | None, expected: bool) -> None:
    """Print the verified cached path of model NAME (exit 1 if it is not cached). Never downloads.

    \b
    Example: G=$(micromotion weights path stylegan2-ffhq-1024)
    """
    if expected:
        click.echo(str(W.cache_path(name, cache_dir)))
        return
    click.echo(str(W.resolve(name, cache_dir, download=False)))


@weights.command("remove")
@click.argument("name")
@cache_dir_option
@click.option("--forget", is_flag=True, help="Also forget the sha256 recorded on first use.")
def remove_cmd(name: str, cache_dir: Path | None, forget: bool) -> None:
    """Delete the cached file of model NAME (and any partial download).

    \b
    Example: micromotion weights remove stylegan2-ffhq-1024 --forget
    """
    removed = W.remove(name, cache_dir, forget=forget)
    click.echo(f"removed {W.cache_path(name, cache_dir)}" if removed else f"{name} was not cached")


COMMANDS = [weights]
