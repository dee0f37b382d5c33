"""World CLIP: captions from true factors, contrastive steps on CPU, checkpoint/resume, export through Clip.load."""
import json
import math
import re

import pytest
import torch

from micromotion.errors import CheckpointError, InputError
from micromotion.models.clip import Clip
from micromotion.world import Factors, sample_factors
from micromotion.world.captions import ANCHOR_TEMPLATES, caption, captions, degree, turn_side
from micromotion.world.train.clip import ClipTrainer, WorldClipConfig, evaluate_clip, export_clip, train_world_clip


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_captions_deterministic_and_use_degree_words():
    f = sample_factors(300, torch.Generator().manual_seed(0))
    a = captions(f, torch.Generator().manual_seed(1))
    assert a == captions(f, torch.Generator().manual_seed(1))
    assert a != captions(f, torch.Generator().manual_seed(2))
    assert len(a) == 300 and all(isinstance(c, str) and c for c in a)
    pcts = [int(p) for c in a for p in re.findall(r"(\d+)%", c)]
    assert pcts and all(p % 10 == 0 and 10 <= p <= 100 for p in pcts)
    assert len(set(a)) > 200  # varied
    joined = " | ".join(a)
    for word in ("smile", "angry", "old", "closed", "turned", "hair", "glasses", "skin"):
        assert word in joined
    assert 1 <= max(c.count(",") for c in a) + 1 <= 3


def test_caption_degrees_follow_the_true_factor():
    assert degree(0.0, "smile") == 0 and degree(0.34, "smile") == 30 and degree(1.0, "smile") == 100
    assert degree(-0.8, "head_turn") == 80 and degree(0.04, "head_turn") == 0
    f = Factors.neutral(40).replace(smile=0.3)
    g = torch.Generator().manual_seed(0)
    smile = [c for c in captions(f, g) if "smil" in c]
    assert smile and all("30%" in c for c in smile)
    f = Factors.neutral(40)
    smile = [c for c in captions(f, g) if "smil" in c]
    assert smile and all("no smile" in c or "not smiling" in c for c in smile)
    assert ANCHOR_TEMPLATES["smile"].format(degree="30%") == "a person with 30% smile"


def test_head_turn_words_use_the_image_frame():
    # +1: nose toward the image's right (render.FACTOR_SPECS) -> "right"
    assert turn_side(0.7) == "right" and turn_side(-0.7) == "left"
    g = torch.Generator().manual_seed(0)
    for value, side, other in ((0.9, "right", "left"), (-0.9, "left", "right")):
        row = Factors.neutral(1).replace(head_turn=value).to_dicts()[0]
        texts = [caption(row, g) for _ in range(400)]
        sided = [t for t in texts if f"to the {side}" in t]
        assert sided and not any(f"to the {other}" in t for t in texts)
        assert all("90%" in t for t in sided if "%" in t)


def test_two_training_steps_on_cpu():
    tr = ClipTrainer(WorldClipConfig.tiny(), "cpu")
    before = [p.detach().clone() for p in tr.model.parameters()]
    s1, s2 = tr.step(), tr.step()
    assert math.isfinite(float(s1["loss"])) and math.isfinite(float(s2["loss"]))
    assert float(s1["loss"]) > 0 and float(s2["logit_scale"]) <= 100 + 1e-3
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert tr.step_count == 2 and tr.nimg == 8
    # the logit scale is clamped at 100
    with torch.no_grad():
        tr.model.logit_scale.fill_(10.0)
    tr.step()
    assert float(tr.model.logit_scale.detach().exp()) <= 100 + 1e-3


