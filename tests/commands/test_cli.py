"""The `micromotion` group as users meet it: every command has a working --help, errors are one line."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from micromotion.cli import main


def _commands(group: click.Group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


COMMANDS = list(_commands(main))


def test_the_group_lists_every_stage():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in ("align", "animate", "convert", "demo", "evaluate", "extract", "invert", "motion", "presets", "serve",
                 "weights", "world"):
        assert name in main.commands, name
        assert name in r.output
    assert {("world", "train", "gan"), ("world", "train", "clip"), ("world", "train", "encoder"),
            ("world", "presets")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_of_each_command(path):
    r = CliRunner().invoke(main, [*path, "--help"], prog_name="micromotion")
    assert r.exit_code == 0, r.output
    assert "usage:" in r.output.lower()
    assert f"micromotion {' '.join(path)}" in r.output  # the program name users type


def test_version_and_verbosity():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "version" in r.output
    r = CliRunner().invoke(main, ["-vv", "world", "--help"])
    assert r.exit_code == 0


def test_library_errors_are_one_line():
    r = CliRunner().invoke(main, ["evaluate", "smirk"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [r.output.strip()] and "unknown motion 'smirk'" in r.output


def test_python_dash_m_runs_the_group():
    r = subprocess.run([sys.executable, "-m", "micromotion", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Usage: micromotion" in r.stdout


@pytest.mark.parametrize("module, prog", [("micromotion.world.train", "python -m micromotion.world.train"),
                                          ("micromotion.world.clip_train", "python -m micromotion.world.clip_train"),
                                          ("micromotion.world.encoder_train",
                                           "python -m micromotion.world.encoder_train"),
                                          ("micromotion.world.presets", "python -m micromotion.world.presets")])
def test_the_old_entry_points_still_run(module, prog):
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {prog}")
