"""The baseline ladder: clip-level features, majority / logreg / svm on the same folds, nested selection
and the report table that sets them beside the networks."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler
from test_train import make_data_dir

from mer_lib import cli, ladder, report, run_folder, train
from mer_lib.config import MODELS, make_config
from mer_lib.data.clips import ClipData
from mer_lib.data.cremad import CLASSES
from mer_lib.errors import MerError
from mer_lib.features import store

SENTINEL = 1e6


def blobs(n_actors: int = 6, per_class: int = 8, n_classes: int = 4, dim: int = 5, seed: int = 0):
    """Clip-level features around one centre per class, several clips per class and actor: (X, labels, actors)."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.repeat(np.arange(n_classes), per_class), n_actors)
    actors = np.repeat(np.arange(n_actors), n_classes * per_class)
    X = rng.normal(size=(n_classes, dim))[labels] * 3 + rng.normal(size=(len(labels), dim))
    return X, labels, actors


# ------------------------------------------------------------------------------------------- features


def test_a_clip_level_store_gives_its_row():
    x = np.arange(12, dtype=np.float32).reshape(4, 1, 3)
    features = ladder.window_statistics(x, np.ones((4, 1), bool))
    assert features.shape == (4, 3) and np.array_equal(features, x[:, 0])


def test_windows_give_mean_and_std_over_the_present_windows_only():
    x = np.array([[[1.0, 10.0], [3.0, 10.0], [99.0, -99.0]],  # third window absent
                  [[5.0, 2.0], [5.0, 2.0], [5.0, 2.0]],
                  [[7.0, 7.0], [7.0, 7.0], [7.0, 7.0]]])  # no window present
    mask = np.array([[True, True, False], [True, True, True], [False, False, False]])
    features = ladder.window_statistics(x, mask)
    assert features.shape == (3, 4)
    assert np.allclose(features[0], [2.0, 10.0, 1.0, 0.0])  # mean (2, 10), std (1, 0)
    assert np.allclose(features[1], [5.0, 2.0, 0.0, 0.0])
    assert np.allclose(features[2], 0.0)
    with pytest.raises(MerError, match="windows \\(N, T, d\\)"):
        ladder.window_statistics(x[0], mask[0])


def test_clip_features_put_audio_before_video():
    rng = np.random.default_rng(0)
    audio, video = rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 1, 2))
    data = ClipData.from_numpy(np.zeros(5), 2, audio=audio, video=video)
    features = ladder.clip_features(data)
    assert features.shape == (5, 2 * 3 + 2)
    assert np.allclose(features[:, :3], audio.mean(1), atol=1e-6) and np.allclose(features[:, 6:], video[:, 0])


# ------------------------------------------------------------------------------------------- estimators


def test_majority_predicts_the_training_majority_with_the_class_frequencies():
    labels = np.array([2] * 5 + [0] * 3 + [1] * 2)
    fitted = ladder.fit("majority", np.zeros((10, 3)), labels, np.arange(10) % 2, n_classes=4)
    probabilities = fitted.probabilities(np.random.default_rng(0).normal(size=(6, 3)))
    assert np.allclose(probabilities, [0.3, 0.2, 0.5, 0.0]) and (probabilities.argmax(1) == 2).all()
    assert fitted.chosen == {}


@pytest.mark.parametrize("model", ["logreg", "svm"])
def test_logreg_and_svm_beat_chance_on_unseen_actors(model):
    X, labels, actors = blobs()
    seen = actors < 4
    fitted = ladder.fit(model, X[seen], labels[seen], actors[seen], n_classes=4)
    probabilities = fitted.probabilities(X[~seen])
    assert probabilities.shape == (int((~seen).sum()), 4) and np.allclose(probabilities.sum(1), 1)
    assert np.mean(probabilities.argmax(1) == labels[~seen]) > 0.9  # chance: 0.25
    assert np.array_equal(probabilities.argmax(1), fitted.estimator.predict(X[~seen]))  # the model's own decision
    grid = ladder.LOGREG_C if model == "logreg" else ladder.SVM_C
    assert fitted.chosen["C"] in grid and 0 <= fitted.chosen["inner_uar"] <= 1
    assert ("gamma" in fitted.chosen) == (model == "svm")