def test_checkpoint_resume_export(tmp_path):
    out = tmp_path / "run"
    state = train_world_clip(out, minutes=5, cfg=WorldClipConfig.tiny(), max_steps=2, eval_n=32, progress=False)
    assert state["step"] == 2 and state["nimg"] == 8
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "optim.safetensors", "state.json", "log.jsonl"} <= names
    assert not any(n.startswith(".") for n in names)
    ev = state["evaluation"]
    assert 0 <= ev["retrieval_i2t"] <= 1 and set(ev["anchor_spearman"]) == set(ANCHOR_TEMPLATES)
    assert all(-1 <= v <= 1 for v in ev["anchor_spearman"].values())

    with pytest.raises(InputError, match="--resume"):
        train_world_clip(out, minutes=5, cfg=WorldClipConfig.tiny(), max_steps=1, progress=False)
    tr, _ = ClipTrainer.load(out)
    assert tr.step_count == 2 and len(tr.opt.state) > 0
    state = train_world_clip(out, minutes=5, resume=True, max_steps=1, eval_n=0, progress=False)
    assert state["step"] == 3 and state["nimg"] == 12
    assert [json.loads(l)["step"] for l in (out / "log.jsonl").read_text().splitlines()] == [2, 3]

    path = export_clip(out, tmp_path / "world-clip.safetensors")
    clip = Clip.load(path)
    assert clip.image_size == 32 and clip.config.text_cfg["context_length"] == 32
    img = clip.encode_image(torch.rand(2, 3, 48, 48) * 2 - 1)
    txt = clip.encode_text(["a person with 30% smile", "a face turned to the left"])
    assert img.shape == txt.shape == (2, 32)
    assert torch.allclose(img.norm(dim=-1), torch.ones(2), atol=1e-5)
    # the exported weights are the trained ones
    tr, _ = ClipTrainer.load(out)
    sd = tr.model.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in clip.model.state_dict().items())
    ev = evaluate_clip(clip, n=32, group=16, render_size=32)
    assert ev["retrieval_chance"] == 1 / 16


def test_compact_export_keeps_the_world_vocabulary(tmp_path):
    """fp16 + only the caption vocabulary's embedding rows: same features for world text, zeros elsewhere."""
    from micromotion.world.captions import phrases
    from micromotion.world.train.clip import world_vocab_ids

    out = tmp_path / "run"
    train_world_clip(out, minutes=5, cfg=WorldClipConfig.tiny(), max_steps=1, eval_n=0, progress=False)
    full = Clip.load(export_clip(out, tmp_path / "full.safetensors"))
    small_path = export_clip(out, tmp_path / "small.safetensors", compact=True)
    small = Clip.load(small_path)
    assert small_path.stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    texts = ["a person with 30% smile", "a person with head 70% turned to the side", "a calm face",
             "a person with curly blonde hair, eyes 20% closed"]
    a, b = full.encode_text(texts), small.encode_text(texts)
    assert torch.allclose(a, b, atol=2e-3)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(full.encode_image(x), small.encode_image(x), atol=2e-3)
    ids = world_vocab_ids(full)
    emb = small.model.state_dict()["token_embedding.weight"]
    kept = torch.zeros(emb.shape[0], dtype=torch.bool)
    kept[ids] = True
    assert emb[~kept].abs().sum() == 0 and emb[kept].abs().sum() > 0
    # every word of sampled training captions is in the kept vocabulary
    gen = torch.Generator().manual_seed(3)
    caps = captions(sample_factors(400, generator=torch.Generator().manual_seed(4)), gen)
    toks = small.tokenize(caps)
    assert kept[toks[toks != 0]].all()
    assert len(phrases()) > 100


