"""The embedded corpus: RAVDESS names, determinism, a face dlib finds, emotional prosody, resumable writing."""
from __future__ import annotations

from collections import Counter

import dlib
import numpy as np
import pytest

from mer_lib import media
from mer_lib.data import synthetic
from mer_lib.data.ravdess import CLASSES, parse_name
from mer_lib.data.synthetic import Clip, performance, plan, render_audio, render_frames, synthesize
from mer_lib.errors import MerError

SHORT = 1.2   # seconds: enough frames for the checks, fast to render


def _args(path) -> tuple:
    """render_* arguments (emotion, actor, statement, repetition) of a corpus file."""
    name = parse_name(path.name)
    return name.emotion, name.actor, int(name.statement), name.repetition


def test_plan_names_parse_as_ravdess():
    clips = plan(6)
    assert len(clips) == 192 and len({c.name for c in clips}) == 192
    parsed = [parse_name(c.name) for c in clips]
    assert {(p.modality, p.vocal_channel) for p in parsed} == {("audio-video", "speech")}
    assert Counter(p.emotion for p in parsed) == {e: 24 for e in CLASSES}
    assert {p.intensity for p in parsed if p.emotion == "neutral"} == {"normal"}
    for emotion in CLASSES[1:]:
        assert Counter(p.intensity for p in parsed if p.emotion == emotion) == {"normal": 12, "strong": 12}
    assert {p.statement for p in parsed} == {"01", "02"} and {p.repetition for p in parsed} == {1, 2}
    assert sorted({p.actor for p in parsed}) == [1, 2, 3, 4, 5, 6]
    for clip, p in zip(clips, parsed):
        assert clip.relpath == f"Actor_{p.actor:02d}/{clip.name}"
        assert (p.emotion, p.actor, int(p.statement), p.repetition) == (clip.emotion, clip.actor, clip.statement,
                                                                        clip.repetition)
    assert Clip(3, "angry", 2, 1).name == "01-01-05-02-02-01-03.mp4"       # statements alternate intensity
    assert Clip(3, "angry", 1, 2).name == "01-01-05-01-01-02-03.mp4"
    assert Clip(12, "neutral", 2, 2).relpath == "Actor_12/01-01-01-01-02-02-12.mp4"
    assert synthetic.actor(1).sex == "male" and synthetic.actor(2).sex == "female"


def test_mirror_landmark_is_an_involution_with_the_known_pairs():
    assert [synthetic.mirror_landmark(i) for i in (0, 8, 17, 21, 31, 33, 36, 39, 40, 48, 51, 55, 60, 65, 66)] == \
        [16, 8, 26, 22, 35, 33, 45, 42, 47, 54, 51, 59, 64, 67, 66]
    assert all(synthetic.mirror_landmark(synthetic.mirror_landmark(i)) == i for i in range(68))
    with pytest.raises(MerError, match="0..67"):
        synthetic.mirror_landmark(68)


def test_profile_rises_to_the_apex_and_strong_beats_normal():
    clip = Clip(2, "happy", 1, 1)
    act, _, _ = performance(clip, duration=3.0)
    t = np.linspace(0, 3.0, 301)
    profile = act.profile(t)
    assert profile[0] == 0 and profile[-1] == 0
    assert abs(t[np.argmax(profile)] - act.apex) <= 0.01 and np.isclose(profile.max(), act.amplitude, rtol=1e-3)
    assert 0.9 <= act.apex <= 2.1                                  # mid-clip, with jitter
    speech = act.articulation(t)
    assert speech[t < synthetic.SILENCE_S].max() == 0 and speech[t > 3.0 - synthetic.SILENCE_S].max() == 0
    # Within each actor and emotion, strong clips are performed more strongly than normal ones.
    for actor in range(1, 7):
        for emotion in CLASSES[1:]:
            by_intensity = {}
            for statement in (1, 2):
                clip = Clip(actor, emotion, statement, 1)
                by_intensity[clip.intensity] = performance(clip)[0].amplitude
            assert by_intensity[2] > by_intensity[1]


