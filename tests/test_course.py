"""The audio-only path of the course: RAVDESS's audio-only release has no video, and every notebook
must still run its audio parts (mer_lib.course picks the modalities, sections and runs that fit).

The notebooks themselves run under nbval on the embedded corpus; here the library calls they make
run on a tiny audio-only RAVDESS-named folder (6 actors x 8 emotions, tones whose pitch follows the
emotion), with the log-mel statistics extractor and a one-epoch model.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_lib import analysis, course, grids, plots, run_folder
from mer_lib.analysis import entropy, noise, temporal
from mer_lib.config import make_config
from mer_lib.data import manifest as mf
from mer_lib.errors import MerError
from mer_lib.features import extract, store

RATE, WINDOW, WINDOWS = 16000, 0.5, 3
TINY = {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 32, "epochs": 1, "device": "cpu"}


def write_release(root) -> None:
    """Audio-only RAVDESS files (modality 03): Actor_XX/03-01-EE-01-01-01-XX.wav, 1.4 s of a tone."""
    time = np.arange(int(1.4 * RATE)) / RATE
    for actor in range(1, 7):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in range(1, 9):
            tone = 0.3 * np.sin(2 * np.pi * (120 + 40 * emotion + 5 * actor) * time)
            sf.write(folder / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav", tone.astype(np.float32), RATE)


@pytest.fixture(scope="module")
def audio_only(tmp_path_factory):
    """A prepared audio-only data folder with its log-mel store (3 folds of 2 actors)."""
    tmp = tmp_path_factory.mktemp("audio_only")
    write_release(tmp / "raw")
    mf.prepare("ravdess", tmp / "raw", tmp / "data", workers=1, quiet=True)
    extract.extract(tmp / "data", audio="logmel", video="none", window=WINDOW, count=WINDOWS, workers=1)
    return tmp / "data"


@pytest.fixture(scope="module")
def mater_runs(audio_only, tmp_path_factory):
    """Notebook 03's grid on audio-only data: the audio attention model and baseline, fold 0 only."""
    grid = course.grid_for(grids.MATER_ABLATIONS, course.modalities(audio_only, "logmel", "none"))
    return grids.cross_validate_grid(audio_only, tmp_path_factory.mktemp("runs"), grid, folds="0", audio="logmel",
                                     video="none", window=WINDOW, windows=WINDOWS, **TINY)


def test_modalities_follow_the_data_and_the_extractors(audio_only, tmp_path):
    assert course.modalities(audio_only, "logmel", "fer_minixception") == "a"  # no clip has video
    assert course.modalities(audio_only, "logmel", "none") == "a"
    manifest = mf.load_manifest(audio_only)
    artifacts_dir = tmp_path / "with_video"
    artifacts_dir.mkdir()
    manifest.assign(has_video=True).to_csv(artifacts_dir / "manifest.csv", index=False)
    assert course.modalities(artifacts_dir, "logmel", "fer_minixception") == "av"
    assert course.modalities(artifacts_dir, "logmel", None) == "a"
    assert course.modalities(artifacts_dir, "none", "fer_minixception") == "v"
    with pytest.raises(MerError, match="no usable clip has a modality"):
        course.modalities(audio_only, "none", "fer_minixception")


def test_setup_gives_a_notebook_its_data_runs_modalities_and_classes(audio_only, tmp_path, capsys, monkeypatch):
    raw = audio_only.parent / "raw"
    setup = course.setup("ravdess", raw, audio_only, "logmel", "none", WINDOW, WINDOWS, tmp_path / "runs")
    assert setup == (audio_only, tmp_path / "runs" / "ravdess", "a", mf.classes("ravdess"))
    assert "synthetic corpus" not in capsys.readouterr().out  # real data is not called a fixture
    monkeypatch.setattr(extract, "extract", lambda *a, **k: pytest.fail("nothing to extract without windows"))
    data_dir, runs_dir, modalities, _ = course.setup("ravdess", raw, audio_only, "logmel", "none")
    assert (data_dir, runs_dir, modalities) == (audio_only, None, "a")


def test_needs_and_within_say_in_one_line_what_they_skip(capsys):
    assert course.needs("a", "av", "anything") and course.needs("av", "av", "anything")
    assert capsys.readouterr().out == ""
    assert not course.needs("v", "a", "face tracking")
    assert capsys.readouterr().out == "skipped: face tracking (needs video; this data has audio only)\n"
    assert course.within(noise.NOISE_IN, "a", "noise in") == ["a"]
    assert capsys.readouterr().out == "skipped noise in: video, audio and video (this data has audio only)\n"
    assert course.within(["a", "v", "av"], "av") == ["a", "v", "av"]
    assert capsys.readouterr().out == ""


def test_grid_for_keeps_the_runs_one_modality_can_train(capsys):
    assert course.grid_for(grids.FUSION_COMPARISON, "av") == grids.FUSION_COMPARISON
    names = [grids.run_name(grids.grid_config(e)) for e in course.grid_for(grids.FUSION_COMPARISON, "a")]
    assert names == ["cross_attention-a-triplet", "mater-a", "lstm-a"]  # AT alone, and the late-fusion models
    assert capsys.readouterr().out.startswith("skipped 7 of 10 runs that need audio and video (cross_attention v "
                                              "preset=mocanu loss=triplet, ")
    mater = [grids.run_name(make_config("fast", **e)) for e in course.grid_for(grids.MATER_ABLATIONS, "a")]
    assert mater == ["mater-a", "mater-a-nope-nomhsa"]


def test_extract_skips_video_none_and_reuses_the_audio_store_whatever_the_frame_step(audio_only, capsys):
    paths = extract.extract(audio_only, audio="logmel", video="none", window=WINDOW, count=WINDOWS, frame_step=2)
    assert set(paths) == {"audio"} and "is up to date" in capsys.readouterr().out
    assert [s["name"] for s in store.list_stores(audio_only)] == [f"audio-logmel-w{WINDOW:g}xT{WINDOWS}"]


def test_the_audio_analyses_run_on_audio_only_runs(mater_runs):
    assert list(mater_runs) == ["mater-a", "mater-a-nope-nomhsa"]
    classes = mf.classes("ravdess")
    table = entropy.entropies_from_predictions(pd.read_csv(mater_runs["mater-a"] / "predictions.csv"), classes)
    assert "entropy_a" in table and not {"entropy_v", "entropy_gap", "kl_av"} & set(table)
    np.testing.assert_allclose(table["entropy_a"], table["entropy_fused"], atol=1e-5)  # one head: the fused one
    assert plots.entropy_distributions({"attention": table}).axes[0].get_title() == "entropy of the audio predictions"
    trained = run_folder.load_trained(mater_runs["mater-a"])
    layers = analysis.over_folds(trained, entropy.layer_entropies)
    assert set(layers["modality"]) == {"a"}
    curves = noise.noise_curves({"attention": trained}, "a", ks=[0, WINDOWS], repetitions=1)
    assert curves["attention"]["k"].tolist() == [0, WINDOWS]
    incremental = temporal.incremental_over_folds(trained)
    assert incremental.columns.tolist() == ["t", "accuracy_a"] and incremental["t"].tolist() == [1, 2, 3]
    times = analysis.over_folds(trained, temporal.clip_response_times, window=WINDOW)
    assert set(times["modality"]) == {"a"}
