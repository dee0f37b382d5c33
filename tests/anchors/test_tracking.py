"""micromotion.anchors.tracking: `FaceTracker`'s detect / predict / lose / re-acquire rules, on scripted detections.

The detector and the landmark fitter are replaced by fakes that read a frame's number from its first pixel
and answer from a script, so every rule is checked exactly and fast; tests/anchors/test_video.py runs the
real detectors on real and synthetic clips through `track_face`.
"""
import logging

import numpy as np
import pytest

from micromotion.align import FaceDetection
from micromotion.anchors import tracking
from micromotion.anchors.tracking import HOG_ATTEMPTS_BEFORE_CNN, FaceTrack, FaceTracker, smoothing_window
from micromotion.errors import InputError

A = (10.0, 10.0, 70.0, 70.0)  # a face box (left, top, right, bottom)
B = (70.0, 10.0, 130.0, 70.0)  # next to A: no overlap, centre one face width away
FAR = (10.0, 200.0, 70.0, 260.0)  # far from A


def _landmarks(box) -> np.ndarray:
    """68 points in `box`: the jaw's ends at its corners, eyes at 30 % and 70 % of its width (24 px apart for
    A), the rest at its centre."""
    l, t, r, b = box
    lm = np.tile([(l + r) / 2, t + 0.6 * (b - t)], (68, 1))
    lm[0], lm[16] = [l, t], [r, b]
    lm[36:42] = [l + 0.3 * (r - l), t + 0.4 * (b - t)]
    lm[42:48] = [l + 0.7 * (r - l), t + 0.4 * (b - t)]
    return lm


@pytest.fixture
def scripted(monkeypatch):
    """script(hog={frame: [box or (box, score)]}, cnn={...}) -> the detector calls made, as (frame, detector)."""
    calls = []

    def install(hog=None, cnn=None):
        answers = {"hog": hog or {}, "cnn": cnn or {}}

        def detect_faces(image, detector, min_faces=1):
            k = int(np.asarray(image)[0, 0, 0])
            calls.append((k, detector))
            found = [f if isinstance(f[0], tuple) else (f, 1.0) for f in answers[detector].get(k, [])]
            return [FaceDetection(box=box, score=score, detector=detector) for box, score in found]

        monkeypatch.setattr(tracking, "detect_faces", detect_faces)
        monkeypatch.setattr(tracking, "face_landmarks", lambda image, box: _landmarks(box))
        return calls

    return install


def _run(T, tracker=None, **kw) -> FaceTrack:
    frames = []
    for k in range(T):
        frame = np.zeros((300, 160, 3), dtype=np.uint8)
        frame[0, 0, 0] = k
        frames.append((k, frame))
    indices = np.arange(T)
    return (tracker or FaceTracker(**kw)).track(iter(frames), indices, indices / 10.0, label="clip.mp4",
                                                progress=False)


def test_detects_every_n_frames_and_predicts_in_between(scripted):
    calls = scripted(hog={k: [A] for k in range(12)})
    track = _run(12, detect_every=4)
    assert track.found.all() and track.num_missing == 0
    assert np.flatnonzero(track.detected).tolist() == [0, 4, 8, 11]  # and always on the last frame
    assert [k for k, _ in calls] == [0, 4, 8, 11] and track.detector == "hog"
    assert track.boxes[1] == pytest.approx(A) and track.segment.tolist() == [0] * 12
    assert track.faces_seen == 1 and track.face_index == 0 and track.multi_face_frames == 0
    np.testing.assert_allclose(track.raw, np.stack([_landmarks(A)] * 12))


def test_a_detection_off_the_track_ends_it_and_drops_the_predicted_frames(scripted):
    # the face jumps from A to B after frame 5: frames 5-7 were predicted at A, the detection at 8 is at B
    scripted(hog={k: [A] if k <= 5 else [B] for k in range(12)})
    track = _run(12, detect_every=4)
    assert np.flatnonzero(track.found).tolist() == [0, 1, 2, 3, 4, 9, 10, 11]
    assert np.isnan(track.raw[5:9]).all() and track.boxes[6] is None
    # frame 9: re-acquired as the detection nearest the face last seen (one face width away)
    assert track.boxes[9] == pytest.approx(B) and track.segment.tolist() == [0] * 5 + [-1] * 4 + [1] * 3


