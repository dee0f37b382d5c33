"""Anchors of several faces (issue 25): identity labels, files, and the motion they share."""
import json

import pytest
import torch

from micromotion.anchors import Anchors
from micromotion.decompose import Motion
from micromotion.errors import InputError


def _faces(n_ids=3, K=8, L=4, D=64, seed=0, glitch=True, own=0.0):
    """n_ids faces doing one motion: identity offsets (large) + t * shared direction + small noise, one
    identity with a glitched frame; `own`: each face's own extra motion, of that size, along its own axis."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(L, D, generator=g)
    sets = []
    for i in range(n_ids):
        offset = torch.randn(L, D, generator=g) * 10
        t = torch.linspace(0, 1, K)
        mine = torch.randn(L, D, generator=g)
        x = offset + t[:, None, None] * (d + own * mine) + 0.01 * torch.randn(K, L, D, generator=g)
        if glitch and i == 1:
            x[3, :, :5] += 8.0  # one bad frame of one face
        sets.append(Anchors(x, [float(v) for v in t], {"kind": "test", "face": i}))
    return d, sets


def _cos(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_concat_labels_groups_and_file_round_trip(tmp_path):
    _, sets = _faces()
    a = Anchors.concat(sets)
    assert a.identities == [0] * 8 + [1] * 8 + [2] * 8 and a.num_identities == 3 and len(a) == 24
    assert [g.source["face"] for g in a.groups()] == [0, 1, 2]
    assert torch.equal(a.groups()[1].latents, sets[1].latents)
    b = Anchors.concat([a, sets[0]])  # a set with identities keeps them apart
    assert b.num_identities == 4
    p = a.save(tmp_path / "a.safetensors")
    back = Anchors.load(p)
    assert back.identities == a.identities and torch.equal(back.latents, a.latents)
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata()
    assert meta["version"] == "2" and json.loads(meta["identities"]) == a.identities
    one = sets[0].save(tmp_path / "one.safetensors")  # one face: the old format, readable by older versions
    with safe_open(str(one), framework="pt") as f:
        assert f.metadata()["version"] == "1" and "identities" not in f.metadata()
    assert Anchors.load(one).identities is None


@pytest.mark.parametrize("ids,needle", [
    ([0, 0, 1], "at least 2 anchors"),
    ([0, 1], "one whole number >= 0 per anchor"),
    ([0, -1, 1], "one whole number >= 0 per anchor"),
    ([0, True, 1], "one whole number >= 0 per anchor"),
])
def test_bad_identity_labels_are_refused(ids, needle):
    with pytest.raises(InputError, match=needle):
        Anchors(torch.zeros(3, 2, 4), [0, 1, 2], {}, ids)


def test_one_identity_label_is_one_face():
    assert Anchors(torch.zeros(3, 2, 4), [0, 1, 2], {}, [5, 5, 5]).identities is None


def test_concat_refuses_other_shapes():
    with pytest.raises(InputError, match="different latent shapes"):
        Anchors.concat([Anchors(torch.zeros(2, 2, 4), [0, 1]), Anchors(torch.zeros(2, 3, 4), [0, 1])])


@pytest.mark.parametrize("direction", ["endpoints", "principal"])
def test_the_shared_direction_is_found_without_the_identity_offsets(direction):
    d, sets = _faces()
    m = Motion.from_anchors(Anchors.concat(sets), direction=direction, name="shared")
    assert _cos(m.direction, d) > 0.995
    assert float(m.direction.norm()) == pytest.approx(float(d.norm()), rel=0.05)  # strength 1 spans the motion
    assert m.meta.rpca["identities"] == 3 and m.meta.rpca["anchors_per_identity"] == [8, 8, 8]
    # without identity labels, the identity offsets would be the "motion"
    pooled = Motion.from_anchors(torch.cat([a.latents for a in sets]), direction=direction)
    assert abs(_cos(pooled.direction, d)) < 0.9


def test_what_one_face_does_alone_is_averaged_out():
    """Each face adds its own motion (half the shared one's size, along its own axis): the joint decode is
    closer to the shared direction than any single face's decode."""
    d, sets = _faces(n_ids=4, glitch=False, own=0.5)
    joint = _cos(Motion.from_anchors(Anchors.concat(sets)).direction, d)
    singles = [_cos(Motion.from_anchors(a).direction, d) for a in sets]
    assert joint > max(singles) + 0.02, (joint, singles)


def test_identities_of_different_lengths_and_a_saved_motion(tmp_path):
    d, sets = _faces()
    short = Anchors(sets[2].latents[::2], sets[2].labels[::2], sets[2].source)
    m = Motion.from_anchors(Anchors.concat([sets[0], sets[1], short]))
    assert _cos(m.direction, d) > 0.99 and m.meta.rpca["anchors_per_identity"] == [8, 8, 4]
    back = Motion.load(m.save(tmp_path / "m.safetensors"))
    torch.testing.assert_close(back.direction, m.direction)
    assert back.meta.rpca["identities"] == 3


def test_paper_variant_is_for_one_face():
    _, sets = _faces()
    with pytest.raises(InputError, match="variant 'ialm' only"):
        Motion.from_anchors(Anchors.concat(sets), variant="paper")


def test_anchor_stability_flags_a_direction_that_rests_on_one_face():
    from micromotion.decompose import anchor_stability

    d, sets = _faces(n_ids=3, glitch=False)
    clean = anchor_stability(Anchors.concat(sets))
    assert clean["decodes"] == 3 and clean["min_cosine"] > 0.99
    # a third face doing something else entirely: leaving it out changes the shared direction
    g = torch.Generator().manual_seed(9)
    other = torch.randn(4, 64, generator=g) * 3
    odd = Anchors(sets[2].latents + torch.linspace(0, 1, 8)[:, None, None] * other, sets[2].labels)
    mixed = anchor_stability(Anchors.concat([sets[0], sets[1], odd]))
    assert mixed["min_cosine"] < clean["min_cosine"] - 0.1 and mixed["worst"] == 2
    one = anchor_stability(sets[0])  # one face: each anchor left out
    assert one["decodes"] == 8 and one["min_cosine"] > 0.99
    with pytest.raises(InputError, match="at least 3 anchors"):
        anchor_stability(torch.zeros(2, 4, 8))
