"""micromotion.align: detection, FFHQ alignment geometry, paste-back, and the `align` command's behaviour."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from micromotion.align import (AlignedFace, align_face, apply_transform, detect_faces, face_mask, ffhq_quad,
                               paste_back, quad_transform, warp_to_quad)
from micromotion.cli import main
from micromotion.errors import InputError

pytest.importorskip("dlib")



@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    return align_face(astronaut, size=256)


def _ffhq_reference(img: Image.Image, lm: np.ndarray, output_size: int) -> Image.Image:
    """NVlabs/ffhq-dataset `recreate_aligned_images`, transcribed (transform_size = 4 x output_size)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    transform_size = 4 * output_size
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
            int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, img.size[0]),
            min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))), int(np.ceil(max(quad[:, 0]))),
           int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - img.size[0] + border, 0),
           max(pad[3] - img.size[1] + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = img.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                          1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
        blur = qsize * 0.02
        img += (ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(img), 0, 255)), "RGB")
        quad += pad[:2]
    img = img.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    return img.resize((output_size, output_size), Image.LANCZOS)


# ----------------------------------------------------------------------------------------------------------
# Alignment of a real photo


def test_astronaut_is_aligned_ffhq_style(astronaut_face):
    f = astronaut_face
    assert isinstance(f, AlignedFace)
    assert f.detector == "hog" and f.num_faces == 1 and f.face_index == 0
    assert f.image.size == (256, 256) and f.image.mode == "RGB"
    assert f.landmarks.shape == (68, 2) and f.quad.shape == (4, 2) and f.transform.shape == (3, 3)
    assert f.source_size == (512, 512)
    # Her face is in the photo's upper middle (the dlib box is about x 179-266, y 83-170).
    nose = f.landmarks[30]
    assert 180 < nose[0] < 265 and 85 < nose[1] < 170
    # In the crop, the FFHQ layout: eyes level and mirror-symmetric about the centre, mouth centred below.
    lm = f.landmarks_aligned
    le, re, mouth = lm[36:42].mean(0), lm[42:48].mean(0), (lm[48] + lm[54]) / 2
    assert abs(le[1] - re[1]) < 0.03 * 256
    assert abs((le[0] + re[0]) / 2 - 128) < 0.03 * 256 and abs(mouth[0] - 128) < 0.03 * 256
    assert 0.40 * 256 < le[1] < 0.52 * 256 and mouth[1] > le[1] + 0.15 * 256


def test_crop_matches_the_ffhq_reference_procedure(astronaut, astronaut_face):
    ref = np.asarray(_ffhq_reference(astronaut, astronaut_face.landmarks.copy(), 256), np.float32)
    ours = np.asarray(astronaut_face.image, np.float32)
    diff = np.abs(ref - ours)
    assert diff.mean() < 2.0, diff.mean()  # resampling order differs slightly; the geometry must not
    assert np.percentile(diff, 99) < 20


def test_quad_is_ffhq(astronaut_face):
    q = ffhq_quad(astronaut_face.landmarks)
    np.testing.assert_allclose(q, astronaut_face.quad)
    sides = np.hypot(*(np.roll(q, -1, 0) - q).T)
    np.testing.assert_allclose(sides, sides[0], rtol=1e-9)  # a square
    with pytest.raises(InputError, match=r"\[68, 2\]"):
        ffhq_quad(np.zeros((5, 2)))