def test_a_far_detection_is_not_the_face_last_seen(scripted):
    scripted(hog={k: [A] if k <= 5 else [FAR] for k in range(10)})
    track = _run(10, detect_every=4)
    assert np.flatnonzero(track.found).tolist() == [0, 1, 2, 3, 4]
    assert track.detected[8:].all()  # while lost, HOG looks on every frame


def test_missed_detections_keep_predicting_up_to_detect_every_in_a_row(scripted):
    # the detector sees nothing on frames 4 and 5 (a turned head): predicted, then confirmed on frame 6
    scripted(hog={k: [A] for k in range(12) if k not in (4, 5)})
    track = _run(12, detect_every=4)
    assert track.found.all()
    assert np.flatnonzero(track.detected).tolist() == [0, 4, 5, 6, 10, 11]  # looked again right after a miss
    # three misses in a row with detect_every=2: the track ends, its unconfirmed frames are dropped
    scripted(hog={k: [A] for k in range(8) if k not in (2, 3, 4)})
    track = _run(8, detect_every=2)
    assert np.flatnonzero(track.found).tolist() == [0, 5, 6, 7]


def test_first_sight_takes_the_largest_or_face_index_and_warns_about_several(scripted, caplog):
    weak = ((10.0, 200.0, 150.0, 290.0), 0.1)  # weak detections count only when there is nothing else
    scripted(hog={k: [A, B, weak] for k in range(4)})
    with caplog.at_level(logging.WARNING, logger="micromotion.anchors.tracking"):
        track = _run(4)
    assert track.boxes[0] == pytest.approx(A) and track.faces_seen == 2 and track.multi_face_frames == 2
    assert any("clip.mp4: 2 faces in the frame at 0.00 s; tracking face 0" in r.getMessage() for r in caplog.records)
    assert _run(4, face_index=1).boxes[0] == pytest.approx(B)
    with pytest.raises(InputError, match=r"clip.mp4: no face found in any of the 4 frames looked at \(tried the "
                                         r"HOG detector\).* or a smaller face index \(2 face\(s\) seen"):
        _run(4, face_index=2)
    scripted(hog={k: [weak] for k in range(4)})
    track = _run(4)
    assert track.boxes[0] == pytest.approx(weak[0]) and track.faces_seen == 0


def test_auto_detector_switches_to_the_cnn_when_hog_finds_nothing(scripted):
    calls = scripted(hog={}, cnn={k: [A] for k in range(8)})
    track = _run(8, detect_every=3)
    first = HOG_ATTEMPTS_BEFORE_CNN - 1  # the frame of the last HOG attempt, where the CNN also runs
    assert calls[:first + 2] == [(k, "hog") for k in range(first + 1)] + [(first, "cnn")]
    assert all(d == "cnn" for _, d in calls[first + 2:]) and track.detector == "cnn"
    assert np.flatnonzero(track.found).tolist() == list(range(first, 8))
    with pytest.raises(InputError, match=r"clip.mp4: no face found in any of the 8 frames looked at \(tried the "
                                         r"HOG detector\); use a clip where the face is clearly visible$"):
        _run(8, detector="hog")


def test_too_small_faces_count_as_missing(scripted):
    scripted(hog={k: [A] for k in range(3)})
    assert _run(3, min_eye_distance=24.0).found.all()  # A's eyes are 24 px apart
    with pytest.raises(InputError, match="no face found"):
        _run(3, min_eye_distance=25.0)


def test_a_tracker_runs_again_from_scratch(scripted):
    scripted(hog={k: [A] for k in range(6)})
    tracker = FaceTracker(detect_every=2)
    first, second = _run(6, tracker), _run(6, tracker)
    for key in ("found", "detected", "segment", "raw", "landmarks"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))


def test_settings_are_checked_when_the_tracker_is_made():
    for kw, message in [({"detector": "dlib"}, "unknown detector 'dlib'; choose one of: auto, hog, cnn"),
                        ({"face_index": -1}, "face index must be 0 or more"),
                        ({"face_index": True}, "face index must be 0 or more"),
                        ({"detect_every": 0}, "detect_every must be >= 1"),
                        ({"detect_size": 32}, "detect_size must be at least 64 pixels")]:
        with pytest.raises(InputError, match=message):
            FaceTracker(**kw)


def test_smoothing_window_is_odd_and_at_least_three_frames():
    assert smoothing_window(0, 25.0) == 1
    assert smoothing_window(0.3, 23.976) == 7
    assert smoothing_window(0.3, 20.0) == 7  # 6 frames -> the next odd number
    assert smoothing_window(0.05, 10.0) == 3