def test_the_row_space_changes_nothing_for_the_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    labels = np.arange(40) % 3
    X = rng.normal(size=(3, 300))[labels] + rng.normal(size=(40, 300))  # more dimensions than clips
    span = ladder.RowSpace().fit(X)
    assert span.basis_.shape == (300, 40) and np.allclose(span.basis_.T @ span.basis_, np.eye(40))
    assert np.allclose(span.transform(X) @ span.basis_.T, X)  # the rows lie in the span
    plain = LogisticRegression(C=0.1, tol=1e-10).fit(X, labels)
    reduced = LogisticRegression(C=0.1, tol=1e-10).fit(span.transform(X), labels)
    unseen = rng.normal(size=(10, 300))
    assert np.allclose(plain.predict_proba(unseen), reduced.predict_proba(span.transform(unseen)), atol=1e-6)
    assert np.array_equal(ladder.RowSpace().fit(X[:, :30]).transform(unseen[:, :30]), unseen[:, :30])


def test_svm_probabilities_with_two_training_classes():
    X, labels, actors = blobs(n_classes=2)
    fitted = ladder.fit("svm", X, labels, actors, n_classes=3)
    probabilities = fitted.probabilities(X)
    assert probabilities.shape == (len(X), 3) and np.allclose(probabilities.sum(1), 1)
    assert (probabilities[:, 2] == 0).all() and np.array_equal(probabilities.argmax(1), fitted.estimator.predict(X))


def test_the_svm_kernel_is_sklearns_rbf():
    from sklearn.svm import SVC

    X, labels, _ = blobs()
    gamma = 0.3
    ours = SVC(kernel=ladder.RbfKernel(gamma)).fit(X, labels).decision_function(X[:10])
    assert np.allclose(ours, SVC(kernel="rbf", gamma=gamma).fit(X, labels).decision_function(X[:10]), atol=1e-8)


def test_a_single_training_actor_gets_the_defaults_recorded():
    X, labels, actors = blobs(n_actors=1)
    for model in ("logreg", "svm"):
        fitted = ladder.fit(model, X, labels, actors, 4)
        assert fitted.chosen["C"] == 1.0 and "single training actor" in fitted.chosen["selection"]
        assert fitted.probabilities(X[:3]).shape == (3, 4)
    assert ladder.fit("majority", X, labels, actors, 4).probabilities(X[:1]).shape == (1, 4)


# ------------------------------------------------------------------------------------------- cross-validation


def test_no_test_actor_reaches_the_scaler_or_the_search(tmp_path, monkeypatch):
    data_dir = make_data_dir(tmp_path / "data")  # fold 0 tests actors 1 and 4
    audio = store.load_store(data_dir, "audio")
    tested = np.array([clip.startswith(("0001_", "0004_")) for clip in audio.ids])
    audio.X[tested, :, 0] = SENTINEL
    store.save_store(data_dir, audio.meta["name"], audio)
    scaled, searched = [], []
    real_scale, real_search = StandardScaler.fit, GridSearchCV.fit
    monkeypatch.setattr(StandardScaler, "fit", lambda self, X, *a, **k: (scaled.append(np.asarray(X)),
                                                                        real_scale(self, X, *a, **k))[1])
    monkeypatch.setattr(GridSearchCV, "fit", lambda self, X, y, **k: (searched.append((np.asarray(X), k["groups"])),
                                                                     real_search(self, X, y, **k))[1])
    metrics = train.cross_validate(data_dir, make_config("fast", model="svm", modalities="a"), tmp_path / "run",
                                  folds="0")
    assert len(searched) == 1 and len(scaled) == 12 * 4 + 1  # every setting on 4 inner splits, then the refit
    X, groups = searched[0]
    assert set(groups) == {2, 3, 5, 6} and len(X) == len(groups)
    assert all(np.abs(x).max() < SENTINEL / 10 for x in scaled + [X])
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert set(predictions["actor"]) == {1, 4} and len(predictions) == tested.sum() == metrics["n_clips"]


