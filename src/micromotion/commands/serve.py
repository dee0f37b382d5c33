"""`micromotion serve`: the web page (needs the `[web]` extra)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import InputError


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the page to your network (no authentication).")
@click.option("--port", type=int, default=7860, show_default=True)
@click.option("--model", default="auto", show_default=True, help="auto | registry name | generator file.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Requests rendered at once; the others wait in the queue.")
@click.option("--steps", type=click.IntRange(1, 5000), default=300, show_default=True,
              help="Projector steps per photo (when the model has no encoder).")
@click.option("--text-steps", type=click.IntRange(1, 1000), default=40, show_default=True,
              help="Optimization steps of text anchors (custom text motions).")
@click.option("--video-steps", type=click.IntRange(1, 5000), default=150, show_default=True,
              help="Projector steps of the first video anchor (later ones take a quarter).")
@click.option("--clip", default="auto", show_default=True,
              help="CLIP for text templates: registry name (must be cached) or file; auto: world-clip for the "
                   "world model, else clip-vit-b-32.")
@click.option("--max-upload-mb", type=click.FloatRange(0.1, 1000), default=20.0, show_default=True)
@click.option("--max-frames", type=click.IntRange(2, 2000), default=120, show_default=True,
              help="Most frames a request may ask for.")
@click.option("--max-seconds", type=click.FloatRange(1, 86400), default=600.0, show_default=True,
              help="One request's time limit; past it (or on Stop, or a closed tab) its work is stopped.")
@click.option("--also", "also", default="auto", show_default=True,
              help="Other models offered in the page's Model choice (comma-separated), loaded on first use; auto: "
                   "the others of stylegan2-ffhq-1024, mobilestylegan-ffhq-1024 and world that are here; none.")
def serve(host, port, model, device, concurrency, steps, text_steps, video_steps, clip, max_upload_mb, max_frames,
          max_seconds, also):
    """Serve a page that turns a photo into a micromotion video.

    \b
    Examples:
      micromotion serve                       # http://127.0.0.1:7860, the default model
      micromotion serve --model stylegan2-ffhq-1024 --device cuda --concurrency 2
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage pings
    from ..web.app import Limits, WebService, build_app, launch, require_gradio

    require_gradio()  # the install hint before loading any model
    if also == "auto":
        from ..profiles import AUTO_MODELS, model_available

        others = [m for m in AUTO_MODELS if model_available(m)]
    else:
        from ..profiles import model_available

        others = [m.strip() for m in also.split(",") if m.strip() and m.strip() != "none"]
        for m in others:
            if not (model_available(m) or Path(m).is_file()):
                raise InputError(f"--also {m}: not a model here (a registry name that is cached or installed, or a "
                                 f"generator file); see `micromotion weights list`")
    svc = WebService(model=model, device=device, models=others, invert_steps=steps, text_steps=text_steps,
                     video_steps=video_steps, clip=clip,
                     limits=Limits(max_upload_mb=max_upload_mb, max_frames=max_frames, max_seconds=max_seconds))
    a = svc.animator  # load once, now: a bad --model fails here, with one line
    click.echo(f"model: {a.model_name} ({a.G.resolution}x{a.G.resolution}) on {a.device}", err=True)
    demo = build_app(svc, concurrency=concurrency)
    click.echo(f"serving on http://{host}:{port} (Ctrl+C to stop)", err=True)
    launch(demo, host, port, quiet=True)


COMMANDS = [serve]
