"""micromotion.decompose.motion: motion extraction, composition, generator checks and motion files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from micromotion.decompose import FORMAT_NAME, Motion, MotionMeta, generator_fingerprint, load_motion, robust_pca
from micromotion.errors import InputError

from motion_helpers import (_one_thread, cosine, original_lowrank_anchors, synthetic_anchors,  # noqa: F401
                            tiny_generator)


# ----------------------------------------------------------------------------------------------------------
# Motion extraction


def test_rpca_direction_beats_raw_endpoint_difference():
    anchors, true = synthetic_anchors(num_ws=4)
    motion = Motion.from_anchors(anchors)
    rpca_cos = cosine(motion.direction, true)
    raw_cos = cosine(anchors[-1] - anchors[0], true)
    assert rpca_cos > 0.93, rpca_cos
    assert raw_cos < 0.3, raw_cos
    assert rpca_cos - raw_cos > 0.6
    # per layer as well, not only on average
    for layer in range(4):
        assert cosine(motion.direction[layer], true[layer]) > 0.9


def test_paper_variant_motion_equals_transcription_of_original():
    anchors, _ = synthetic_anchors(num_ws=3, w_dim=64, noise=0.3, dtype=torch.float64, seed=8)
    # noise of full rank: the rank-4 projection then depends on the random test matrix, so seeding matters
    low = original_lowrank_anchors(anchors, seed=11)
    rng_before = torch.get_rng_state()
    motion = Motion.from_anchors(anchors, variant="paper", rank=4, seed=11)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global generator is left alone
    torch.testing.assert_close(motion.direction, (low[-1] - low[0]).float(), rtol=0, atol=1e-5)
    torch.testing.assert_close(motion.anchor_offsets(), (low - low[0]).float(), rtol=0, atol=1e-5)
    assert motion.meta.rpca["variant"] == "paper" and motion.meta.rpca["seed"] == 11
    again = Motion.from_anchors(anchors, variant="paper", rank=4, seed=11)
    assert torch.equal(again.direction, motion.direction)
    other_seed = Motion.from_anchors(anchors, variant="paper", rank=4, seed=12)
    assert not torch.allclose(other_seed.direction, motion.direction, atol=1e-4)


def test_span_anchors_restores_what_the_sparse_part_took():
    """Anchors moving along d, whose far anchors carry large sparse errors along d itself (robust PCA takes
    part of the motion with them): span 'anchors' keeps the robust direction, at the anchors' own extent."""
    g = torch.Generator().manual_seed(3)
    K, L, D = 11, 4, 64
    d = torch.randn(L, D, generator=g)
    t = torch.linspace(0, 1, K)
    A = torch.randn(L, D, generator=g) + t[:, None, None] * d + 0.01 * torch.randn(K, L, D, generator=g)
    big = d.abs() > d.abs().flatten().quantile(0.9)  # the motion's largest coordinates ...
    A[-2:] += 0.8 * d * big  # ... overshoot at the far anchors: sparse, and along the motion
    low = Motion.from_anchors(A, rank=1, span="lowrank")
    full = Motion.from_anchors(A)
    assert full.meta.span == "anchors" and full.meta.span_scale > 1.02
    cos = torch.nn.functional.cosine_similarity(full.direction.flatten(), low.direction.flatten(), dim=0)
    assert float(cos) > 0.999  # the same direction ...
    u = full.direction / full.direction.norm()  # ... spanning the anchors, last minus first, along it
    assert float(full.direction.norm()) == pytest.approx(float(((A[-1] - A[0]) * u).sum()), rel=1e-4)
    assert float(low.direction.norm()) < float(full.direction.norm())
    # the anchor path is scaled alike: it still ends at the direction
    torch.testing.assert_close(full.path([1.0])[0], full.direction, atol=1e-5, rtol=0)
    same_rank = Motion.from_anchors(A, span="lowrank")
    torch.testing.assert_close(full.anchor_offsets(), same_rank.anchor_offsets() * full.meta.span_scale, atol=1e-5,
                               rtol=0)
    assert Motion.from_anchors(A, variant="paper", rank=4).meta.span == "lowrank"  # the original's scale
    with pytest.raises(InputError, match="unknown span"):
        Motion.from_anchors(A, span="far")
    # a last anchor behind the first along the direction: the low-rank span is kept
    from micromotion.decompose import _anchor_span

    back = torch.tensor([0.0, 5.0, -1.0])[:, None, None] * d
    kept, scale, kind = _anchor_span(back, d, "back")
    assert kind == "lowrank" and scale is None and torch.equal(kept, d)
    kept, scale, kind = _anchor_span(-back, d, "ahead")
    assert kind == "anchors" and scale == pytest.approx(1.0)
    assert torch.allclose(kept, d)


