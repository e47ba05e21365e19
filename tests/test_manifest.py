"""`mer data prepare`: manifests of the real samples, bad input, caching, and the CLI contract."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_lib import cli, media
from mer_lib.data import manifest as mf
from mer_lib.errors import MerError


def test_prepare_real_ravdess_audio(real_data, tmp_path, capsys):
    assert cli.main(["data", "prepare", "ravdess", str(real_data / "ravdess" / "audio"), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "manifest.csv")
    assert len(table) == 120 and (table["status"] == "ok").all()
    assert table["actor"].nunique() == 2 and table["emotion"].nunique() == 8
    assert not table["has_video"].any() and table["has_audio"].all() and table["video_path"].isna().all()
    assert (table["sample_rate"] == 48000).all() and (table["channels"] == 2).sum() == 2
    stereo = table.loc[table["channels"] == 2, "audio_path"].iloc[0]
    audio, _ = media.read_audio(stereo)
    assert audio.ndim == 1  # downmixed on reading
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert folds["fold"].nunique() == 2 and sorted(folds["actor"]) == [1, 2]
    assert "2 actors in 2 subject-disjoint folds" in capsys.readouterr().out


def test_prepare_real_cremad(real_data, tmp_path):
    table = mf.prepare("cremad", real_data / "cremad", tmp_path, quiet=True)
    assert len(table) == 18 and table["id"].is_unique
    flv = table[table["video_path"].notna()]
    assert len(flv) == 6 and flv["has_video"].all() and flv["has_audio"].all()
    assert (flv["fps"].round(2) == 29.97).all()
    assert table.loc[table["id"] == "1001_DFA_ANG_XX", "audio_path"].iloc[0].endswith(".wav")
    assert set(table["sex"].dropna()) <= {"male", "female"} and table["human_av_vote"].notna().all()


def test_bad_input_is_recorded_and_rest_written(tmp_path):
    root = tmp_path / "raw" / "Actor_01"
    root.mkdir(parents=True)
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)
    sf.write(root / "03-01-01-01-01-01-01.wav", tone, 16000)
    sf.write(root / "03-01-03-01-01-01-01.wav", np.zeros(0), 16000)  # no samples
    (root / "03-01-04-01-01-01-01.wav").write_bytes(b"RIFF\x00\x00junk")  # corrupt
    (root / "03-01-05-01-01-01-01.mp4").write_bytes(np.random.default_rng(0).bytes(2000))  # not media
    sf.write(root / "my_recording.wav", tone, 16000)  # unknown name
    sf.write(tmp_path / "raw" / "03-01-01-01-01-01-02.wav", tone, 16000)
    table = mf.prepare("ravdess", tmp_path / "raw", tmp_path / "out", quiet=True)
    reasons = dict(zip(table["id"], table["reason"].fillna("")))
    assert len(table) == 6 and (table["status"] == "ok").sum() == 2
    assert "not a RAVDESS name" in reasons["my_recording"]
    for clip in ["01-03-01-01-01-01", "01-04-01-01-01-01", "01-05-01-01-01-01"]:
        assert reasons[clip], clip
    assert (tmp_path / "out" / "folds.csv").is_file()


def test_prepare_is_cached_and_refreshed(tmp_path, capsys):
    root = tmp_path / "raw"
    root.mkdir()
    for actor in (1, 2):
        sf.write(root / f"03-01-01-01-01-01-{actor:02d}.wav", np.zeros(8000), 16000)
    mf.prepare("ravdess", root, tmp_path / "out")
    capsys.readouterr()
    mf.prepare("ravdess", root, tmp_path / "out")
    assert "up to date" in capsys.readouterr().out
    sf.write(root / "03-01-02-01-01-01-02.wav", np.zeros(8000), 16000)
    assert len(mf.prepare("ravdess", root, tmp_path / "out", quiet=True)) == 3


def test_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["data", "prepare", "ravdess", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mer: error:") and "not found" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(MerError, match="no ravdess media"):
        mf.prepare("ravdess", tmp_path / "empty", tmp_path / "out")
    with pytest.raises(MerError, match="run `mer data prepare"):
        mf.load_manifest(tmp_path / "empty")


def test_symlinked_actor_folders_are_scanned(tmp_path):
    """A dataset assembled from symlinked Actor_XX folders (e.g. two downloads in one place) is found whole."""
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)
    for actor in (1, 2):
        real = tmp_path / "elsewhere" / f"Actor_{actor:02d}"
        real.mkdir(parents=True)
        sf.write(real / f"03-01-01-01-01-01-{actor:02d}.wav", tone, 16000)
        (tmp_path / "raw").mkdir(exist_ok=True)
        (tmp_path / "raw" / real.name).symlink_to(real, target_is_directory=True)
    table = mf.prepare("ravdess", tmp_path / "raw", tmp_path / "out", quiet=True)
    assert sorted(table["actor"]) == [1, 2] and (table["status"] == "ok").all()
