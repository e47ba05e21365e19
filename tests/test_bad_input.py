"""Bad input through the `mer` command: each case ends with its exit status and one `mer: error:` line
naming what is wrong, before any work starts or with the finished work kept.

Covers bad settings of `mer train` and `mer extract`, media faults (truncated wav/mp3/mp4/flv, a clip
with nothing to hear or see, a recording shorter than a window), weights that are not a valid file,
symlinks (Actor folders followed, zip entries refused), and signals to `mer extract --workers 2`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer_lib import cli
from mer_lib.data import manifest as mf
from mer_lib.features import store

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(capsys) -> str:
    """The command's stderr, checked to be exactly one `mer: error:` line."""
    err = capsys.readouterr().err
    assert err.startswith("mer: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture()
def tone_data(tmp_path, tone_clips) -> Path:
    """A prepared data folder of 16 tiny audio clips (4 actors x 2 emotions x 2 repetitions)."""
    tone_clips(tmp_path / "raw", actors=(1, 2, 3, 4), emotions=(1, 3))
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)
    return tmp_path / "data"


# ----------------------------------------------------------------------------- signals

# `mer extract` whose clips take 0.3 s each, so that a signal arrives mid-run
SLOW_EXTRACT = """
import signal, sys, time
# Ctrl-C as from a terminal, even when the tests run as a background job (which starts with SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
from mer_lib import cli
from mer_lib.features import extract
embed = extract.embed_audio
def slow_embed(clip, config):
    time.sleep(0.3)
    return embed(clip, config)
extract.embed_audio = slow_embed
sys.exit(cli.main(sys.argv[1:]))
"""


def _finished(partial: Path) -> int:
    """Finished clips: their results, not the temporary files (.<name>.<random>.npz) of clips being written."""
    return sum(not path.name.startswith(".") for path in partial.rglob("*.npz"))


