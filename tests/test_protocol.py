"""`mer protocol`: the real-audio comparison end to end on the two-actor RAVDESS sample (quick settings)."""
from __future__ import annotations

from dataclasses import asdict, replace

import pandas as pd
import yaml

from mer_lib import cli, protocol
from mer_lib.config import config_from_flags
from mer_lib.features import store


def test_protocol_runs_every_model_on_the_same_folds_and_writes_one_table(real_data, tmp_path, capsys):
    root = real_data / "ravdess" / "audio"
    out = tmp_path / "protocol"
    assert cli.main(["protocol", str(root), "--out", str(out), "--quick", "--workers", "2"]) == 0
    table = pd.read_csv(out / "protocol.csv")
    assert list(table["run"][:-1]) == [r.name for r in protocol.RUNS] and "human raters" in table["run"].iloc[-1]
    assert table["train_seconds"].iloc[:-1].gt(0).all() and table["peak_memory_mb"].iloc[:-1].gt(100).all()
    assert table.set_index("run").loc["mater-logmel-voiced", "seeds"] == "2"
    seeds = pd.read_csv(out / "runs" / "mater-logmel-voiced" / "predictions_seeds.csv")["seed"]
    assert sorted(seeds.unique()) == [0, 1]
    assert "± " in table["accuracy %"].iloc[0] and (out / "protocol.md").read_text().startswith("| run |")
    folds = {name: set(pd.read_csv(out / "runs" / name / "predictions.csv")["fold"]) for name in table["run"][:-1]}
    assert all(f == {0, 1} for f in folds.values())  # every run on the same two folds (one actor each)
    names = {s["name"] for s in store.list_stores(out / "data")}
    assert {"audio-egemaps-clip", "audio-logmel_patches-w0.5xT8-voiced", "audio-egemaps-w0.5xT8"} <= names
    capsys.readouterr()
    assert cli.main(["protocol", str(root), "--out", str(out), "--quick", "--only", "majority"]) == 0
    assert "training majority" not in capsys.readouterr().out  # finished runs are reused


def test_protocol_names_an_unknown_run(tmp_path, capsys):
    assert cli.main(["protocol", str(tmp_path), "--out", str(tmp_path / "p"), "--only", "nope"]) == 2
    assert "no run named nope" in capsys.readouterr().err


def test_an_ensemble_row_brings_its_members_and_names_their_features():
    views = protocol.BY_NAME["mater-views"]
    assert views.members and all(m in protocol.BY_NAME for m in views.members)
    assert views.features == "logmel_patches (voiced) + egemaps (voiced)"
    assert protocol.RUNS.index(views) > max(protocol.RUNS.index(protocol.BY_NAME[m]) for m in views.members)
    three = protocol.BY_NAME["mater-three-views"]
    assert three.features == "logmel_patches (voiced) + egemaps (voiced) + egemaps (fixed)"
    assert three.n_seeds == "2+1+1"  # the log-mel member averages two seeds


def test_a_row_trained_with_other_settings_is_stale(tmp_path):
    run = protocol.BY_NAME["mater-logmel-voiced"]
    assert not protocol._stale(tmp_path, run, quick=True)  # nothing trained there yet
    trained = config_from_flags(protocol._train_args(run, quick=True))
    seeds = list(run.seeds)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": asdict(trained), "folds": [0], "seeds": seeds}))
    assert not protocol._stale(tmp_path, run, quick=True)
    assert protocol._stale(tmp_path, run, quick=False)  # the smoke test's small model is not this row
    smoothed = asdict(replace(trained, label_smoothing=0.0))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": smoothed, "folds": [0], "seeds": seeds}))
    assert protocol._stale(tmp_path, run, quick=True)  # trained before the preset changed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": asdict(trained), "folds": [0]}))
    assert protocol._stale(tmp_path, run, quick=True)  # one seed (before seeds were recorded) where it averages two
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": asdict(trained), "folds": [0], "seeds": seeds}))
    (tmp_path / "folds").mkdir()
    (tmp_path / "folds" / "fold0-seed0.json").write_text('{"ids": []}')  # written before model revisions
    assert protocol._stale(tmp_path, run, quick=True)