def test_span_warns_when_the_end_anchors_look_glitched(caplog):
    g = torch.Generator().manual_seed(4)
    d = torch.randn(3, 32, generator=g)
    A = torch.linspace(0, 1, 8)[:, None, None] * d + 0.01 * torch.randn(8, 3, 32, generator=g)
    with caplog.at_level("WARNING", logger="micromotion.decompose"):
        Motion.from_anchors(A, rank=1)
    assert "check those anchors" not in caplog.text
    A[-1] += 3 * d  # a bad last frame far along the motion
    with caplog.at_level("WARNING", logger="micromotion.decompose"):
        m = Motion.from_anchors(A, rank=1)
    assert "check those anchors" in caplog.text and m.meta.span_scale > 1.7


def test_path_follows_low_rank_anchors():
    anchors, _ = synthetic_anchors(K=5, num_ws=3, w_dim=32, seed=9)
    motion = Motion.from_anchors(anchors, rank=2, span="lowrank")
    assert motion.meta.span == "lowrank" and motion.meta.span_scale is None
    offsets = motion.anchor_offsets()
    assert offsets.shape == (5, 3, 32)
    assert offsets[0].abs().max() < 1e-6
    torch.testing.assert_close(motion.path(motion.times), offsets, atol=1e-5, rtol=0)
    torch.testing.assert_close(motion.path([1.0])[0], motion.direction, atol=1e-5, rtol=0)
    torch.testing.assert_close(motion.path(0.125)[0], (offsets[0] + offsets[1]) / 2, atol=1e-5, rtol=0)
    assert motion.path([0, 0.3, 1]).shape == (3, 3, 32)
    torch.testing.assert_close(motion.offsets([0, 0.5, 2]), torch.stack([0 * motion.direction, 0.5 * motion.direction,
                                                                          2 * motion.direction]))
    with pytest.raises(InputError, match=r"path positions must lie in \[0, 1\]"):
        motion.path([1.5])


def test_basis_is_orthonormal_and_ranks_follow_settings():
    anchors, _ = synthetic_anchors(num_ws=3, w_dim=64, noise=0.05, seed=10)
    for rank in (1, 2, 4):
        m = Motion.from_anchors(anchors, rank=rank)
        assert m.ranks == [rank] * 3
        for layer in range(3):
            B = m.basis[layer]
            torch.testing.assert_close(B @ B.T, torch.eye(rank), atol=1e-5, rtol=0)
        # the offsets are exactly representable in the basis
        torch.testing.assert_close(torch.einsum("kld,lrd->klr", m.anchor_offsets(), m.basis), m.coords, atol=1e-4, rtol=0)


def test_energy_picks_rank_per_layer():
    g = torch.Generator().manual_seed(11)
    t = torch.linspace(0, 1, 10)[:, None]
    u, v, w = (torch.nn.functional.normalize(torch.randn(3, 40, generator=g), dim=-1))
    layer0 = 5 * t * u  # a one-dimensional motion
    layer1 = 5 * t * v + 2 * torch.sin(3 * t) * w  # two-dimensional
    anchors = torch.stack([layer0, layer1], dim=1) + torch.randn(2, 40, generator=g)
    m = Motion.from_anchors(anchors, rank=None, energy=0.999)
    assert m.ranks == [1, 2]
    assert Motion.from_anchors(anchors, rank=1, energy=0.999).ranks == [1, 1]
    assert m.meta.energy == 0.999 and m.meta.rank is None


