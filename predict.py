"""Cog predictor with the hosted micromotion model's inputs and output.

Inputs: `image`; `micromotion` ∈ {smile, angry, aging, eyesClose, headsTurn} (default eyesClose); `scale` 1–10
(default 5, mapped to strength scale/5, so 5 is each preset's full motion); optional `template`, a text template
with {degree} that defines a custom motion. Output: a 100-frame mp4.
Environment: MICROMOTION_MODEL (default auto: FFHQ when cached, else the embedded world model),
MICROMOTION_INVERT_STEPS (projector steps when the model has no encoder).
"""
import os
import tempfile

from cog import BasePredictor, Input, Path

PAPER_MOTIONS = ["smile", "angry", "aging", "eyesClose", "headsTurn"]


class Predictor(BasePredictor):
    def setup(self) -> None:
        from micromotion.animate import Animator

        self.animator = Animator(model=os.environ.get("MICROMOTION_MODEL", "auto"),
                                 invert_steps=int(os.environ.get("MICROMOTION_INVERT_STEPS", "300")))

    def predict(
        self,
        image: Path = Input(description="A photo (or painting, statue) with a face"),
        micromotion: str = Input(description="Micromotion", choices=PAPER_MOTIONS, default="eyesClose"),
        scale: int = Input(description="Strength of the motion", ge=1, le=10, default=5),
        template: str = Input(description="Optional text template with {degree}, e.g. 'a person with {degree} "
                                          "smile'; overrides micromotion", default=""),
    ) -> Path:
        motion = micromotion
        if template.strip():
            from micromotion.animate import text_motion

            motion = text_motion(self.animator.G, template.strip())
        out = Path(tempfile.mkdtemp()) / "micromotion.mp4"
        self.animator.animate(str(image), motion, out, strength=scale / 5, frames=100, fps=25)
        return out