def test_transform_round_trip(astronaut_face):
    f = astronaut_face
    pts = np.random.default_rng(0).uniform(-20, 280, (50, 2))
    np.testing.assert_allclose(f.to_aligned(f.to_original(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(f.to_original(f.to_aligned(f.landmarks)), f.landmarks, atol=1e-9)
    # The crop's outer corners are the quad's corners.
    corners = [[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]]
    np.testing.assert_allclose(f.to_original(corners), f.quad, atol=1e-9)
    # transform_for(R) agrees with transform at the crop's own size and maps R-pixel centres consistently.
    np.testing.assert_allclose(f.transform_for(256), f.transform)
    np.testing.assert_allclose(apply_transform(f.transform_for(64), [[-0.5, -0.5]]), f.quad[:1], atol=1e-9)


def _blob_image(points, size=(900, 700), sigma=3.0):
    yy, xx = np.mgrid[: size[1], : size[0]].astype(np.float32)
    a = np.zeros(size[::-1], np.float32)
    for x, y in points:
        a += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return Image.fromarray(np.uint8(np.clip(a * 255, 0, 255))).convert("RGB")


def _centroid(a, around, radius):
    x0, y0 = (int(round(v)) for v in around)
    win = a[max(y0 - radius, 0): y0 + radius + 1, max(x0 - radius, 0): x0 + radius + 1].astype(np.float64)
    win = np.clip(win - np.median(a), 0, None)
    yy, xx = np.mgrid[max(y0 - radius, 0): y0 + radius + 1, max(x0 - radius, 0): x0 + radius + 1]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


@pytest.mark.parametrize("case", ["rotated", "shrunk", "padded"])
def test_warp_geometry_is_exactly_the_transform(case):
    """Bright dots in the photo land in the crop exactly where the inverse transform says (sub-pixel)."""
    centre = {"rotated": (450, 350), "shrunk": (450, 350), "padded": (60, 330)}[case]
    half = {"rotated": 150, "shrunk": 330, "padded": 150}[case]
    angle = np.deg2rad(17)
    ex, ey = np.array([np.cos(angle), np.sin(angle)]) * half, np.array([-np.sin(angle), np.cos(angle)]) * half
    c = np.array(centre, float)
    quad = np.stack([c - ex - ey, c - ex + ey, c + ex + ey, c + ex - ey])
    size = 128
    M = quad_transform(quad, size)
    targets = np.array([[30.0, 40.0], [90.5, 70.25], [64.0, 100.0], [100.0, 30.5]])
    sigma = 1.2 * half / size * (2 if case == "shrunk" else 1)
    photo_pts = apply_transform(M, targets)
    # Dots near the photo's edge are reflected and blurred by the FFHQ padding (by design): keep away from it.
    m = 50
    inside = (photo_pts.min(1) > m) & (photo_pts[:, 0] < 900 - m) & (photo_pts[:, 1] < 700 - m)
    targets, photo_pts = targets[inside], photo_pts[inside]
    assert len(targets) >= 2
    crop = np.asarray(warp_to_quad(_blob_image(photo_pts, sigma=sigma), quad, size).convert("L"), np.float32)
    for t in targets:
        np.testing.assert_allclose(_centroid(crop, t, 6), t, atol=0.15)


# ----------------------------------------------------------------------------------------------------------
# Paste-back


def test_paste_back_of_the_crop_restores_the_photo(astronaut):
    f = align_face(astronaut, size=512)  # crop finer than the face, so no detail is lost on the way
    out = paste_back(f.image, f)
    assert out.size == astronaut.size and out.mode == "RGB"
    photo, pasted = np.asarray(astronaut, np.float32), np.asarray(out, np.float32)
    mask = np.zeros(photo.shape[:2], bool)
    nose = f.landmarks[30].round().astype(int)
    mask[nose[1] - 40: nose[1] + 40, nose[0] - 30: nose[0] + 30] = True
    assert np.abs(photo - pasted)[mask].mean() < 2.6  # two resamplings of a sharp photo
    far = np.ones(photo.shape[:2], bool)
    far[max(int(f.quad[:, 1].min()) - 2, 0): int(f.quad[:, 1].max()) + 3,
        max(int(f.quad[:, 0].min()) - 2, 0): int(f.quad[:, 0].max()) + 3] = False
    np.testing.assert_array_equal(photo[far], pasted[far])  # outside the quad: untouched


def test_paste_back_puts_the_face_at_the_right_place(astronaut_face):
    f = astronaut_face
    green = Image.new("RGB", (1024, 1024), (0, 255, 0))  # a "render" at another resolution than the crop
    out = np.asarray(paste_back(green, f), np.float32)
    photo = np.asarray(f.original, np.float32)
    for i in (30, 33, 51, 8):  # nose, nose base, upper lip, chin: inside the face mask
        x, y = f.landmarks[i].round().astype(int)
        np.testing.assert_allclose(out[y, x], [0, 255, 0], atol=3)
    # Background far from the face keeps its pixels; the top-left corner of the photo is outside the quad.
    np.testing.assert_array_equal(out[:10, :10], photo[:10, :10])
    # The blend is soft: along a line from the nose outwards, the green weight falls gradually.
    x0, y0 = f.landmarks[30]
    weights = []
    for r in range(0, 200, 4):
        x, y = int(x0 + r), int(y0)
        if x >= out.shape[1]:
            break
        weights.append((out[y, x, 1] - photo[y, x, 1]) / max(255 - photo[y, x, 1], 1))
    weights = np.array(weights)
    assert weights[0] > 0.98 and weights[-1] < 0.02
    assert ((weights > 0.1) & (weights < 0.9)).sum() >= 2  # several pixels of feather, not a hard edge


def test_paste_back_into_a_larger_copy_of_the_photo(astronaut_face):
    f = astronaut_face
    big = f.original.resize((1024, 1024), Image.LANCZOS)
    out = np.asarray(paste_back(Image.new("RGB", (256, 256), (0, 0, 255)), f, big))
    assert out.shape == (1024, 1024, 3)
    x, y = (f.landmarks[30] * 2 + 0.5).round().astype(int)
    np.testing.assert_allclose(out[y, x], [0, 0, 255], atol=3)


def test_face_mask(astronaut_face):
    m = face_mask(astronaut_face)
    assert m.shape == (256, 256) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    assert m[128, 128] > 0.99 and m[0, 0] == 0 and m[:, 0].max() == 0 and m[-1, :].max() == 0
    full = face_mask(astronaut_face, region="full")
    assert full[128, 128] == 1 and full[0, 128] == 0 and full.sum() > m.sum()
    with pytest.raises(InputError, match="unknown mask region"):
        face_mask(astronaut_face, region="hair")


# ----------------------------------------------------------------------------------------------------------
# Detectors, options and bad input


def test_cnn_detector_on_a_downscaled_photo(astronaut):
    small = astronaut.resize((256, 256), Image.LANCZOS)
    faces = detect_faces(small, "cnn")
    assert len(faces) == 1 and faces[0].detector == "cnn"
    l, t, r, b = faces[0].box
    assert 80 < (l + r) / 2 < 135 and 40 < (t + b) / 2 < 85


@pytest.mark.parametrize("size", [(1, 1), (6, 6), (300, 10), (3, 800), (19, 19), (30, 600)])
def test_the_cnn_never_sees_an_image_too_small_for_a_face(monkeypatch, size):
    """dlib's CNN writes past its buffers on tiny images (valgrind) and the damage crashed later code; images
    whose shorter side, upsampled, is under CNN_MIN_SIDE never reach it (they cannot hold a face it finds)."""
    from micromotion import align as al

    seen = []
    real = al._cnn_detector()

    def spy(arr, upsample):
        seen.append(min(arr.shape[:2]) * 2 ** upsample)
        return real(arr, upsample)

    monkeypatch.setattr(al, "_cnn_detector", lambda: spy)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8))
    assert al.detect_faces(image, "cnn") == [] and al.detect_faces(image, "auto") == []
    assert all(s >= al.CNN_MIN_SIDE for s in seen), seen
    if min(size) * 2 >= al.CNN_MIN_SIDE:  # upsampled once it is big enough: the CNN does run
        assert seen


def test_given_landmarks_skip_detection(astronaut, astronaut_face):
    f = align_face(astronaut, size=64, landmarks=astronaut_face.landmarks)
    assert f.detector == "given" and f.image.size == (64, 64)
    np.testing.assert_allclose(f.quad, astronaut_face.quad)


def test_face_index_out_of_range(astronaut):
    with pytest.raises(InputError, match=r"face index 3 is out of range: [12] face\(s\) found .*choose 0\.\."):
        align_face(astronaut, size=64, face_index=3, detector="hog")


def test_too_small_face(astronaut):
    with pytest.raises(InputError, match=r"too small \(eyes 44 px apart, at least 60 needed\)"):
        align_face(astronaut, size=64, min_eye_distance=60)


def test_no_face_names_the_file(tmp_path):
    path = tmp_path / "wall.png"
    Image.new("RGB", (64, 48), (120, 130, 140)).save(path)
    with pytest.raises(InputError, match=r"wall\.png: no face found \(tried the HOG and CNN detectors\)"):
        align_face(path, size=64)


def test_bad_options(astronaut):
    with pytest.raises(InputError, match="unknown detector 'mtcnn'"):
        align_face(astronaut, detector="mtcnn")
    with pytest.raises(InputError, match="at least 8 pixels"):
        align_face(astronaut, size=4)


# ----------------------------------------------------------------------------------------------------------
# The `align` command


def test_cli_align_writes_crop_and_json(tmp_path, astronaut):
    src = tmp_path / "astronaut.png"
    astronaut.save(src)
    out, meta = tmp_path / "aligned.png", tmp_path / "aligned.json"
    r = CliRunner().invoke(main, ["align", str(src), "-o", str(out), "--size", "128", "--json", str(meta)])
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (128, 128)
    rec = json.loads(meta.read_text())
    assert rec["detector"] == "hog" and np.array(rec["transform"]).shape == (3, 3)
    assert len(rec["landmarks"]) == 68 and rec["source_size"] == [512, 512]


def _assert_one_line_failure(result, *needles):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_no_face(tmp_path):
    src, out = tmp_path / "wall.jpg", tmp_path / "aligned.png"
    Image.new("RGB", (80, 60), (200, 190, 180)).save(src)
    r = CliRunner().invoke(main, ["align", str(src), "-o", str(out)])
    _assert_one_line_failure(r, "wall.jpg", "no face found")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["wall.jpg"]


def test_cli_too_small_face(tmp_path, astronaut):
    src, out = tmp_path / "tiny.png", tmp_path / "aligned.png"
    astronaut.resize((128, 128), Image.LANCZOS).save(src)  # eyes ~11 px apart
    r = CliRunner().invoke(main, ["align", str(src), "-o", str(out)])
    _assert_one_line_failure(r, "tiny.png", "too small")
    assert not out.exists()


@pytest.mark.parametrize("content, needle", [(b"GIF89a but not really", "not an image"),
                                             (None, "truncated or corrupt")])
def test_cli_bad_files(tmp_path, astronaut, content, needle):
    src, out = tmp_path / "photo.jpg", tmp_path / "aligned.png"
    if content is None:
        astronaut.save(src, quality=90)
        content = src.read_bytes()[:5000]
    src.write_bytes(content)
    r = CliRunner().invoke(main, ["align", str(src), "-o", str(out)])
    _assert_one_line_failure(r, "photo.jpg", needle)
    assert not out.exists()


def test_cli_bomb(tmp_path, astronaut):
    src, out = tmp_path / "photo.png", tmp_path / "aligned.png"
    astronaut.save(src)
    r = CliRunner().invoke(main, ["align", str(src), "-o", str(out), "--max-pixels", "10000"])
    _assert_one_line_failure(r, "photo.png", "above the limit")
    assert not out.exists()


# ----------------------------------------------------------------------------------------------------------
# The paper's example images (reference data; see docs/align.md for the detection table)


@pytest.fixture
def paper_examples(reference_dir):
    folder = reference_dir / "paper_examples"
    if not folder.is_dir():
        pytest.skip(f"reference folder {folder} is absent")
    return folder


@pytest.mark.parametrize("name, detector", [("01.jpg", "hog"), ("mona_lisa.jpg", "hog"), ("van_gouh.jpg", "hog"),
                                            ("pope.jpg", "hog"), ("aerith.png", "hog"), ("david.jpg", "hog")])
def test_paper_examples_are_detected(paper_examples, name, detector):
    path = paper_examples / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    f = align_face(path, size=128)
    assert f.detector == detector and f.num_faces == 1
    assert f.image.size == (128, 128)
    # Sanity of the alignment: eyes above the mouth, centred.
    lm = f.landmarks_aligned
    assert lm[36:48, 1].mean() < lm[48:60, 1].mean()
    assert abs(lm[36:48, 0].mean() - 64) < 10
