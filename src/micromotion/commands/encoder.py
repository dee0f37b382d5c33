"""`micromotion encoder`: train the encoder of a photo model (`invert/encoder_train.py`)."""
from __future__ import annotations

import click


@click.group("encoder")
def encoder() -> None:
    """Encoders that put photos into a model's W+ in one pass."""


@encoder.command("train", add_help_option=False,
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
                 help="Train (or continue) a ReStyle encoder for a photo model on its own corrupted samples "
                      "(--help for its options).\n\n\b\nexample: micromotion encoder train --model "
                      "mobilestylegan-ffhq-1024 --out runs/fenc --minutes 9 --resume --device cuda")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args) -> None:
    from ..invert.encoder_train import main  # imported only when asked for

    main(list(args), prog="micromotion encoder train")


COMMANDS = [encoder]
