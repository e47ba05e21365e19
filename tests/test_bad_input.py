"""Bad input through the `mer` command: each case ends with its exit status and one `mer: error:` line
naming what is wrong, before any work starts or with the finished work kept.

Covers bad settings of `mer train` and `mer extract`, media faults (truncated wav/mp3/mp4/flv, a clip
with nothing to hear or see, a recording shorter than a window), weights that are not a valid file,
symlinks (Actor folders followed, zip entries refused), and signals to `mer extract --workers 2`.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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
import sys, time
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
    return len(list(partial.rglob("*.npz")))


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
