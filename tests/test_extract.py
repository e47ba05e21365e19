"""`mer extract`: stores from real media, failures recorded, interrupted runs resumed."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from mer_lib import cli
from mer_lib.data import manifest as mf
from mer_lib.errors import MerError
from mer_lib.features import extract, store


@pytest.fixture()
def cremad_dir(real_data, tmp_path):
    """The 6 real CREMA-D FLV clips (video with audio), prepared."""
    root = tmp_path / "raw" / "VideoFlash"
    shutil.copytree(real_data / "cremad" / "VideoFlash", root)
    mf.prepare("cremad", tmp_path / "raw", tmp_path / "data", quiet=True)
    return tmp_path / "data"


def test_real_cremad_faces_and_audio(cremad_dir):
    paths = extract.extract(cremad_dir, audio="egemaps", video="fer_minixception", window=0.5, count=6, workers=1)
    video = store.load_store(cremad_dir, "video")
    audio = store.load_store(cremad_dir, "audio")
    assert paths["video"].is_file() and video.X.shape == (6, 6, 128) and not video.meta["failures"]
    assert audio.X.shape == (6, 6, 88) and audio.meta["dim"] == 88
    present = video.mask & audio.mask
    assert present[:, :4].all()  # the clips last 2-3 s: at least 4 windows of 0.5 s
    norms = np.linalg.norm(video.X[video.mask], axis=-1)
    assert np.allclose(norms, 1, atol=1e-5) and (video.X[~video.mask] == 0).all()


def test_real_ravdess_audio_window_counts(real_data, tmp_path):
    root = tmp_path / "raw" / "Actor_01"
    root.mkdir(parents=True)
    for wav in sorted((real_data / "ravdess" / "audio" / "Actor_01").glob("*.wav"))[:4]:
        shutil.copy(wav, root)
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)
    extract.extract(tmp_path / "data", audio="logmel", video=None, window=0.25, count=16, workers=1)
    audio = store.load_store(tmp_path / "data", "audio", window=0.25)
    durations = mf.load_manifest(tmp_path / "data").set_index("id").loc[audio.ids, "duration"].to_numpy()
    assert audio.X.shape == (4, 16, 128)
    expected = np.minimum(16, np.floor(durations / 0.25 + 0.5)).astype(int)
    assert np.array_equal(audio.mask.sum(1), expected)


def test_corrupt_clip_recorded_and_rerun_resumes(cremad_dir, monkeypatch, capsys):
    table = mf.load_manifest(cremad_dir)
    broken = table.iloc[2]["audio_path"]
    with open(broken, "r+b") as handle:  # damage one clip after prepare, as a disk error would
        handle.truncate(600)
    extract.extract(cremad_dir, audio="logmel", video=None, workers=1)
    audio = store.load_store(cremad_dir, "audio")
    assert len(audio.ids) == 5 and list(audio.meta["failures"]) == [table.iloc[2]["id"]]
    capsys.readouterr()
    calls = []
    monkeypatch.setattr(extract, "_work", lambda clip, *a: calls.append(clip["id"]))
    assert cli.main(["extract", str(cremad_dir), "--video", "none", "--audio", "logmel", "--workers", "1"]) == 0
    assert calls == [] and "up to date" in capsys.readouterr().out


def test_interrupted_run_keeps_finished_clips(cremad_dir, monkeypatch):
    real_work, done = extract._work, []

    def crash_after_two(clip, *args):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(clip["id"])
        return real_work(clip, *args)

    monkeypatch.setattr(extract, "_work", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract.extract(cremad_dir, audio="logmel", video=None, workers=1)
    monkeypatch.setattr(extract, "_work", lambda clip, *a: (done.append(clip["id"]), real_work(clip, *a))[1])
    extract.extract(cremad_dir, audio="logmel", video=None, workers=1)
    assert len(done) == 6 and len(set(done)) == 6  # the two finished clips were not redone
    assert len(store.load_store(cremad_dir, "audio").ids) == 6


def test_video_without_face_is_a_recorded_failure(tmp_path):
    from mer_lib import media

    grey = np.full((20, 64, 64, 3), 128, np.uint8)
    for actor in (1, 2):
        media.write_av(tmp_path / "raw" / f"02-01-03-01-01-01-{actor:02d}.mp4", grey, 10)
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)
    with pytest.raises(MerError, match="every clip failed.*no face found"):
        extract.extract(tmp_path / "data", audio=None, video="landmarks", workers=1)
    with pytest.raises(MerError, match="nothing to extract"):
        extract.extract(tmp_path / "data", audio=None, video=None)
    with pytest.raises(MerError, match="unknown video extractor"):
        extract.extract(tmp_path / "data", audio=None, video="resnet", workers=1)
