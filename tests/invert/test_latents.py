"""micromotion.invert.latents: latent files (.safetensors with metadata and noise, plain .pt tensors)."""
import pytest
import torch

from micromotion.errors import InputError
from micromotion.invert import invert, load_latent, save_latent, tensor_to_image

from invert_helpers import _tiny, _w_plus_targets, one_thread  # noqa: F401  (one_thread: autouse)

def test_latent_files_round_trip(tmp_path):
    G = _tiny(32)
    _, target = _w_plus_targets(G, 1)
    crop = tmp_path / "crop.png"
    tensor_to_image(target[0]).save(crop)
    inv = invert(G, crop, align=False, steps=3, loss="pixel", optimize_noise=True, progress=False)
    st = save_latent(inv, tmp_path / "latent.safetensors", metadata={"model": "tiny"})
    ws, meta = load_latent(st)
    torch.testing.assert_close(ws, inv.ws)
    assert meta["format"] == "micromotion-latent" and meta["method"] == "projector" and meta["model"] == "tiny"
    assert len(meta["noise"]) == len(G.synthesis_net.layers)
    pt = save_latent(inv, tmp_path / "latent.pt")
    plain = torch.load(pt, weights_only=True)  # the original repository's format: a bare tensor
    assert isinstance(plain, torch.Tensor) and plain.shape == (1, G.num_ws, G.w_dim)
    torch.testing.assert_close(load_latent(pt)[0], inv.ws)
    with pytest.raises(InputError, match=r"unknown latent file extension '\.npy'"):
        save_latent(inv, tmp_path / "latent.npy")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"junk\.pt: not a readable torch tensor file"):
        load_latent(tmp_path / "junk.pt")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
