"""Old entry point: `python -m micromotion.world.clip_train` = `micromotion world train clip`
(`world/train/clip.py`). Kept because the docs and the weights registry name it."""
from .train.clip import main

if __name__ == "__main__":
    main()