def test_compact_file_damage_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    out = tmp_path / "run"
    train_world_clip(out, minutes=5, cfg=WorldClipConfig.tiny(), max_steps=1, eval_n=0, progress=False)
    p = export_clip(out, tmp_path / "small.safetensors", compact=True)
    with safe_open(str(p), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(p))
    sd["token_embedding.ids"] = sd["token_embedding.ids"] + 10 ** 6
    save_file(sd, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="compact token embedding"):
        Clip.load(tmp_path / "bad.safetensors")
    del sd["token_embedding.rows"]
    save_file(sd, str(tmp_path / "bad2.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="lacks"):
        Clip.load(tmp_path / "bad2.safetensors")


def test_grouped_batches_share_identity_and_differ_in_motion():
    from dataclasses import replace

    from micromotion.world.faces import MOTION_FACTORS

    tr = ClipTrainer(replace(WorldClipConfig.tiny(), batch=8, group=4), "cpu")
    x, tokens, texts, f = tr.batch(8)
    assert x.shape[0] == 8 and tokens.shape[0] == 8 and len(texts) == 8
    for k, v in f.items():
        groups = v.view(2, 4)
        if k in MOTION_FACTORS:  # motions drawn afresh for every render
            assert not torch.equal(groups[:, 0], groups[:, 1])
        else:  # identity shared within a group, different between groups (continuous factors)
            assert torch.equal(groups, groups[:, :1].expand(2, 4))
    assert not torch.equal(f.face_width.view(2, 4)[0], f.face_width.view(2, 4)[1])
    # every caption of a grouped batch names a motion, so the group's renders can be told apart
    motion = re.compile(r"\d+%|\bno (smile|angry|anger|old|closed|turned)|not smiling|calm face|young|open eyes|"
                        r"wide open|straight ahead|frontal|looking to|turned to the")
    assert all(motion.search(t) for t in texts), texts
    # ungrouped batches keep identity-only captions (30 % of them name no motion)
    _, _, plain, _ = ClipTrainer(replace(WorldClipConfig.tiny(), batch=64), "cpu").batch(64)
    assert not all(motion.search(t) for t in plain)
    with pytest.raises(InputError, match="divide the batch"):
        replace(WorldClipConfig.tiny(), batch=6, group=4)


def test_multi_positive_loss():
    tr = ClipTrainer(WorldClipConfig.tiny(), "cpu")
    x, tokens, _, _ = tr.batch(4)
    # distinct texts: the same loss as plain InfoNCE
    with torch.no_grad():
        assert float(tr.loss(x, tokens, ["a", "b", "c", "d"])) == pytest.approx(float(tr.loss(x, tokens)), rel=1e-5)
    # identical texts are positives of each other: the target of a row is spread over its equal texts
    texts = ["p", "q", "p", "r"]
    with torch.no_grad():
        img = torch.nn.functional.normalize(tr.model.encode_image(x).float(), dim=-1)
        txt = torch.nn.functional.normalize(tr.model.encode_text(tokens).float(), dim=-1)
        logits = tr.model.logit_scale.exp() * img @ txt.t()
        target = torch.tensor([[.5, 0, .5, 0], [0, 1, 0, 0], [.5, 0, .5, 0], [0, 0, 0, 1]])
        i2t = (target * logits.log_softmax(1)).sum(1).mean()
        t2i = (target * logits.t().log_softmax(1)).sum(1).mean()
        want = -(i2t + t2i) / 2
        assert float(tr.loss(x, tokens, texts)) == pytest.approx(float(want), rel=1e-5)
        assert float(tr.loss(x, tokens, texts)) != pytest.approx(float(tr.loss(x, tokens)), rel=1e-4)
    # one training step with the option on
    from dataclasses import replace

    tr2 = ClipTrainer(replace(WorldClipConfig.tiny(), multi_positive=True, group=2), "cpu")
    assert math.isfinite(float(tr2.step()["loss"]))


def test_configs_written_before_grouping_still_load():
    d = WorldClipConfig.tiny().to_dict()
    del d["group"], d["multi_positive"]
    cfg = WorldClipConfig.from_dict(d)
    assert cfg.group == 1 and cfg.multi_positive is False


def test_init_from_a_clip_file(tmp_path):
    from dataclasses import replace

    cfg = WorldClipConfig.tiny()
    tr = ClipTrainer(cfg, "cpu")
    tr.step()
    path = tr.clip.save(tmp_path / "c.safetensors")
    fresh = ClipTrainer(replace(cfg, seed=5), "cpu")
    fresh.init_from(path)
    for (k, a), b in zip(tr.model.state_dict().items(), fresh.model.state_dict().values()):
        assert torch.equal(a, b), k
    other = ClipTrainer(replace(cfg, embed_dim=16), "cpu")
    with pytest.raises(InputError, match="not the one of this config"):
        other.init_from(path)


def test_motion_groups_share_motions_and_one_motion_only_caption():
    from dataclasses import replace

    from micromotion.world.faces import MOTION_FACTORS

    tr = ClipTrainer(replace(WorldClipConfig.tiny(), batch=16, group=4, motion_groups=0.5), "cpu")
    _, _, texts, f = tr.batch(16)
    for k, v in f.items():
        mot = v[8:].view(2, 4)
        if k in MOTION_FACTORS:  # the last half: 2 groups of 4 faces in one motion state
            assert torch.equal(mot, mot[:, :1].expand(2, 4)), k
        ident = v[:8].view(2, 4)
        if k not in MOTION_FACTORS:  # the first half: identity groups as before
            assert torch.equal(ident, ident[:, :1].expand(2, 4)), k
    assert not torch.equal(f.face_width[8:12], f.face_width[8:9].expand(4))  # different people
    for i in (8, 12):
        assert len(set(texts[i:i + 4])) == 1  # one caption per motion group
        assert not re.search(r"hair|glasses|skin|eyebrows|earrings|face,|chin|jaw|eyes$", texts[i]), texts[i]
    with pytest.raises(InputError, match="motion_groups"):
        replace(WorldClipConfig.tiny(), motion_groups=0.5)  # needs group >= 2


def test_adversarial_images_stay_in_the_ball_raise_the_loss_and_train():
    from dataclasses import replace

    tr = ClipTrainer(replace(WorldClipConfig.tiny(), batch=8, adv_eps=0.5, adv_steps=3), "cpu")
    x, tokens, _, _ = tr.batch(8)
    xa = tr.perturb(x, tokens)
    std, mean = tr.clip.std, tr.clip.mean
    moved = ((xa - x) * std).flatten(1).norm(dim=1)  # in [0, 1] pixel units
    assert (moved <= 0.5 + 1e-4).all() and (moved > 0.1).all()
    pixels = xa * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5  # still a valid image
    with torch.no_grad():
        assert float(tr.loss(xa, tokens)) > float(tr.loss(x, tokens))
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in tr.model.parameters())  # PGD leaves no grads
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    calls = []
    real = tr.perturb
    tr.perturb = lambda *a, **k: calls.append(1) or real(*a, **k)
    stats = tr.step()
    assert calls == [1]  # the step trains on adversarial images
    assert math.isfinite(float(stats["loss"]))
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    tr.cfg.adv_clean = 1.0  # clean loss only: no PGD is wasted on images of weight 0
    tr.step()
    assert calls == [1]
    for bad in ({"adv_eps": -1.0}, {"adv_eps": float("nan")}, {"adv_steps": 0}, {"adv_clean": 1.5}):
        with pytest.raises(InputError, match="adversarial"):
            replace(WorldClipConfig.tiny(), **bad)


def test_cli_bad_init_or_adversarial_setting_is_one_line(tmp_path):
    from micromotion.world.train.clip import main

    with pytest.raises(SystemExit, match=r"^error: no such file .*nope\.safetensors"):
        main(["--tiny", "--out", str(tmp_path / "a"), "--init", str(tmp_path / "nope.safetensors"),
              "--max-steps", "1", "--device", "cpu", "--eval-n", "0"])
    with pytest.raises(SystemExit, match="^error: adversarial training needs"):
        main(["--tiny", "--out", str(tmp_path / "b"), "--adv-eps", "nan", "--max-steps", "1", "--device", "cpu"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-made
