"""`micromotion serve`: a Gradio page over `Animator` (photo -> micromotion video). Needs the `[web]` extra."""
from .app import Limits, WebService, build_app, launch

__all__ = ["Limits", "WebService", "build_app", "launch"]