def test_rendering_is_deterministic_by_seed():
    frames = render_frames("fearful", 3, 2, 1, seed=5, duration=SHORT)
    audio = render_audio("fearful", 3, 2, 1, seed=5, duration=SHORT)
    assert frames.shape == (30, 240, 320, 3) and frames.dtype == np.uint8
    assert audio.shape == (int(SHORT * 48000),) and audio.dtype == np.float32
    np.testing.assert_array_equal(frames, render_frames("fearful", 3, 2, 1, seed=5, duration=SHORT))
    np.testing.assert_array_equal(audio, render_audio("fearful", 3, 2, 1, seed=5, duration=SHORT))
    assert np.abs(frames.astype(int) - render_frames("fearful", 3, 2, 1, seed=6, duration=SHORT)).mean() > 1
    assert not np.array_equal(audio, render_audio("fearful", 3, 2, 1, seed=6, duration=SHORT))


def test_larger_frames():
    frames = render_frames("surprised", 4, size=(640, 480), duration=SHORT, fps=10)
    assert frames.shape == (12, 480, 640, 3)


def test_dlib_finds_the_face_in_nearly_every_frame():
    detector = dlib.get_frontal_face_detector()
    found = total = 0
    for actor, emotion in zip(range(1, 9), ["neutral", "surprised", "fearful", "happy", "angry", "sad", "disgust",
                                             "calm"]):
        frames = render_frames(emotion, actor, statement=1 + actor % 2, duration=2.0)
        sample = frames[::4]
        found += sum(len(detector(frame, 0)) > 0 for frame in sample)
        total += len(sample)
    assert found >= 0.95 * total, f"dlib found the face in {found} of {total} frames"


