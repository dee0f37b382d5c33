"""`python -m micromotion.world.train` = `micromotion world train gan` (the entry point before the move)."""
from .gan import main

main()
