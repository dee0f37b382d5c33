"""The hostile-input corpus (issue 24): files a new user or an attacker would hand the CLI, built on the fly.

Each case asserts what users see: the exit code; one `Error:` line on stderr and no traceback; no partial
output (`.NAME.part…`); the cache (MICROMOTION_HOME) unchanged; the user's other files untouched; nothing a
file smuggled in was executed (a marker file never appears). Everything that needs a generator uses the
shipped world model, with two frames.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from micromotion.cli import main

MARKER = "EXECUTED"  # what a smuggled payload would create in the case's folder


# ----------------------------------------------------------------------------------------------------------
# Inputs, built once per module


def _world_face(seed: int = 5, size: int = 128) -> np.ndarray:
    from micromotion.render import to_uint8
    from micromotion.world.faces import render, sample_factors

    return to_uint8(render(sample_factors(1, torch.Generator().manual_seed(seed), motion="neutral"), size=size))[0]


class _Payload:
    """Unpickling this would run a shell command creating MARKER."""

    def __init__(self, where: Path):
        self.where = where

    def __reduce__(self):
        return (os.system, (f"touch {self.where / MARKER}",))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(side: int = 60000) -> bytes:
    """A PNG that claims side x side pixels in a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    import json

    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good inputs the hostile ones are cut from: a world face, a clip of one, a motion file."""
    from micromotion.decompose import Motion
    from micromotion.generators import load_generator
    from micromotion.render import write_frames

    d = tmp_path_factory.mktemp("corpus")
    face = _world_face()
    Image.fromarray(face).save(d / "face.png")
    frames = [np.roll(face, i, axis=1) for i in range(50)]
    write_frames(frames, d / "clip.mp4", fps=25)
    G = load_generator("world")
    m = Motion.from_direction(torch.randn(G.num_ws, G.w_dim), name="rnd", generator=G)
    m.save(d / "motion.safetensors")
    from micromotion import Generator, GeneratorConfig

    tiny = Generator(GeneratorConfig.tiny(32)).eval()
    Motion.from_direction(torch.randn(tiny.num_ws, tiny.w_dim), name="other", generator=tiny).save(d / "other.safetensors")
    return dict(dir=d, face=face, clip=(d / "clip.mp4").read_bytes(), motion=(d / "motion.safetensors").read_bytes(),
                other=(d / "other.safetensors").read_bytes(), frames=frames, num_ws=G.num_ws, w_dim=G.w_dim)


# ----------------------------------------------------------------------------------------------------------
# Builders: (case folder, corpus) -> the path of the hostile file


def write(name, data):
    def build(d: Path, c):
        p = d / name
        p.write_bytes(data(d, c) if callable(data) else data)
        return p
    return build


def image(name, make, **save):
    def build(d: Path, c):
        p = d / name
        make(c).save(p, **save)
        return p
    return build


def face_img(c):
    return Image.fromarray(c["face"])


def gif_frames(c, n=500):
    base = Image.fromarray(c["face"]).resize((48, 48))
    return [base.rotate(i % 20) for i in range(n)]


def many_frame_gif(d: Path, c):
    p = d / "anim.gif"
    frames = gif_frames(c)
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=40)
    return p


def video(name, transform):
    return write(name, lambda d, c: transform(c["clip"]))


def one_frame_video(d: Path, c):
    from micromotion.render import write_frames

    return write_frames([c["face"]], d / "one.mp4", fps=25)


def noise_video(d: Path, c):
    from micromotion.render import write_frames

    rng = np.random.default_rng(0)
    return write_frames([rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(6)], d / "noise.mp4", fps=25)


def pickle_payload(d: Path, c):
    return pickle.dumps(_Payload(d))


def torch_payload(d: Path, c):
    import io

    buf = io.BytesIO()
    torch.save({"g_ema": _Payload(d)}, buf)
    return buf.getvalue()


def motion_tensor(value):
    """The good motion file with its direction set to `value` (NaN, inf), metadata kept."""
    def data(d, c):
        import json

        from safetensors.torch import load, save

        t = load(c["motion"])
        key = next(k for k in t if t[k].dtype.is_floating_point and t[k].numel() > 1)
        t[key] = torch.full_like(t[key], value)
        header_len = struct.unpack("<Q", c["motion"][:8])[0]
        metadata = json.loads(c["motion"][8:8 + header_len]).get("__metadata__", {})
        return save(t, metadata=metadata)
    return data


HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>\n" * 20
PHOTO = ["animate", "{x}", "-m", "smile", "--model", "world", "--frames", "2", "-o", "out.mp4"]
MOTION = ["animate", "face.png", "-m", "{x}", "--model", "world", "--frames", "2", "-o", "out.mp4"]
MODEL = ["animate", "face.png", "-m", "smile", "--model", "{x}", "--frames", "2", "-o", "out.mp4"]
TEXT = ["extract", "--text", "{x}", "-m", "world", "--steps", "1", "-o", "anchors.safetensors"]
VIDEO = ["extract", "--video", "{x}", "--aligned", "-m", "world", "--steps", "1", "--max-frames", "8", "-o",
         "anchors.safetensors"]


def tuned_world_generator(d: Path, c):
    """The world generator with one weight nudged: same shape, another fingerprint (a fine-tuned copy)."""
    from micromotion import save_generator
    from micromotion.generators import load_generator

    G = load_generator("world")
    with torch.no_grad():
        next(G.parameters()).add_(0.01)
    return save_generator(G, d / "world-tuned.safetensors")


ENCODER = ["invert", "face.png", "--model", "{x}", "--method", "encoder", "--encoder", "world-encoder", "--no-align",
           "-o", "w.safetensors"]


def face_png(d: Path, c):
    p = d / "face.png"
    Image.fromarray(c["face"]).save(p)
    return p


# id, builder (or a literal argument), argv template, exit code, a phrase of the error (None: success)
CASES = [
    # photos
    ("photo-empty", write("empty.png", b""), PHOTO, 1, "not an image"),
    ("photo-text-as-jpg", write("notes.jpg", b"dear diary\n"), PHOTO, 1, "not an image"),
    ("photo-html", write("page.png", HTML), PHOTO, 1, "not an image"),
    ("photo-truncated-png", write("cut.png", lambda d, c: _encoded(c, "PNG")[:600]), PHOTO, 1, "truncated"),
    ("photo-truncated-jpeg", write("cut.jpg", lambda d, c: _encoded(c, "JPEG")[:700]), PHOTO, 1, "truncated"),
    ("photo-fake-png", write("fake.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8), PHOTO, 1, "image"),
    ("photo-bomb", write("bomb.png", _bomb_png()), PHOTO, 1, "decompression bomb"),
    ("photo-folder-empty", lambda d, c: (d / "nothing").mkdir() or d / "nothing", PHOTO, 1, "no images found"),
    ("photo-missing", "missing.png", PHOTO, 1, "no such file"),
    ("photo-symlink-loop", lambda d, c: (os.symlink(d / "loop.png", d / "loop.png"), d / "loop.png")[1], PHOTO, 1,
     "no such file"),
    ("photo-cmyk", image("cmyk.jpg", lambda c: face_img(c).convert("CMYK")), PHOTO, 0, None),
    ("photo-16bit", image("deep.png", lambda c: Image.fromarray(c["face"][..., 0].astype(np.uint16) * 257)), PHOTO,
     0, None),
    ("photo-palette-alpha", image("pal.png", lambda c: face_img(c).convert("P")), PHOTO, 0, None),
    ("photo-gif-500-frames", many_frame_gif, PHOTO, 0, "using frame 1"),
    ("photo-unicode-path", image("фото лица 😀.png", face_img), PHOTO, 0, None),
    ("align-1x1", image("one.png", lambda c: Image.new("RGB", (1, 1))),
     ["align", "{x}", "-o", "aligned.png"], 1, "no face found"),
    ("photo-1x1-world", image("one.png", lambda c: Image.new("RGB", (1, 1))), PHOTO, 1, "too small to show a face"),
    ("photo-20x20-world-no-align", image("small.png", lambda c: Image.new("RGB", (20, 20), (200, 150, 120))),
     PHOTO + ["--no-align"], 1, "too small to show a face"),
    ("align-no-face", image("grey.png", lambda c: Image.new("RGB", (200, 150), (128, 128, 128))),
     ["align", "{x}", "-o", "aligned.png"], 1, "no face found"),
    ("align-two-faces-index-past", image("two.png", lambda c: _two_faces(c)),
     ["align", "{x}", "-o", "aligned.png", "--face-index", "7"], 1, "face"),
    ("face-index-negative", face_png, PHOTO + ["--face-index", "-1"], 2, "-1"),
    # numbers
    ("strength-nan", face_png, PHOTO + ["--strength", "nan"], 1, "strength"),
    ("strength-inf", face_png, PHOTO + ["--strength", "inf"], 1, "strength"),
    ("frames-zero", face_png, PHOTO[:-4] + ["--frames", "0", "-o", "out.mp4"], 1, "frames"),
    ("fps-zero", face_png, PHOTO + ["--fps", "0"], 1, "fps"),
    ("batch-size-zero", face_png, PHOTO + ["--batch-size", "0"], 1, "batch-size"),
    ("motion-empty-list", "face.png", ["animate", "face.png", "-m", ",", "-o", "out.mp4"], 1, "--motion is empty"),
    # outputs
    ("output-exists", face_png, PHOTO, 1, "exists", {"out.mp4": b"my own video"}),
    ("output-user-folder-overwrite", face_png, PHOTO[:-1] + ["mypics", "--overwrite"], 1, "mypics",
     {"mypics/a.jpg": b"1", "mypics/b.jpg": b"2", "mypics/notes.txt": b"notes"}),
    ("output-dir-named-mp4-overwrite", face_png, PHOTO[:-1] + ["dir.mp4", "--overwrite"], 1, "dir.mp4",
     {"dir.mp4/keep.txt": b"keep"}),
    ("output-dev-full", face_png, PHOTO[:-1] + ["/dev/full", "--overwrite"], 1, "full"),
    ("output-unknown-suffix", face_png, PHOTO[:-1] + ["out.xyz"], 1, "out.xyz"),
    ("output-missing-folder", face_png, PHOTO[:-1] + ["no/such/dir/out.mp4"], 1, "no/such/dir"),
    ("output-symlink-loop", face_png, PHOTO[:-1] + ["loop.mp4"], 1, "loop.mp4", {"@loop.mp4": "loop.mp4"}),
    ("output-unicode", face_png, PHOTO[:-1] + ["видео 🎬.mp4"], 0, None),
    # motion files
    ("motion-pickle-reduce", write("evil.pt", pickle_payload), MOTION, 1, None),
    ("motion-torch-zip-bad-pickle", write("evil2.pt", torch_payload), MOTION, 1, None),
    ("motion-html", write("page.safetensors", HTML), MOTION, 1, None),
    ("motion-empty", write("empty.safetensors", b""), MOTION, 1, None),
    ("motion-truncated", write("cut.safetensors", lambda d, c: c["motion"][:len(c["motion"]) // 2]), MOTION, 1,
     None),
    ("motion-huge-header", write("huge.safetensors", struct.pack("<Q", 2**62) + b"{}"), MOTION, 1, None),
    ("motion-header-lies", write("lies.safetensors", _safetensors_bytes(
        {"direction": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40000000000]}})), MOTION, 1,
     None),
    ("motion-nan", write("nan.safetensors", motion_tensor(float("nan"))), MOTION, 1, None),
    ("motion-inf", write("inf.safetensors", motion_tensor(float("inf"))), MOTION, 1, None),
    ("motion-other-generator", write("other.safetensors", lambda d, c: c["other"]), MOTION, 1, None),
    ("motion-unknown-preset", "smirk", MOTION, 1, "unknown motion 'smirk'"),
    # generator files
    ("model-pickle-reduce", write("evil.pkl", pickle_payload), MODEL, 1, None),
    ("model-torch-zip-bad-pickle", write("evil.pt", torch_payload), MODEL, 1, None),
    ("model-html-pt", write("model.pt", HTML), MODEL, 1, None),
    ("model-html-pkl", write("model.pkl", HTML), MODEL, 1, None),
    ("model-truncated-safetensors", write("g.safetensors", lambda d, c: c["motion"][:300]), MODEL, 1, None),
    ("model-huge-header", write("h.safetensors", struct.pack("<Q", 2**40) + b"{"), MODEL, 1, None),
    ("model-random-bytes", write("r.safetensors", bytes(np.random.default_rng(1).integers(0, 256, 4096,
                                                                                      dtype=np.uint8))), MODEL, 1,
     None),
    ("model-a-motion-file", write("m.safetensors", lambda d, c: c["motion"]), MODEL, 1, None),
    ("model-unknown-name", "no-such-model", MODEL, 1, None),
    # text templates
    ("template-attribute", "a {degree.__class__} smile", TEXT, 1, "is not allowed"),
    ("template-index", "a {degree[0]} smile", TEXT, 1, "is not allowed"),
    ("template-positional", "a {0} smile", TEXT, 1, "is not allowed"),
    ("template-conversion", "a {degree!r} smile", TEXT, 1, "is not allowed"),
    ("template-format-spec", "a {degree:>99999999} smile", TEXT, 1, "is not allowed"),
    ("template-code", "{__import__('os').system('touch EXECUTED')} {degree}", TEXT, 1, "is not allowed"),
    ("template-no-placeholder", "a big smile", TEXT, 1, "no {degree} placeholder"),
    ("template-unbalanced", "a {degree smile", TEXT, 1, "literal braces"),
    ("template-empty", " ", TEXT, 1, "empty"),
    ("template-two-lines", "a person with {degree}\nsmile", TEXT, 1, "one line"),
    ("template-100kb", "x" * 100_000 + " {degree}", TEXT, 1, "characters long"),
    ("template-degree-past-tokens", "a person with " + "very " * 75 + "{degree} smile", TEXT, 1, "same text"),
    # videos
    ("video-random-bytes", write("noise.mp4", bytes(np.random.default_rng(2).integers(0, 256, 5000,
                                                                                    dtype=np.uint8))), VIDEO, 1,
     "not a readable video"),
    ("video-empty", write("empty.mp4", b""), VIDEO, 1, "video"),
    ("video-text", write("notes.mp4", b"not a video\n" * 30), VIDEO, 1, "video"),
    ("video-folder", lambda d, c: (d / "clip.mp4").mkdir() or d / "clip.mp4", VIDEO, 2, "is a directory"),
    ("video-truncated-nothing", video("cut.mp4", lambda b: b[:len(b) // 3]), VIDEO, 1, "no video frames"),
    ("video-truncated-half", video("cut.mp4", lambda b: b[:int(len(b) * 0.75)]), VIDEO[:-3] + ["30", "-o", "a.safetensors"],
     1, "truncated"),
    ("video-one-frame", one_frame_video, VIDEO, 1, "1 frame"),
    ("video-no-face", noise_video, VIDEO[:3] + VIDEO[4:], 1, "face"),
    # an encoder made for another generator of the same shape (issue 22): one line naming both fingerprints
    ("encoder-for-another-generator", tuned_world_generator, ENCODER, 1, "trained for the generator"),
    ("video-missing", "missing.mp4", VIDEO, 1, "no such"),
]


def _encoded(c, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(c["face"]).save(buf, format=fmt)
    return buf.getvalue()


def _two_faces(c) -> Image.Image:
    f = Image.fromarray(c["face"])
    sheet = Image.new("RGB", (f.width * 2 + 40, f.height + 40), (255, 255, 255))
    sheet.paste(f, (10, 20))
    sheet.paste(f, (f.width + 30, 20))
    return sheet


# ----------------------------------------------------------------------------------------------------------
# The harness


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames + [n for n in dirnames if os.path.islink(os.path.join(dirpath, n))]:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        for n in dirnames:
            out.setdefault(str((Path(dirpath) / n).relative_to(root)) + "/", "dir")
    return out


def invoke(argv, cwd: Path, home: Path, monkeypatch):
    """The CLI in-process, as a user runs it: main() sends logging to the stderr CliRunner captures (pytest's
    own log handlers are set aside for the run, else basicConfig would leave them in place)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MICROMOTION_HOME", str(home))
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        return CliRunner().invoke(main, argv, prog_name="micromotion")
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def error_lines(stderr: str) -> list[str]:
    """stderr without progress bars, the model line and warnings: what is left must be the error alone."""
    lines = []
    for raw in stderr.splitlines():
        line = raw.split("\r")[-1].strip()
        if not line or line.startswith(("model:", "WARNING", "render:", "animate:", "invert", "Usage:", "Try ")):
            continue
        lines.append(line)
    return lines


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case, corpus, tmp_path, monkeypatch):
    name, build, argv, code, needle, *extra = case
    user = tmp_path / "user"
    user.mkdir()
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "keep.txt").write_text("the cache as it was")
    Image.fromarray(corpus["face"]).save(user / "face.png")  # the photo MOTION/MODEL cases animate
    for rel, content in (extra[0] if extra else {}).items():
        if rel.startswith("@"):
            os.symlink(content, user / rel[1:])
            continue
        (user / rel).parent.mkdir(parents=True, exist_ok=True)
        (user / rel).write_bytes(content)
    x = build(user, corpus) if callable(build) else build
    argv = [a.replace("{x}", str(x)) for a in argv]
    user_before, home_before = _snapshot(user), _snapshot(home)

    r = invoke(argv, user, home, monkeypatch)

    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, (r.exit_code, r.stderr, r.stdout)
    assert not (user / MARKER).exists() and not Path(MARKER).exists(), "a payload ran"
    after = _snapshot(user)
    assert not [p for p in after if ".part" in p or ".old" in p], after  # no partial output
    assert _snapshot(home) == home_before or code == 0, "the cache changed"
    assert {k: v for k, v in user_before.items() if k in after} == {k: after[k] for k in user_before if k in after}
    assert set(user_before) <= set(after), "a user file vanished"
    if code == 0:
        assert len(r.stderr) < 4000, r.stderr  # no flood of warnings
        if needle:
            assert needle in r.stderr, r.stderr
        new = set(after) - set(user_before)
        assert new, "success wrote nothing"
    else:
        errors = error_lines(r.stderr)
        assert len(errors) == 1 and errors[0].startswith("Error:"), r.stderr
        assert len(errors[0]) < 600, errors[0]
        if needle:
            assert needle in errors[0], errors[0]
        assert set(after) == set(user_before), set(after) ^ set(user_before)  # nothing written
