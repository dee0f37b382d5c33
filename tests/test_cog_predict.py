"""The Cog predictor, called directly, offline, with a tiny generator and a real face photo."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("cog")
pytest.importorskip("skimage")

from micromotion import Generator, GeneratorConfig, save_generator  # noqa: E402
from micromotion.decompose import Motion  # noqa: E402
from micromotion.presets import cache_path  # noqa: E402
from micromotion.render import read_video_frames  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _load_predict():
    spec = importlib.util.spec_from_file_location("predict", ROOT / "predict.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["predict"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_predictor_end_to_end(tmp_path, monkeypatch):
    from PIL import Image
    from skimage import data

    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(32)).eval()
    G.compute_w_avg(500)
    gpath = save_generator(G, tmp_path / "tiny.safetensors")
    home = tmp_path / "home"
    out = cache_path("eyes_close", G, home)
    out.parent.mkdir(parents=True)
    Motion.from_direction(torch.randn(G.num_ws, G.w_dim), name="eyes_close", generator=G).save(out)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    monkeypatch.setenv("MICROMOTION_MODEL", str(gpath))
    monkeypatch.setenv("MICROMOTION_HOME", str(home))
    monkeypatch.setenv("MICROMOTION_INVERT_STEPS", "3")
    monkeypatch.setenv("MICROMOTION_OFFLINE", "1")  # no network: a missing preset must not try to fetch CLIP
    mod = _load_predict()
    p = mod.Predictor()
    p.setup()
    result = p.predict(image=photo, micromotion="eyesClose", scale=5, template="")
    frames = read_video_frames(result, 200)
    assert result.suffix == ".mp4" and frames.shape == (100, 32, 32, 3)
    with pytest.raises(Exception, match="no 'smile' motion"):
        p.predict(image=photo, micromotion="smile", scale=5, template="")
