"""Old entry point: `python -m micromotion.world.encoder_train` = `micromotion world train encoder`
(`world/train/encoder.py`). Kept because the docs and the weights registry name it."""
from .train.encoder import main

if __name__ == "__main__":
    main()
