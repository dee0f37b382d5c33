"""Old entry point of the world recipes: `python -m micromotion.world.presets` runs `world/recipes.py`
(`micromotion world presets`). Kept because the docs and earlier issues name it."""
from .recipes import main

if __name__ == "__main__":
    main(prog="python -m micromotion.world.presets")
