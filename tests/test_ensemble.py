"""mer ensemble: the members' probabilities averaged clip by clip, on identical clips and folds only."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mer_lib import artifacts, ensemble, report, run_folder
from mer_lib.errors import MerError
from mer_lib.metrics import summarize

CLASSES = ("neutral", "happy", "sad")


def fake_run(folder, probabilities: np.ndarray, ids=None) -> None:
    """A finished run folder: predictions.csv and metrics.json for six clips in two folds."""
    labels = np.array([0, 1, 2, 0, 1, 2])
    table = pd.DataFrame({"id": ids or [f"c{i}" for i in range(6)], "fold": [0, 0, 0, 1, 1, 1],
                          "actor": [1, 1, 1, 2, 2, 2], "emotion": [CLASSES[i] for i in labels], "label": labels,
                          "predicted": [CLASSES[i] for i in probabilities.argmax(1)]})
    table = pd.concat([table, pd.DataFrame(probabilities, columns=[f"p_{c}" for c in CLASSES])], axis=1)
    artifacts.write_csv(folder / "predictions.csv", table)
    metrics = summarize(table, CLASSES, "a") | {"config": {"model": "mater", "modalities": "a", "pe": True,
                                                           "mhsa": True}, "data": {"dataset": "ravdess"}}
    artifacts.write_json(folder / "metrics.json", metrics)


def test_the_ensemble_averages_probabilities_and_can_beat_both_members(tmp_path):
    # member A is right on clips 0-2 only, member B on 3-5 only, each barely wrong elsewhere
    a = np.full((6, 3), 0.1)
    b = np.full((6, 3), 0.1)
    for i, label in enumerate([0, 1, 2, 0, 1, 2]):
        (a if i < 3 else b)[i, label] = 0.8
        (b if i < 3 else a)[i, label] = 0.4
        (b if i < 3 else a)[i, (label + 1) % 3] = 0.5
    fake_run(tmp_path / "a", a)
    fake_run(tmp_path / "b", b)
    metrics = ensemble.combine([tmp_path / "a", tmp_path / "b"], tmp_path / "ab")
    predictions = pd.read_csv(tmp_path / "ab" / "predictions.csv")
    np.testing.assert_allclose(predictions[[f"p_{c}" for c in CLASSES]].to_numpy(), (a + b) / 2)
    assert metrics["accuracy_mean"] == 1.0 and metrics["per_fold"] == [1.0, 1.0]
    assert [m["accuracy_mean"] for m in metrics["members"]] == [0.5, 0.5]
    assert report.load_run(tmp_path / "ab")["config"]["model"] == "ensemble"
    assert not run_folder.outdated(tmp_path / "ab")  # nothing of its own to retrain: its members are runs


def test_members_on_other_clips_are_refused(tmp_path):
    fake_run(tmp_path / "a", np.eye(3)[[0, 1, 2, 0, 1, 2]])
    fake_run(tmp_path / "b", np.eye(3)[[0, 1, 2, 0, 1, 2]], ids=[f"x{i}" for i in range(6)])
    with pytest.raises(MerError, match="same clips and folds"):
        ensemble.combine([tmp_path / "a", tmp_path / "b"], tmp_path / "ab")
    with pytest.raises(MerError, match="at least two"):
        ensemble.combine([tmp_path / "a"], tmp_path / "ab")


def test_mer_ensemble_on_a_folder_that_is_no_run_is_one_line(tmp_path):
    fake_run(tmp_path / "a", np.eye(3)[[0, 1, 2, 0, 1, 2]])
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "mer_lib.cli", "ensemble", str(tmp_path / "a"),
                           str(tmp_path / "empty"), "--out", str(tmp_path / "ab")], capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.strip().count("\n") == 0
    assert "not a finished `mer train` run" in done.stderr and not (tmp_path / "ab").exists()
