"""Face detection, landmark tracking and aligned chips on real CREMA-D faces (dlib HOG + 68-point ERT)."""
from __future__ import annotations

import dlib
import numpy as np
import pytest

from mer_lib import media
from mer_lib.data import synthetic
from mer_lib.errors import MerError
from mer_lib.features import faces
from mer_lib.features.faces import FaceTracker

CLIPS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


@pytest.fixture(scope="module")
def tracker() -> FaceTracker:
    return FaceTracker(chip_size=96)


@pytest.fixture(scope="module")
def clips(real_data) -> dict[str, np.ndarray]:
    """The six CREMA-D clips of actor 1001 (480 x 360 FLV), decoded to RGB frames."""
    folder = real_data / "cremad" / "VideoFlash"
    return {emotion: media.read_video(folder / f"1001_DFA_{emotion}_XX.flv")[0] for emotion in CLIPS}


def every_frame_reference(tracker: FaceTracker, frames: np.ndarray, chip_size: int = 96):
    """The slow reference: full-resolution HOG detection on every frame, landmarks and chip in its box."""
    landmarks, centres, chips = [], [], []
    for frame in frames:
        frame = np.ascontiguousarray(frame)
        (box,) = tracker.detector(frame, 0)
        shape = tracker.predictor(frame, box)
        landmarks.append([(p.x, p.y) for p in shape.parts()])
        centres.append(((box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2))
        chips.append(dlib.get_face_chip(frame, shape, size=chip_size, padding=0.25))
    return np.array(landmarks, float), np.array(centres), np.array(chips)


def assert_matches_reference(tracker: FaceTracker, frames: np.ndarray) -> None:
    track = tracker.track(frames)
    landmarks, centres, chips = every_frame_reference(tracker, frames)
    assert track.found.all()
    error = np.linalg.norm(track.landmarks - landmarks, axis=2).mean(axis=1)  # per frame, pixels
    assert error.mean() < 1.5 and error.max() < 3.0, error
    box_centres = (track.boxes[:, :2] + track.boxes[:, 2:]) / 2
    width = track.boxes[:, 2] - track.boxes[:, 0]
    assert (np.linalg.norm(box_centres - centres, axis=1) < 0.12 * width).all()
    assert np.abs(track.chips.astype(float) - chips).mean() < 6.0  # grey levels


def test_a_face_is_found_in_every_frame_of_every_clip(tracker, clips):
    for emotion, frames in clips.items():
        track = tracker.track(frames)
        n = len(frames)
        assert track.found.all(), emotion
        assert track.boxes.shape == (n, 4) and track.boxes.dtype == np.float32
        assert track.landmarks.shape == (n, 68, 2) and track.landmarks.dtype == np.float32
        assert track.chips.shape == (n, 96, 96, 3) and track.chips.dtype == np.uint8
        # landmarks lie inside the frame and inside their box (grown by a quarter for the chin)
        assert (track.landmarks >= 0).all() and (track.landmarks[..., 0] < 480).all()
        grow = 0.25 * (track.boxes[:, 2:] - track.boxes[:, :2])[:, None]
        assert (track.landmarks > track.boxes[:, None, :2] - grow).all()
        assert (track.landmarks < track.boxes[:, None, 2:] + grow).all()
        assert track.chips.std() > 20  # a textured face, not an empty crop


@pytest.mark.parametrize("emotion", ["ANG", "HAP"])
def test_tracked_faces_match_every_frame_full_resolution_detection(tracker, clips, emotion):
    assert_matches_reference(tracker, clips[emotion])


def test_tracking_follows_a_moving_face_and_recovers_after_a_cut(tracker, clips):
    """A 400 x 300 window sliding 3 px per frame over the clip, then a jump of 60 px (a cut)."""
    frames = clips["FEA"][:30]
    offsets = [(3 * i, 2 * i) for i in range(20)] + [(60 - 3 * i, 50) for i in range(10)]
    moving = np.stack([frame[y:y + 300, x:x + 400] for frame, (x, y) in zip(frames, offsets)])
    assert_matches_reference(tracker, moving)


def test_detection_scale_and_interval_do_not_change_the_landmarks(clips):
    frames = clips["SAD"][:25]
    coarse = FaceTracker(detect_every=25, detect_max_side=240).track(frames)
    fine = FaceTracker(detect_every=1, detect_max_side=480).track(frames)
    assert coarse.found.all() and fine.found.all()
    assert np.linalg.norm(coarse.landmarks - fine.landmarks, axis=2).mean() < 1.5


def test_blank_and_noise_videos_have_no_face(tracker):
    rng = np.random.default_rng(0)
    for frames in (np.full((12, 360, 480, 3), 128, np.uint8), rng.integers(0, 256, (12, 360, 480, 3), np.uint8)):
        track = tracker.track(frames)
        assert not track.found.any()
        assert not track.chips.any() and not track.landmarks.any()  # nothing invented, flagged not found


def test_a_face_that_leaves_is_dropped_and_its_last_track_kept(clips):
    tracker = FaceTracker(detect_every=5)
    face = clips["NEU"][:10]
    frames = np.concatenate([face, np.full((12, *face.shape[1:]), 90, np.uint8)])
    track = tracker.track(frames)
    assert track.found[:10].all()
    assert not track.found[10 + tracker.detect_every:].any()  # noticed by the next confirmation at the latest
    last = np.flatnonzero(track.found)[-1]
    np.testing.assert_array_equal(track.landmarks[-1], track.landmarks[last])
    np.testing.assert_array_equal(track.chips[-1], track.chips[last])


def test_bad_frames_and_settings_raise_mer_error(tracker):
    with pytest.raises(MerError, match=r"RGB frames \(N, H, W, 3\) or luma frames \(N, H, W\), got uint8 \(4, 3"):
        tracker.track(np.zeros((4, 32, 32, 4), np.uint8))
    with pytest.raises(MerError, match="got float32"):
        tracker.track(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(MerError, match="bad face tracker settings"):
        FaceTracker(detect_every=0)
    empty = tracker.track(np.zeros((0, 32, 32, 3), np.uint8))
    assert empty.found.shape == (0,) and empty.chips.shape == (0, 96, 96, 3)
    assert tracker.track(np.zeros((0, 32, 32), np.uint8)).chips.shape == (0, 96, 96)


def test_luma_frames_give_the_faces_of_the_rgb_frames(tracker, clips, real_data):
    """Tracked in the luma the FLV's frames hold (what mer extract reads for grey extractors): the same
    landmarks and, stretched to full range, the grey of the RGB chips."""
    path = real_data / "cremad" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
    luma = tracker.track(media.read_video(path, colour="luma")[0])
    rgb = tracker.track(clips["HAP"])
    assert luma.found.all() and luma.chips.shape == rgb.chips.shape[:3]
    error = np.linalg.norm(luma.landmarks - rgb.landmarks, axis=2).mean(axis=1)  # per frame, pixels
    assert error.mean() < 0.8 and error.max() < 2.0, error
    grey = rgb.chips @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luma.chips - grey).mean() < 3.5  # grey levels, the landmarks' small shifts included


@pytest.fixture(scope="module")
def two_faces() -> np.ndarray:
    """1.2 s of two synthetic actors side by side: a larger face on the left (x about 160), a smaller one
    on the right."""
    left = synthetic.render_frames("happy", 1, size=(320, 240), duration=1.2)
    right = synthetic.render_frames("sad", 2, size=(266, 200), duration=1.2)
    return np.concatenate([left, np.pad(right, ((0, 0), (20, 20), (0, 0), (0, 0)), constant_values=90)], axis=2)


def _centres(faces: list) -> list:
    return [None if face is None else float((face[0][0] + face[0][2]) / 2) for face in faces]


@pytest.mark.parametrize("face, side", [("largest", "left"), ("left", "left"), ("right", "right")])
def test_one_of_two_faces_is_followed_as_chosen(two_faces, face, side):
    tracker = FaceTracker(face=face, detect_max_side=640)
    track = tracker.track(two_faces)
    centres = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    assert track.found.all() and tracker.most_faces == 2
    assert ((centres < 320) if side == "left" else (centres > 320)).all()
    assert np.allclose(tracker.first_box, track.boxes[0])


def test_a_followed_face_that_leaves_is_not_swapped_for_another(two_faces):
    away = two_faces.copy()
    away[10:20, :, :320] = 90  # the followed (larger) face leaves for 10 frames; the other stays
    tracker = FaceTracker(detect_every=5, detect_max_side=640)
    tracker.reset()
    centres = _centres([tracker.update(frame) for frame in away])
    assert all(c is not None and c < 320 for c in centres[:10] + centres[20:])
    assert centres[10:20] == [None] * 10



def test_a_large_face_is_confirmed_in_the_crop_around_it():
    """At 1280 x 720 the synthetic face is about 370 px wide: a confirmation searches the crop around the
    tracked box, shrunk below the coarse detections' scale. It sees the face wherever a whole-frame coarse
    detection does, and no face in a blank frame or beside the face."""
    frames = synthetic.render_frames("angry", 1, size=(1280, 720), fps=10, duration=1.0)
    tracker = FaceTracker(detect_max_side=640)
    boxes = [tracker.update(frame)[0] for frame in frames]
    assert (boxes[0][2] - boxes[0][0]) * 640 / 1280 > faces.CONFIRM_FACE_SIDE
    for frame, box in zip(frames, boxes):
        assert any(faces._contains(box, faces._centre(found)) for found in tracker.detect(frame, 640))
        assert tracker._confirmed(frame, box)
    assert not tracker._confirmed(np.full_like(frames[0], 90), boxes[-1])
    assert not tracker._confirmed(frames[-1], boxes[-1] + [400, 0, 400, 0])
