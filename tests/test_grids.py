"""mer_lib.grids: grid runs are named after their settings, reused when finished, and an entry can carry
its own preset."""
from __future__ import annotations

import pytest
from test_train import make_data_dir

from mer_lib import checkpoints, grids, run_folder, train
from mer_lib.errors import MerError

SMALL = {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "device": "cpu"}


def test_grid_names_its_runs_and_reuses_finished_ones(tmp_path, monkeypatch):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    grid = [{"modalities": "a"}, {"modalities": "av", "pe": False, "mhsa": False},
            {"model": "cross_attention", "loss": "emotion", "fusion": False}]
    runs = grids.cross_validate_grid(data_dir, tmp_path / "runs", grid, folds="0", epochs=1, **SMALL)
    assert list(runs) == ["mater-a", "mater-av-nope-nomhsa", "cross_attention-av-nofusion-emotion-withsoftmax"]
    assert all((path / "metrics.json").is_file() for path in runs.values())
    monkeypatch.setattr(train, "run_epoch", lambda *a, **k: pytest.fail("a finished run was trained again"))
    grids.cross_validate_grid(data_dir, tmp_path / "runs", grid[:1], folds="0", epochs=1, **SMALL)
    assert not run_folder.outdated(runs["mater-a"])


def test_results_of_an_older_model_revision_are_not_reused(tmp_path, monkeypatch):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    run = grids.cross_validate_grid(data_dir, tmp_path / "runs", [{"modalities": "a"}], folds="0", epochs=1,
                                    **SMALL)["mater-a"]
    monkeypatch.setattr(checkpoints, "MODEL_REVISION", checkpoints.MODEL_REVISION + 1)  # the models changed since
    assert run_folder.outdated(run)
    with pytest.raises(MerError, match="older version of the models"):  # its checkpoint says so, in one line
        grids.cross_validate_grid(data_dir, tmp_path / "runs", [{"modalities": "a"}], folds="0", epochs=1, **SMALL)


def test_a_grid_entry_can_carry_its_own_preset(tmp_path):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    grid = [{"model": "cross_attention", "preset": "mocanu", "loss": "triplet"}, {"model": "mater"}]
    runs = grids.cross_validate_grid(data_dir, tmp_path / "runs", grid, folds="0", epochs=1, **SMALL)
    configs = {name: run_folder.read_run_config(path)["train"] for name, path in runs.items()}
    assert (configs["cross_attention-av-triplet"]["preset"], configs["mater-av"]["preset"]) == ("mocanu", "fast")
    assert all(entry["preset"] == "mocanu" for entry in grids.FUSION_COMPARISON if entry["model"] == "cross_attention")
    ablations = [e for e in grids.FUSION_COMPARISON if e["model"] == "cross_attention" and len(e) > 3]
    assert all(e["loss"] == "triplet" for e in ablations)  # Tables 1-2 of Mocanu et al. use the triplet loss
