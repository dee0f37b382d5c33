"""The `micromotion` command: a click group; each stage is a subcommand in `micromotion/commands/`.

Subcommand modules expose `COMMANDS` (a list of click commands or groups); they are thin shells over the
public API. Library errors (`MicromotionError`) become one line on stderr and exit code 1.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from .errors import MicromotionError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MicromotionError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="micromotion")
def main(verbose: int) -> None:
    """micromotion: decode a micromotion from anchors and apply it to any face."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            main.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
