"""`python -m micromotion` = the `micromotion` command."""
from .cli import main

main(prog_name="micromotion")