def test_principal_direction_follows_anchor_order():
    anchors, true = synthetic_anchors(num_ws=3, w_dim=64, noise=0.0, outliers=0.0, seed=12)
    principal = Motion.from_anchors(anchors, direction="principal")
    endpoints = Motion.from_anchors(anchors)
    torch.testing.assert_close(principal.direction, endpoints.direction, atol=1e-4, rtol=0)
    assert cosine(principal.direction, true) > 0.99
    reversed_ = Motion.from_anchors(anchors.flip(0), direction="principal")
    torch.testing.assert_close(reversed_.direction, -principal.direction, atol=1e-4, rtol=0)
    assert principal.meta.direction_kind == "principal"


def test_times_are_normalized_and_used():
    anchors, _ = synthetic_anchors(K=4, num_ws=2, w_dim=16, seed=13)
    m = Motion.from_anchors(anchors, times=[10, 20, 40, 50], rank=3)
    torch.testing.assert_close(m.times, torch.tensor([0.0, 0.25, 0.75, 1.0]))
    torch.testing.assert_close(m.path(0.25)[0], m.anchor_offsets()[1], atol=1e-5, rtol=0)


def test_accepts_an_anchors_stack():
    from types import SimpleNamespace

    anchors, _ = synthetic_anchors(K=4, num_ws=2, w_dim=16, seed=17)
    video = SimpleNamespace(latents=anchors, labels=[0.0, 0.5, 1.5, 2.0], source={"kind": "video", "file": "a.mp4"})
    m = Motion.from_anchors(video)
    torch.testing.assert_close(m.times, torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert m.meta.source == {"kind": "video", "file": "a.mp4", "labels": [0.0, 0.5, 1.5, 2.0]}
    text = SimpleNamespace(latents=anchors, labels=["start", "no", "50%", "100%"], source={"kind": "text"})
    torch.testing.assert_close(Motion.from_anchors(text).times, torch.linspace(0, 1, 4))


def test_accepts_list_of_latents_and_float16():
    anchors, _ = synthetic_anchors(K=4, num_ws=2, w_dim=16, seed=14)
    from_list = Motion.from_anchors([a.unsqueeze(0) for a in anchors])  # [1, num_ws, w_dim] each, as saved
    torch.testing.assert_close(from_list.direction, Motion.from_anchors(anchors).direction)
    assert torch.isfinite(Motion.from_anchors(anchors.half()).direction).all()


@pytest.mark.parametrize("change, message", [
    (lambda a: a.index_put_((torch.tensor(2), torch.tensor(1), torch.tensor(3)), torch.tensor(float("nan"))),
     "NaN or inf \\(first in anchor 2, layer 1\\)"),
    (lambda a: a.index_put_((torch.tensor(0), torch.tensor(0), torch.tensor(0)), torch.tensor(float("inf"))),
     "NaN or inf \\(first in anchor 0, layer 0\\)"),
    (lambda a: a[:1], "need at least 2 anchors to decode a motion, got 1"),
    (lambda a: a[0], "anchors must have shape \\[K, num_ws, w_dim\\], got \\[3, 16\\]"),
    (lambda a: [a[0], a[1, :2]], "anchor 1 has shape \\[2, 16\\] but anchor 0 has \\[3, 16\\]"),
    (lambda a: a.long(), "floating-point"),
    (lambda a: a.numpy(), "must be a tensor"),
])
def test_from_anchors_rejects_bad_anchors(change, message):
    anchors, _ = synthetic_anchors(K=4, num_ws=3, w_dim=16, seed=15)
    with pytest.raises(InputError, match=message):
        Motion.from_anchors(change(anchors.clone()))


@pytest.mark.parametrize("kwargs, message", [
    (dict(times=[0, 1, 2]), "times has 3 values but there are 4 anchors"),
    (dict(times=[0, 2, 1, 3]), "strictly increasing"),
    (dict(direction="diagonal"), "unknown direction 'diagonal'; choose one of: endpoints, principal"),
    (dict(variant="exact"), "unknown robust PCA variant 'exact'"),
    (dict(rank=0), "rank must be a positive integer"),
    (dict(rank=None), "give a rank, an energy, or both"),
    (dict(energy=1.5), "energy must be in \\(0, 1\\]"),
    (dict(variant="paper", energy=0.9), "variant 'paper' keeps a fixed rank"),
    (dict(generator=tiny_generator(0)), "anchors \\[4, 3, 16\\] has latents 3x16 but generator 'stylegan2-32px' uses 8x16"),
])
def test_from_anchors_rejects_bad_settings(kwargs, message):
    anchors, _ = synthetic_anchors(K=4, num_ws=3, w_dim=16, seed=16)
    with pytest.raises(InputError, match=message):
        Motion.from_anchors(anchors, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Composition


def two_motions():
    a = Motion.from_anchors(synthetic_anchors(K=5, num_ws=3, w_dim=32, seed=20)[0], rank=2, name="smile")
    b = Motion.from_anchors(synthetic_anchors(K=3, num_ws=3, w_dim=32, seed=21)[0], rank=2, name="turn")
    return a, b


def test_scale_and_negate():
    a, _ = two_motions()
    s = a.scaled(2.5)
    torch.testing.assert_close(s.direction, 2.5 * a.direction)
    torch.testing.assert_close(s.path([0.3, 1]), 2.5 * a.path([0.3, 1]))
    torch.testing.assert_close((-a).direction, -a.direction)
    torch.testing.assert_close((2 * a).direction, (a * 2).direction)
    assert s.meta.source["op"] == "scale" and s.meta.source["factor"] == 2.5 and s.meta.name == "2.5*smile"


def test_add_sums_directions_and_paths():
    a, b = two_motions()
    c = a + b
    torch.testing.assert_close(c.direction, a.direction + b.direction)
    t = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.6, 1.0])
    torch.testing.assert_close(c.path(t), a.path(t) + b.path(t), atol=1e-5, rtol=0)
    torch.testing.assert_close(c.times, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert max(c.ranks) <= 4
    torch.testing.assert_close((a - b).direction, a.direction - b.direction)
    assert [p["name"] for p in c.meta.source["parts"]] == ["smile", "turn"]


def test_orthogonalize_removes_other_directions_per_layer():
    a, b = two_motions()
    c = a.orthogonalized(b)
    for layer in range(3):
        assert abs(float(c.direction[layer] @ b.direction[layer])) < 1e-5 * float(b.direction[layer].norm())
        assert (c.anchor_offsets()[:, layer] @ b.direction[layer]).abs().max() < 1e-4
    # what is left is a's direction minus its projection, layer by layer
    bd = torch.nn.functional.normalize(b.direction, dim=-1)
    expected = a.direction - (a.direction * bd).sum(-1, keepdim=True) * bd
    torch.testing.assert_close(c.direction, expected, atol=1e-5, rtol=0)
    # against itself, nothing is left
    assert a.orthogonalized(a).direction.abs().max() < 1e-5
    with pytest.raises(InputError, match="needs at least one motion"):
        a.orthogonalized()


def test_combining_motions_of_different_generators_is_refused():
    G1, G2 = tiny_generator(0, "tiny-a"), tiny_generator(1, "tiny-b")
    anchors, _ = synthetic_anchors(K=4, num_ws=8, w_dim=16, seed=22)
    a = Motion.from_anchors(anchors, generator=G1, name="a")
    b = Motion.from_anchors(anchors, generator=G2, name="b")
    with pytest.raises(InputError, match="'a' is for generator 'tiny-a' .* but 'b' is for 'tiny-b'"):
        a + b
    small = Motion.from_anchors(synthetic_anchors(K=4, num_ws=2, w_dim=16)[0], name="small")
    with pytest.raises(InputError, match="has latents 2x16 but 'a' has 8x16"):
        a.orthogonalized(small)


def test_apply_adds_offsets_and_checks_generator():
    G = tiny_generator(0)
    anchors, _ = synthetic_anchors(K=4, num_ws=8, w_dim=16, seed=23)
    m = Motion.from_anchors(anchors, generator=G)
    ws = torch.randn(2, 8, 16)
    out = m.apply(ws, [0, 1, 3], generator=G)
    assert out.shape == (3, 2, 8, 16)
    torch.testing.assert_close(out[2, 1], ws[1] + 3 * m.direction)
    assert m.apply(ws[0], [1.0]).shape == (1, 8, 16)
    with pytest.raises(InputError, match="ws must have shape"):
        m.apply(torch.randn(2, 7, 16), [1.0])
    with pytest.raises(InputError, match="was made for generator 'stylegan2-32px'"):
        m.apply(ws, [1.0], generator=tiny_generator(5))


# ----------------------------------------------------------------------------------------------------------
# Generators and motion files


def test_generator_fingerprint_identifies_weights():
    G1, G1_again, G2 = tiny_generator(0), tiny_generator(0), tiny_generator(1)
    fp = generator_fingerprint(G1)
    assert fp.startswith("sha256:") and len(fp) == 7 + 64
    assert generator_fingerprint(G1_again) == fp
    assert generator_fingerprint(G2) != fp
    with torch.no_grad():
        G1_again.mapping_net.fc0.bias[0] += 1e-3
    assert generator_fingerprint(G1_again) != fp


def test_save_load_roundtrip(tmp_path):
    G = tiny_generator(0, "tiny-a")
    anchors, _ = synthetic_anchors(K=6, num_ws=8, w_dim=16, seed=24)
    m = Motion.from_anchors(anchors, generator=G, name="smile", rank=3, times=[0, 1, 2, 3, 4, 6],
                            source={"kind": "text", "template": "a {} smiling face", "degrees": ["no", "50%"], "seed": 1})
    path = m.save(tmp_path / "smile.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smile.safetensors"]  # no temp file left
    back = Motion.load(path, generator=G)
    for key in ("direction", "basis", "coords", "times"):
        assert torch.equal(getattr(back, key), getattr(m, key)), key
    assert back.meta == m.meta
    assert back.meta.generator_name == "tiny-a" and back.meta.generator_hash == generator_fingerprint(G)
    assert back.meta.source["template"] == "a {} smiling face"
    assert back.meta.rpca["variant"] == "ialm" and back.meta.rpca["converged"] is True
    assert back.meta.library_version and back.meta.format_version == 1
    assert load_motion(path).meta.name == "smile"


def test_load_refuses_motion_of_another_generator(tmp_path):
    G1, G2 = tiny_generator(0, "ffhq-tiny"), tiny_generator(1, "cats-tiny")
    anchors, _ = synthetic_anchors(K=4, num_ws=8, w_dim=16, seed=25)
    path = Motion.from_anchors(anchors, generator=G1, name="smile").save(tmp_path / "smile.safetensors")
    with pytest.raises(InputError) as e:
        Motion.load(path, generator=G2)
    msg = str(e.value)
    assert "ffhq-tiny" in msg and "cats-tiny" in msg and str(path) in msg and "\n" not in msg
    assert generator_fingerprint(G1)[7:19] in msg and generator_fingerprint(G2)[7:19] in msg


def _motion_file(tmp_path) -> Path:
    anchors, _ = synthetic_anchors(K=4, num_ws=2, w_dim=16, seed=26)
    return Motion.from_anchors(anchors, name="m").save(tmp_path / "m.safetensors")


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    good = _motion_file(tmp_path)
    data = good.read_bytes()
    cases = {
        "truncated.safetensors": (data[: len(data) // 2], "not a readable motion file"),
        "garbage.safetensors": (b"\x00\x01garbage" * 10, "not a readable motion file"),
        "empty.safetensors": (b"", "not a readable motion file"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=message):
            Motion.load(tmp_path / name)
    tensors = {k: v for k, v in load_motion(good).__dict__.items() if isinstance(v, torch.Tensor)}
    save_file(tensors, str(tmp_path / "noformat.safetensors"))
    with pytest.raises(InputError, match="not a micromotion motion"):
        Motion.load(tmp_path / "noformat.safetensors")
    meta = json.dumps(MotionMeta().to_dict())
    save_file(tensors, str(tmp_path / "newer.safetensors"), metadata={"format": FORMAT_NAME, "format_version": "99", "meta": meta})
    with pytest.raises(InputError, match="format version 99 is newer"):
        Motion.load(tmp_path / "newer.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "coords"}, str(tmp_path / "nocoords.safetensors"),
              metadata={"format": FORMAT_NAME, "format_version": "1", "meta": meta})
    with pytest.raises(InputError, match="lacks tensor 'coords'"):
        Motion.load(tmp_path / "nocoords.safetensors")
    save_file({**tensors, "times": torch.tensor([0.0, 0.7, 0.5, 1.0])}, str(tmp_path / "badtimes.safetensors"),
              metadata={"format": FORMAT_NAME, "format_version": "1", "meta": meta})
    with pytest.raises(InputError, match="badtimes.safetensors: bad motion file .*times must increase"):
        Motion.load(tmp_path / "badtimes.safetensors")
    save_file(tensors, str(tmp_path / "badmeta.safetensors"),
              metadata={"format": FORMAT_NAME, "format_version": "1", "meta": json.dumps({"source": "text"})})
    with pytest.raises(InputError, match="badmeta.safetensors: bad motion file .*source and rpca must be JSON objects"):
        Motion.load(tmp_path / "badmeta.safetensors")
    save_file(tensors, str(tmp_path / "badjson.safetensors"),
              metadata={"format": FORMAT_NAME, "format_version": "1", "meta": "{not json"})
    with pytest.raises(InputError, match="badjson.safetensors: bad motion file"):
        Motion.load(tmp_path / "badjson.safetensors")
    torch.save(torch.zeros(1, 2, 16), tmp_path / "direction.pt")
    with pytest.raises(InputError, match="a torch file, not a motion file; .* load_motion"):
        Motion.load(tmp_path / "direction.pt")
    with pytest.raises(InputError, match="no such motion file"):
        load_motion(tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="does not exist; create it first"):
        load_motion(good).save(tmp_path / "no" / "such" / "dir.safetensors")



@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    anchors, _ = synthetic_anchors(num_ws=18, seed=40)
    D = anchors.transpose(0, 1).contiguous()
    for variant in ("ialm", "paper"):
        L_cpu, S_cpu = robust_pca(D, variant=variant)
        L_gpu, S_gpu = robust_pca(D.cuda(), variant=variant)
        assert L_gpu.device.type == "cuda"
        torch.testing.assert_close(L_gpu.cpu(), L_cpu, atol=1e-4, rtol=0)
        torch.testing.assert_close(S_gpu.cpu(), S_cpu, atol=1e-4, rtol=0)
    for variant in ("ialm", "paper"):
        cpu = Motion.from_anchors(anchors, variant=variant)
        gpu = Motion.from_anchors(anchors.cuda(), variant=variant)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.direction.cpu(), cpu.direction, atol=1e-4, rtol=0)
        torch.testing.assert_close(gpu.path([0.3, 0.7]).cpu(), cpu.path([0.3, 0.7]), atol=1e-4, rtol=0)
        ws = torch.randn(2, 18, 512, device="cuda")
        assert gpu.apply(ws, [0.0, 1.0]).device.type == "cuda"


def test_identical_anchors_give_a_zero_motion(caplog):
    anchors = torch.randn(3, 16).expand(5, 3, 16).clone()
    with caplog.at_level("WARNING", logger="micromotion.decompose"):
        m = Motion.from_anchors(anchors, name="still")
    assert m.direction.abs().max() == 0 and m.ranks == [0, 0, 0]
    assert m.path([0.5]).abs().max() == 0
    assert "motion 'still': the robust low-rank anchors do not move" in caplog.text
