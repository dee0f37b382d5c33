"""micromotion.decompose.formats: the authors' published directions and anchor files, `load_motion`."""
from __future__ import annotations

import pytest
import torch

from micromotion.decompose import Motion, generator_fingerprint, load_anchors, load_motion, read_paper_direction
from micromotion.errors import InputError

from motion_helpers import (_one_thread, paper_directions, synthetic_anchors, tiny_generator,  # noqa: F401
                            torch_file_on_cuda)


def test_authors_direction_saved_on_cuda_loads_on_cpu(tmp_path):
    d = torch.randn(1, 18, 512, generator=torch.Generator().manual_seed(27)).requires_grad_()
    path = torch_file_on_cuda(d, tmp_path / "d_latent")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does on this machine
            torch.load(path, weights_only=True)
    torch.testing.assert_close(read_paper_direction(path), d.detach()[0])
    motion = load_motion(path)
    assert motion.meta.name == tmp_path.name  # pregen_latents/<name>/d_latent
    assert motion.meta.source["kind"] == "paper" and len(motion.meta.source["sha256"]) == 64
    torch.testing.assert_close(motion.direction, d.detach()[0])
    torch.testing.assert_close(motion.path([0.5])[0], 0.5 * d.detach()[0], atol=1e-6, rtol=0)
    assert motion.ranks == [1] * 18 and not motion.direction.requires_grad
    torch.save({"g_ema": {}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="holds a dict, not a direction tensor"):
        load_motion(tmp_path / "other.pt")
    torch.save(torch.zeros(2, 18, 512), tmp_path / "batch.pt")
    with pytest.raises(InputError, match=r"shape \[2, 18, 512\]"):
        load_motion(tmp_path / "batch.pt")


def test_authors_direction_is_checked_against_generator(tmp_path):
    path = torch_file_on_cuda(torch.randn(1, 18, 512), tmp_path / "smile.pt")
    with pytest.raises(InputError, match="smile.pt: .*latents 18x512 but generator 'stylegan2-32px' uses 8x16"):
        load_motion(path, generator=tiny_generator(0))
    G = tiny_generator(0)
    stamped = load_motion(torch_file_on_cuda(torch.randn(1, 8, 16), tmp_path / "tiny.pt"), generator=G)
    assert stamped.meta.generator_hash == generator_fingerprint(G)


@pytest.mark.parametrize("name, norm", [("smile", 2.0), ("angry", 2.4), ("aging", 1.8), ("eyesClose", 1.06), ("headsTurn", 88.3)])
def test_published_directions(name, norm, tmp_path, paper_directions):
    motion = load_motion(paper_directions / f"{name}.pt")
    assert motion.direction.shape == (18, 512) and motion.device.type == "cpu"
    assert motion.direction.norm().item() == pytest.approx(norm, rel=0.02)
    assert motion.meta.name == name and motion.meta.source["kind"] == "paper"
    back = Motion.load(motion.save(tmp_path / f"{name}.safetensors"))
    assert torch.equal(back.direction, motion.direction)


def test_load_anchors_from_original_list_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    anchors, _ = synthetic_anchors(K=4, num_ws=3, w_dim=16, seed=28)
    torch.save([a for a in anchors], tmp_path / "smile_s1_pre_pca")
    torch.testing.assert_close(load_anchors(tmp_path / "smile_s1_pre_pca"), anchors)
    save_file({"anchors": anchors}, str(tmp_path / "a.safetensors"))
    torch.testing.assert_close(load_anchors(tmp_path / "a.safetensors"), anchors)
    save_file({"x": anchors, "y": anchors.clone()}, str(tmp_path / "two.safetensors"))
    with pytest.raises(InputError, match="name the anchor stack 'anchors'"):
        load_anchors(tmp_path / "two.safetensors")
    torch.save([anchors[0], anchors[1, :2]], tmp_path / "ragged.pt")
    with pytest.raises(InputError, match="ragged.pt: anchor 1 has shape"):
        load_anchors(tmp_path / "ragged.pt")
