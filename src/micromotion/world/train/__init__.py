"""The world's trainers, outside the runtime path: only the CLI (`micromotion world train gan|clip|encoder`)
and the `python -m` entry points import them.

- `gan`: the world StyleGAN2 on renders made on the fly.
- `clip`: the world CLIP on rendered faces and their captions.
- `encoder`: the world ReStyle encoder into the world generator's W+.

`python -m micromotion.world.train ...` runs `gan` (its entry point before the move); the old module names
`micromotion.world.train.Trainer`, ... resolve to `gan`'s.
"""
from __future__ import annotations

import importlib


def __getattr__(name: str):  # the names of the old `micromotion.world.train` module, loaded on first use
    if name.startswith("__"):
        raise AttributeError(name)
    gan = importlib.import_module(f"{__name__}.gan")
    try:
        return getattr(gan, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