@pytest.mark.parametrize("how", ["SIGTERM to mer", "SIGINT to the process group (Ctrl-C)", "SIGKILL to mer"])
def test_signals_end_the_workers_and_keep_finished_clips(tone_data, how, capsys):
    psutil = pytest.importorskip("psutil")
    command = ["extract", str(tone_data), "--audio", "logmel", "--video", "none", "--windows", "2", "--workers", "2"]
    child = subprocess.Popen([sys.executable, "-c", SLOW_EXTRACT, *command], cwd=ROOT, start_new_session=True,
                             env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = tone_data / "embeddings" / ".partial"
    deadline = time.monotonic() + 120
    while _finished(partial) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = psutil.Process(child.pid).children(recursive=True)
    assert len(workers) == 2 and _finished(partial) < 16
    if how.startswith("SIGINT"):
        os.killpg(child.pid, signal.SIGINT)
    else:
        child.send_signal(signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGKILL)
    status = child.wait(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"orphaned workers: {alive}"
    expected = {"SIGTERM to mer": 128 + signal.SIGTERM, "SIGKILL to mer": -signal.SIGKILL}.get(how, 128 + signal.SIGINT)
    assert status == expected
    if status > 0:
        assert child.stderr.read().strip().splitlines()[-1].startswith("mer: interrupted")
    done = _finished(partial)
    assert cli.main(command[:-1] + ["1"]) == 0
    assert f"{done} of 16 clips already done" in capsys.readouterr().out
    assert len(store.load_store(tone_data, "audio").ids) == 16


# ----------------------------------------------------------------------------- settings

@pytest.mark.parametrize("setting,message", [
    ("--checkpoint-every 0", r"checkpoint_every \(--checkpoint-every\) must be an integer >= 1, got 0"),
    ("--heads 0", r"heads \(--heads\) must be an integer >= 1, got 0"),
    ("--d-model -32", r"d_model \(--d-model\) must be an integer >= 1, got -32"),
    ("--layers 0", r"layers \(--layers\) must be an integer >= 1"),
    ("--d-ff 0", r"d_ff \(--d-ff\) must be an integer >= 1"),
    ("--epochs 0", r"epochs \(--epochs\) must be an integer >= 1"),
    ("--batch-size 0", r"batch_size \(--batch-size\) must be an integer >= 1"),
    ("--lr 0", r"lr \(--lr\) must be a finite number > 0"),
    ("--lr nan", r"lr \(--lr\) must be a finite number > 0, got nan"),
    ("--weight-decay -1", r"weight_decay \(--weight-decay\) must be a finite number >= 0"),
    ("--mixup -0.2", r"mixup \(--mixup\) must be a finite number >= 0"),
    ("--label-smoothing 0.6", r"label_smoothing \(--label-smoothing\) must be a finite number >= 0 and <= 0.5"),
    ("--noise-snr inf --frontend conv", r"noise_snr \(--noise-snr\) must be a finite number, got inf"),
    ("--seed -3", r"seed \(--seed\) must be an integer >= 0"),
    ("--seeds 0,-1", r"seeds \(--seeds\) must be an integer >= 0, got -1"),
    ("--d-model 30 --heads 8", r"d_model \(--d-model 30\) must be a multiple of heads \(--heads 8\)"),
    ("--window inf", r"window \(--window\) must be a finite number > 0 and <= 600, got inf"),
    ("--windows 1000000", r"windows \(--windows\) must be an integer >= 1 and <= 1000, got 1000000"),
    ("--heads x", r"argument --heads: invalid int value: 'x' \(see `mer train --help`\)"),
])
def test_bad_train_settings_stop_before_any_work(tone_data, tmp_path, setting, message, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", str(tone_data), "--modalities", "a", *setting.split(), "--out", str(run)]) == 2
    assert re.search(message, one_error_line(capsys))
    assert not run.exists()


@pytest.mark.parametrize("setting,message", [
    ("--window inf", r"window \(--window\) must be a finite number > 0 and <= 600, got inf"),
    ("--window -0.5", r"window \(--window\) must be a finite number > 0"),
    ("--windows 0", r"windows \(--windows\) must be an integer >= 1 and <= 1000, got 0"),
    ("--windows 1000000", r"windows \(--windows\) must be an integer >= 1 and <= 1000, got 1000000"),
    ("--window 2 --windows 400", r"400 windows \(--windows\) of 2 s \(--window\) cover 800 s, more than 600 s"),
    ("--workers 0", r"workers \(--workers\) must be an integer >= 1, got 0"),
    ("--video landmarks --frame-step 0", r"frame_step \(--frame-step\) must be an integer >= 1, got 0"),
    ("--audio mfcc", r"unknown audio extractor 'mfcc' \(choose from vggish, egemaps"),
    ("--video resnet", r"unknown video extractor 'resnet' \(choose from"),
])
def test_bad_extract_settings_stop_before_any_work(tone_data, setting, message, capsys):
    command = ["extract", str(tone_data), "--audio", "logmel", "--video", "none", *setting.split()]
    assert cli.main(command) == 2
    assert re.search(message, one_error_line(capsys))
    assert not (tone_data / "embeddings").exists()


# ----------------------------------------------------------------------------- clips with nothing to go on

TINY_MATER = ["--d-model", "8", "--heads", "1", "--layers", "1", "--d-ff", "8", "--epochs", "2", "--device", "cpu"]


def test_clips_without_a_window_are_left_out_of_training_and_accuracy(tmp_path, tone_clips, capsys):
    tone_clips(tmp_path / "raw", actors=(1, 2, 3, 4), emotions=(1, 3))
    short = tone_clips(tmp_path / "raw", actors=(1, 3), emotions=(4,), repetitions=(1,), seconds=0.2)
    mf.prepare("ravdess", tmp_path / "raw", tmp_path / "data", quiet=True)
    assert cli.main(["extract", str(tmp_path / "data"), "--audio", "logmel", "--video", "none", "--windows", "2",
                     "--workers", "1"]) == 0
    assert "(2 with none present)" in capsys.readouterr().out
    assert cli.main(["train", str(tmp_path / "data"), "--modalities", "a", *TINY_MATER,
                     "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "left out 2 clips with no present window" in out and "(16 test clips)" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ids = sorted(path.stem[3:] for path in short)
    assert metrics["n_clips_without_windows"] == 2 and metrics["clips_without_windows"] == ids
    assert metrics["n_clips"] == 16
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert not set(ids) & set(predictions["id"])


@pytest.fixture(scope="module")
def av_run(tmp_path_factory) -> Path:
    """A finished audio-visual MATER run on hand-made log-mel and landmark stores (T = 2 windows of 0.5 s)."""
    root = tmp_path_factory.mktemp("av")
    classes = mf.classes("synthetic")
    rows = [{"id": f"{actor}-{label}-{k}", "dataset": "synthetic", "actor": actor, "emotion": emotion, "label": label,
             "status": "ok", "has_audio": True, "has_video": True, "duration": 1.0}
            for actor in range(1, 5) for label, emotion in enumerate(classes) for k in range(2)]
    manifest = pd.DataFrame(rows).reindex(columns=mf.COLUMNS)
    manifest.to_csv(root / "manifest.csv", index=False)
    pd.DataFrame({"actor": range(1, 5), "sex": "female", "fold": [0, 0, 1, 1]}).to_csv(root / "folds.csv", index=False)
    rng = np.random.default_rng(0)
    for modality, extractor, dim in (("audio", "logmel", 128), ("video", "landmarks", 136)):
        config = {"modality": modality, "extractor": extractor, "window": 0.5, "count": 2, "frame_step": 1,
                  "chip_size": 96, "openface_dir": None, "layout": "fixed", "weights_sha256": None, "dim": dim}
        X = rng.normal(size=(len(rows), 2, dim)) + manifest["label"].to_numpy()[:, None, None]
        store.save_store(root, f"{modality}-{extractor}-w0.5xT2", store.EmbeddingStore(
            manifest["id"].tolist(), X.astype(np.float32), np.ones((len(rows), 2), bool), config))
    assert cli.main(["train", str(root), "--modalities", "av", *TINY_MATER, "--out", str(root / "run")]) == 0
    return root / "run"


def _predict(run: Path, recording: Path, capsys) -> tuple[int, str, str]:
    status = cli.main(["predict", str(recording), "--run", str(run), "--out", str(run.parent / "predict")])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", ["grey.mp4", "voice.wav"])
def test_predict_treats_no_face_and_no_video_stream_alike(av_run, media_files, tmp_path, name, capsys):
    write_media, _ = media_files
    status, out, _ = _predict(av_run, write_media(tmp_path / name, seconds=1.0), capsys)
    reason = "no face found in any frame" if name.endswith(".mp4") else "no video stream"
    assert status == 0 and f"note: {name}: {reason}; the prediction uses audio only" in out


@pytest.mark.parametrize("name,level,seconds,reason", [
    ("silent.wav", 0.0, 1.0, "the audio is silent (no sample above -60 dBFS); no video stream"),
    ("silent.mp4", 0.0, 1.0, "the audio is silent (no sample above -60 dBFS); no face found in any frame"),
    ("short.wav", 0.3, 0.2, "no audio window (the recording lasts 0.20 s; a window of 0.5 s needs half of it); "
                            "no video stream"),
])
def test_predict_says_when_a_recording_has_nothing_to_go_on(av_run, media_files, tmp_path, name, level, seconds,
                                                             reason, capsys):
    write_media, _ = media_files
    recording = write_media(tmp_path / name, seconds=seconds, audio_level=level)
    status, out, err = _predict(av_run, recording, capsys)
    assert status == 2 and err == f"mer: error: {recording}: nothing to go on for this run: {reason}\n"
    assert not (av_run.parent / "predict" / f"{recording.stem}.csv").exists()


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".mp4", ".flv"])
def test_predict_refuses_a_truncated_recording(av_run, media_files, tmp_path, suffix, capsys):
    write_media, truncate = media_files
    recording = truncate(write_media(tmp_path / f"cut{suffix}", seconds=2.0))
    status, _, err = _predict(av_run, recording, capsys)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"mer: error: {recording}: cannot read media (truncated: data ends at ")


def test_prepare_skips_truncated_media_of_every_container_and_keeps_the_rest(media_files, tone_clips, tmp_path,
                                                                             capsys):
    write_media, truncate = media_files
    cremad = tmp_path / "cremad"
    for name in ("VideoFlash/1001_DFA_ANG_XX.flv", "AudioMP3/1002_DFA_ANG_XX.mp3", "AudioWAV/1003_DFA_ANG_XX.wav"):
        truncate(write_media(cremad / name))
    for actor in (1004, 1005):
        write_media(cremad / f"AudioWAV/{actor}_DFA_SAD_XX.wav")
    ravdess = tmp_path / "ravdess"
    truncate(write_media(ravdess / "Actor_01" / "01-01-03-01-01-01-01.mp4"))
    tone_clips(ravdess, actors=(1, 2), emotions=(1,), repetitions=(1,))
    for dataset, root, bad in (("cremad", cremad, 3), ("ravdess", ravdess, 1)):
        assert cli.main(["data", "prepare", dataset, str(root), "--out", str(tmp_path / dataset / "data")]) == 0
        manifest = mf.load_manifest(tmp_path / dataset / "data")
        skipped = manifest[manifest["status"] == "skip"]
        assert len(skipped) == bad and skipped["reason"].str.contains(r"truncated: data ends at").all()
        assert (manifest["status"] == "ok").sum() == 2
        assert f"{bad} skipped" in capsys.readouterr().out


# ----------------------------------------------------------------------------- weights, folders

def test_a_weights_file_that_is_not_a_checkpoint_is_one_error_before_any_clip(tone_data, tmp_path, monkeypatch,
                                                                                capsys):
    bad = tmp_path / "vggish.pth"
    bad.write_text("<html>Not Found</html>")  # what a failed download often leaves
    monkeypatch.setenv("MER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(bad))
    assert cli.main(["weights", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"vggish                   invalid ({bad} is not a valid weights file for 'vggish'" in listed
    assert cli.main(["extract", str(tone_data), "--audio", "vggish", "--video", "none", "--workers", "1"]) == 2
    err = one_error_line(capsys)
    assert f"{bad} is not a valid weights file for 'vggish'" in err and "weights_only" not in err
    assert not (tone_data / "embeddings").exists()


def test_prepare_follows_symlinked_actor_folders(tmp_path, tone_clips, capsys):
    tone_clips(tmp_path / "elsewhere", actors=(1, 2), emotions=(1, 3))
    (tmp_path / "raw").mkdir()
    for actor in ("Actor_01", "Actor_02"):
        (tmp_path / "raw" / actor).symlink_to(tmp_path / "elsewhere" / actor, target_is_directory=True)
    assert cli.main(["data", "prepare", "ravdess", str(tmp_path / "raw"), "--out", str(tmp_path / "data")]) == 0
    manifest = mf.load_manifest(tmp_path / "data", usable_only=True)
    assert len(manifest) == 8 and sorted(manifest["actor"].unique()) == [1, 2]
    assert "8 clips: 8 usable" in capsys.readouterr().out


def test_extract_records_clips_with_media_faults_and_keeps_the_rest(tone_data, media_files, capsys):
    write_media, truncate = media_files
    clips = mf.load_manifest(tone_data).set_index("id")["audio_path"]
    silent, cut = Path(clips.iloc[0]), Path(clips.iloc[1])
    write_media(silent, seconds=1.2, audio_level=0.0)  # replaced by silence after prepare
    truncate(cut)  # cut short after prepare, as a failed copy would
    command = ["extract", str(tone_data), "--audio", "logmel", "--video", "none", "--windows", "2", "--workers", "1"]
    assert cli.main(command) == 0
    out = capsys.readouterr().out
    assert f"failed {clips.index[0]}: the audio is silent (no sample above -60 dBFS)" in out
    assert f"failed {clips.index[1]}: {cut}: cannot read media (truncated: data ends at 0.60 s of 1.20 s)" in out
    audio = store.load_store(tone_data, "audio")
    assert len(audio.ids) == 14 and sorted(audio.meta["failures"]) == sorted(clips.index[:2])
    assert cli.main(command) == 0  # a rerun retries the two failed clips only
    assert "14 of 16 clips already done, retrying 2 that failed before" in capsys.readouterr().out