def _face(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The face box of a frame, averaged over 4x4 blocks (sensor noise and sub-pixel motion mostly averaged out)."""
    x0, y0, x1, y1 = box
    face = frame[y0:y1, x0:x1].astype(np.float32)
    h, w = face.shape[0] // 4 * 4, face.shape[1] // 4 * 4
    return face[:h, :w].reshape(h // 4, 4, w // 4, 4, 3).mean((1, 3))


@pytest.mark.parametrize("actor", [1, 4])
def test_expressions_differ_most_at_the_apex(actor):
    points = synthetic.rest_landmarks(actor)
    box = (*points.min(0).astype(int), *points.max(0).astype(int))
    faces = {}
    for emotion in ("happy", "sad", "neutral", "calm", "surprised"):
        frames = render_frames(emotion, actor, 1, 1, duration=3.0)
        apex = int(round(performance(Clip(actor, emotion, 1, 1))[0].apex * synthetic.FPS))
        faces[emotion] = _face(frames[0], box), _face(frames[apex], box)
    def difference(a, b, i):
        return float(np.abs(faces[a][i] - faces[b][i]).mean())
    assert difference("happy", "sad", 1) > difference("happy", "sad", 0)
    # Calm is a faint neutral; surprise is far from it (the classes overlap by design, not all alike).
    assert difference("neutral", "calm", 1) < difference("neutral", "surprised", 1)


def _f0_median(audio: np.ndarray, sample_rate: int = 48000) -> float:
    """Median autocorrelation F0 (60-500 Hz) over the loud 40 ms frames."""
    size = int(0.04 * sample_rate)
    frames = audio[:len(audio) // size * size].reshape(-1, size)
    loud = frames[np.sqrt((frames ** 2).mean(1)) > 0.3 * np.sqrt((frames ** 2).mean(1)).max()]
    lags = np.arange(sample_rate // 500, sample_rate // 60)
    estimates = []
    for frame in loud:
        frame = frame - frame.mean()
        corr = np.correlate(frame, frame, "full")[size - 1:]
        estimates.append(sample_rate / lags[np.argmax(corr[lags])])
    return float(np.median(estimates))


def _active_rms(audio: np.ndarray) -> float:
    """RMS over the 20 ms frames within 20 dB of the loudest (the speech, not the silences)."""
    frames = audio[:len(audio) // 960 * 960].reshape(-1, 960)
    rms = np.sqrt((frames ** 2).mean(1))
    return float(np.sqrt((rms[rms > 0.1 * rms.max()] ** 2).mean()))


@pytest.mark.parametrize("actor", [1, 2])
def test_prosody_follows_the_emotion(actor):
    angry, sad = render_audio("angry", actor, 1, 1), render_audio("sad", actor, 1, 1)
    assert _f0_median(angry) > 1.05 * _f0_median(sad)
    assert _active_rms(angry) > 1.2 * _active_rms(sad)
    assert performance(Clip(actor, "angry", 1, 1))[0].speech_rate > performance(Clip(actor, "sad", 1, 1))[0].speech_rate
    # Female voices are higher; and real recordings start and end with silence.
    if actor == 2:
        assert _f0_median(render_audio("neutral", 2)) > 1.4 * _f0_median(render_audio("neutral", 1))
    edge = int(0.25 * 48000)
    assert np.abs(angry[:edge]).max() < 2e-3 and np.abs(angry[-edge:]).max() < 2e-3
    assert 0.05 < np.abs(angry).max() <= 1.0


def test_synthesize_writes_resumes_and_does_not_depend_on_workers(tmp_path):
    serial = synthesize(tmp_path / "serial", actors=1, duration=SHORT, limit=2, workers=1)
    parallel = synthesize(tmp_path / "parallel", actors=1, duration=SHORT, limit=2, workers=2)
    assert [p.relative_to(tmp_path / "serial") for p in serial] == [p.relative_to(tmp_path / "parallel")
                                                                    for p in parallel]
    assert [p.name for p in serial] == [c.name for c in plan(1)[:2]]
    for one, other in zip(serial, parallel):   # same content, whichever process rendered it
        np.testing.assert_array_equal(media.read_audio(one)[0], media.read_audio(other)[0])
        frames, rendered = media.read_video(one)[0], render_frames(*_args(one), duration=SHORT)
        assert frames.shape == rendered.shape
        assert np.abs(frames.astype(np.float32) - rendered).mean() < 3           # H.264 is lossy, not far off
        assert np.abs(frames.astype(np.float32) - media.read_video(other)[0]).mean() < 1
    info = media.probe(serial[0])
    assert (info.has_video, info.has_audio, info.width, info.height, info.fps, info.sample_rate) == \
        (True, True, 320, 240, 25, 48000)
    record = synthetic.read_corpus_record(tmp_path / "serial")
    assert record["parameters"]["actors"] == 1 and record["generator_version"] == synthetic.GENERATOR_VERSION

    mtimes = [p.stat().st_mtime_ns for p in serial]
    again = synthesize(tmp_path / "serial", actors=1, duration=SHORT, limit=3, workers=1)
    assert [p.stat().st_mtime_ns for p in again[:2]] == mtimes and again[2].exists()
    assert sorted(p.name for p in (tmp_path / "serial" / "Actor_01").iterdir()) == sorted(p.name for p in again)
    with pytest.raises(MerError, match="other parameters"):
        synthesize(tmp_path / "serial", actors=1, seed=1, duration=SHORT, limit=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"actors": 0}, "actors must be an integer from 1 to 24"),
    ({"actors": 25}, "actors must be an integer from 1 to 24"),
    ({"actors": "6"}, "actors must be an integer"),
    ({"size": (321, 240)}, "must be even"),
    ({"size": (320, 120)}, "at least 200 px tall"),
    ({"size": (100, 400)}, "3/4 as wide"),
    ({"size": "320x240"}, "pair of integers"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"duration": 0.5}, "duration must be from"),
    ({"workers": 0}, r"workers \(--workers\) must be an integer >= 1"),
    ({"limit": -1}, "limit must be"),
])
def test_bad_corpus_arguments(tmp_path, kwargs, message):
    with pytest.raises(MerError, match=message):
        synthesize(tmp_path / "corpus", **kwargs)
    assert not (tmp_path / "corpus").exists()


def test_bad_render_arguments():
    with pytest.raises(MerError, match="unknown emotion 'bored'"):
        render_frames("bored", 1)
    with pytest.raises(MerError, match="actor must be an integer from 1 to 24"):
        render_audio("happy", 25)
    with pytest.raises(MerError, match="statement and repetition must be 1 or 2"):
        render_audio("happy", 1, statement=3)
    with pytest.raises(MerError, match="fps"):
        render_frames("happy", 1, fps=0)
    with pytest.raises(MerError, match="sample_rate"):
        render_audio("happy", 1, sample_rate=8000)