def test_mer_train_logreg_writes_the_run_artifacts(tmp_path, capsys):
    data_dir = make_data_dir(tmp_path / "data")
    out = tmp_path / "run"
    assert cli.main(["train", str(data_dir), "--model", "logreg", "--modalities", "av", "--folds", "all",
                     "--out", str(out)]) == 0
    assert "UAR" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.yaml", "metrics.json", "predictions.csv", "folds"}
    assert sorted(p.name for p in (out / "folds").iterdir()) == ["fold0.json", "fold1.json", "fold2.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["folds"] == [0, 1, 2] and len(metrics["chosen"]) == 3
    assert all(fold["C"] in ladder.LOGREG_C for fold in metrics["chosen"])
    assert metrics["accuracy_mean"] > 0.8 and metrics["uar_mean"] > 0.8  # audio and video together: separable
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns) == ["id", "fold", "actor", "emotion", "label", "predicted"] + \
        [f"p_{c}" for c in CLASSES]
    assert np.allclose(predictions[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1)
    assert (predictions["predicted"] == np.asarray(CLASSES)[predictions.filter(like="p_").to_numpy().argmax(1)]).all()
    with pytest.raises(MerError, match="baseline run: it keeps predictions, not models"):
        run_folder.load_trained(out)


def test_the_cli_offers_every_model():
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    model = next(a for a in subcommands.choices["train"]._actions if a.dest == "model")
    assert tuple(model.choices) == MODELS and set(ladder.LADDER) <= set(MODELS)


def test_network_settings_are_refused_for_a_ladder_model_in_one_line():
    assert make_config("fast", model="svm", modalities="a").model == "svm"
    with pytest.raises(MerError, match="--model svm is fitted on clip-level features"):
        make_config("fast", model="svm", train_noise="a")
    with pytest.raises(MerError, match="needs the fused embedding"):
        make_config("fast", model="logreg", loss="triplet")


# ------------------------------------------------------------------------------------------- report


def test_report_sets_the_ladder_beside_the_networks_on_the_same_folds(tmp_path):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    runs = {name: tmp_path / name for name in ("majority", "logreg", "mater", "logreg-fold0")}
    for name in ("majority", "logreg"):
        train.cross_validate(data_dir, make_config("fast", model=name), runs[name])
    train.cross_validate(data_dir, make_config("fast", epochs=1, d_model=16, heads=2, layers=1, d_ff=32,
                                                     device="cpu"), runs["mater"])
    train.cross_validate(data_dir, make_config("fast", model="logreg"), runs["logreg-fold0"], folds="0")
    tables = report.report(list(runs.values()), out=tmp_path / "report", figures=False)
    table = tables["baselines"]
    assert table["fold set"].nunique() == 2  # all three folds, and fold 0 alone
    full = table[table["fold set"] == table["fold set"].iloc[0]]
    assert full["model"].tolist() == ["majority", "logreg", "MATER", "human raters"]  # networks by their label
    majority = json.loads((runs["majority"] / "metrics.json").read_text())
    assert full["accuracy"].iloc[0] == f"{100 * majority['accuracy_mean']:.1f} ± {100 * majority['accuracy_std']:.1f}"
    assert full["UAR"].iloc[0] == f"{100 * majority['uar_mean']:.1f} ± {100 * majority['uar_std']:.1f}"
    assert full["features"].iloc[0] == "audio-toy-w0.5xT4, video-toy-w0.5xT4" and (full["folds"].iloc[:3] == 3).all()
    assert full["accuracy"].iloc[-1] == "63.6" and pd.isna(full["UAR"].iloc[-1])  # CREMA-D raters, audio-visual
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Baselines and models on the same folds" in text and text.count("### cremad: ") == 2
    assert (tmp_path / "report" / "baselines.csv").is_file()
