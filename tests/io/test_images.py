"""micromotion.image_io: every kind of image a user may hand us, and the ones we must refuse."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from micromotion.errors import InputError
from micromotion.io.images import (DEFAULT_MAX_PIXELS, array_to_image, atomic_output, check_image_output,
                                  load_image, max_pixels_limit, save_image)


def _save(tmp_path, im, name, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


def _gradient(w=40, h=30):
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    return np.uint8(np.concatenate([x.repeat(h, 0), y.repeat(w, 1), np.full((h, w, 1), 90, np.float32)], 2))


def test_rgb_jpeg_and_png(tmp_path):
    a = _gradient()
    png = load_image(_save(tmp_path, Image.fromarray(a), "a.png"))
    assert png.mode == "RGB" and png.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(png), a)
    jpg = load_image(_save(tmp_path, Image.fromarray(a), "a.jpg", quality=95))
    assert jpg.mode == "RGB" and np.abs(np.asarray(jpg, np.float32) - a).mean() < 3


def test_bytes_file_object_and_pil_inputs(tmp_path):
    path = _save(tmp_path, Image.fromarray(_gradient()), "a.png")
    data = path.read_bytes()
    for source in (data, io.BytesIO(data), Image.open(path)):
        im = load_image(source)
        assert im.mode == "RGB" and im.size == (40, 30)


def test_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(InputError, match=r"notes\.jpg: not an image"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match=r"missing\.png: no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_truncated_file(tmp_path, fmt):
    rng = np.random.default_rng(0)
    full = _save(tmp_path, Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)), f"full.{fmt}")
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"cut\.{fmt}: truncated or corrupt"):
        load_image(cut)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height but carries a single tiny IDAT: a decompression bomb's
    signature, cheap to make."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path):
    above_ours = _png_header_only(tmp_path / "bomb.png", 12_000, 10_000)  # 120 MP: our limit, not Pillow's
    with pytest.raises(InputError, match=r"bomb\.png: 12000x10000 = 120\.0 megapixels is above the limit"):
        load_image(above_ours)
    above_pillows = _png_header_only(tmp_path / "huge.png", 40_000, 40_000)
    with pytest.raises(InputError, match=r"huge\.png: .*decompression bomb"):
        load_image(above_pillows)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = _save(tmp_path, Image.fromarray(_gradient(100, 100)), "a.png")
    with pytest.raises(InputError, match=r"100x100 = 0\.0 megapixels is above the limit of 0\.005 "):
        load_image(path, max_pixels=5000)
    monkeypatch.setenv("MICROMOTION_MAX_PIXELS", "9999")
    assert max_pixels_limit() == 9999
    with pytest.raises(InputError, match="above the limit"):
        load_image(path)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    monkeypatch.setenv("MICROMOTION_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="MICROMOTION_MAX_PIXELS='lots' is not a number"):
        max_pixels_limit()
    monkeypatch.delenv("MICROMOTION_MAX_PIXELS")
    assert max_pixels_limit() == DEFAULT_MAX_PIXELS


def test_grayscale_and_bilevel(tmp_path):
    g = np.uint8(np.arange(64).reshape(8, 8) * 4)
    im = load_image(_save(tmp_path, Image.fromarray(g, "L"), "g.png"))
    assert im.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(im)[:, :, 1], g)
    bw = load_image(_save(tmp_path, Image.fromarray(g > 100).convert("1"), "bw.png"))
    assert set(np.unique(np.asarray(bw))) <= {0, 255}


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200
    a[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    im = np.asarray(load_image(_save(tmp_path, Image.fromarray(a, "RGBA"), "rgba.png")))
    np.testing.assert_array_equal(im[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(im[3, 3], [255, 255, 255])
    la = load_image(_save(tmp_path, Image.fromarray(a[..., [0, 3]], "LA"), "la.png"))
    np.testing.assert_array_equal(np.asarray(la)[3, 3], [255, 255, 255])


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in print colours
    im = load_image(_save(tmp_path, cmyk, "cmyk.jpg", quality=95))
    r, g, b = np.asarray(im, np.float32).mean((0, 1))
    assert im.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257 * 128, 65535, 65535]], dtype=np.uint16).repeat(2, 0)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    im = np.asarray(load_image(path))
    np.testing.assert_array_equal(im[0, :, 0], [0, 128, 255, 255])


def test_16bit_rgb_png(tmp_path):
    # A 16-bit RGB PNG written by hand (Pillow cannot write one): Pillow reads it as 8-bit RGB.
    h, w = 2, 3
    rows = b"".join(b"\0" + np.full((w, 3), 65535 // 3, ">u2").tobytes() for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path = tmp_path / "rgb16.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    im = np.asarray(load_image(path))
    assert im.shape == (2, 3, 3) and abs(int(im[0, 0, 0]) - 85) <= 1


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30, 250, 0, 0] + [0] * (256 * 3 - 6))
    p.putpixel((0, 0), 1)
    im = np.asarray(load_image(_save(tmp_path, p, "p.png")))
    np.testing.assert_array_equal(im[0, 0], [250, 0, 0])
    np.testing.assert_array_equal(im[1, 1], [10, 20, 30])
    im = np.asarray(load_image(_save(tmp_path, p, "pt.png", transparency=0)))
    np.testing.assert_array_equal(im[1, 1], [255, 255, 255])
    gif = np.asarray(load_image(_save(tmp_path, p, "p.gif")))
    np.testing.assert_array_equal(gif[0, 0], [250, 0, 0])


def test_exif_orientation_respected(tmp_path):
    a = np.zeros((20, 30, 3), np.uint8)
    a[:, :15, 0] = 255  # stored image: left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path, Image.fromarray(a), "rotated.jpg", exif=exif.tobytes(), quality=95)
    im = np.asarray(load_image(path))
    assert im.shape == (30, 20, 3)  # width and height swapped
    assert im[:10, :, 0].mean() > 200 and im[-10:, :, 0].mean() < 50  # the left half is now on top


def test_arrays():
    assert array_to_image(np.zeros((5, 6), np.uint8)).size == (6, 5)
    np.testing.assert_array_equal(np.asarray(array_to_image(np.full((2, 2, 3), 0.5)))[0, 0], [128, 128, 128])
    np.testing.assert_array_equal(np.asarray(array_to_image(np.full((2, 2), 65535, np.uint16)))[0, 0], [255] * 3)
    assert array_to_image(np.zeros((3, 3, 4), np.uint8)).mode == "RGB"
    with pytest.raises(InputError, match=r"must be \[H, W\]"):
        array_to_image(np.zeros((3, 3, 2), np.uint8))
    with pytest.raises(InputError, match="above the limit"):
        load_image(np.zeros((100, 100), np.uint8), max_pixels=99)


def test_save_image_atomic_and_validated(tmp_path):
    out = save_image(Image.fromarray(_gradient()), tmp_path / "out.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), _gradient())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(InputError, match=r"unknown image extension '\.xyz'"):
        save_image(Image.fromarray(_gradient()), tmp_path / "out.xyz")
    with pytest.raises(InputError, match="does not exist"):
        check_image_output(tmp_path / "nowhere" / "a.png")
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "half.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert not (tmp_path / "half.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
