"""Valence-arousal regression with joint cross-attention: per-window labels, CCC training."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib import dimensional, train
from mer_lib.config import make_config
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.models.losses import ccc_loss

T = 5


def clips() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c"], "emotion": ["happy", "sad", "neutral"],
                         "intensity": ["strong", "normal", "normal"]})


def test_synthetic_labels_follow_the_circumplex_and_the_expression_envelope():
    labels = dimensional.synthetic_labels(clips(), T)
    assert list(labels.columns) == dimensional.COLUMNS and len(labels) == 3 * T
    happy = labels[labels["id"] == "a"].set_index("window")
    assert happy["valence"].idxmax() == T // 2  # the apex is mid-clip
    assert happy.loc[T // 2, "valence"] == pytest.approx(0.8) and happy.loc[T // 2, "arousal"] == pytest.approx(0.5)
    sad = labels[labels["id"] == "b"].set_index("window")
    assert sad.loc[T // 2, "valence"] == pytest.approx(-0.7 * 0.5)  # normal intensity: half way
    assert (labels[labels["id"] == "c"][["valence", "arousal"]] == 0).all().all()


def test_read_labels_places_each_row_and_masks_the_rest(tmp_path):
    path = tmp_path / "va.csv"
    labels = dimensional.synthetic_labels(clips(), T)
    dimensional.write_synthetic_labels(clips(), T, path)
    targets, mask = dimensional.read_labels(path, ["c", "a", "z"], T)
    assert targets.shape == (3, T, 2) and mask[:2].all() and not mask[2].any()
    expected = labels[labels["id"] == "a"].sort_values("window")[["valence", "arousal"]].to_numpy()
    assert np.allclose(targets[1], expected)
    pd.DataFrame({"id": ["a"], "valence": [0.1]}).to_csv(path, index=False)
    with pytest.raises(MerError, match="lacks the column"):
        dimensional.read_labels(path, ["a"], T)
    with pytest.raises(MerError, match="does not exist"):
        dimensional.read_labels(tmp_path / "none.csv", ["a"], T)


def test_jca_learns_valence_and_arousal_that_the_windows_carry():
    rng = np.random.default_rng(0)
    n, d = 160, 12
    targets = rng.uniform(-1, 1, size=(n, T, 2)).astype(np.float32)
    mixing_a, mixing_v = rng.normal(size=(2, d)), rng.normal(size=(2, d))
    audio = targets @ mixing_a + 0.1 * rng.normal(size=(n, T, d))
    video = targets @ mixing_v + 0.1 * rng.normal(size=(n, T, d))
    data = ClipData.from_numpy(np.zeros(n, int), 1, audio=audio, video=video)
    result = dimensional.fit_valence_arousal(data.take(range(100)), targets[:100], data.take(range(100, 130)),
                                             targets[100:130], epochs=30, d_model=32)
    test = data.take(range(130, n))
    valence, arousal = dimensional.evaluate_ccc(result.model, test, torch.as_tensor(targets[130:]),
                                                torch.ones(30, T, dtype=torch.bool))
    assert valence > 0.6 and arousal > 0.6
    assert len(result.history) == 30 and list(result.history.columns) == ["epoch", "train_loss", "train_ccc",
                                                                          "val_loss", "val_ccc", "lr"]
    best = result.history["val_ccc"].max()  # the kept epoch's validation CCC, the mean of valence's and arousal's
    assert best == pytest.approx((result.ccc_valence + result.ccc_arousal) / 2, abs=1e-5)


def test_the_common_loop_trains_a_regression_task_and_ignores_unlabelled_windows():
    rng = np.random.default_rng(1)
    n, d = 48, 4
    targets = rng.uniform(-1, 1, size=(n, T, 2)).astype(np.float32)
    mask = rng.uniform(size=(n, T)) > 0.3
    data = ClipData.from_numpy(np.zeros(n, int), 1, audio=targets @ rng.normal(size=(2, d)),
                               video=targets @ rng.normal(size=(2, d)))
    clips = dimensional.with_targets(data, targets, mask)
    assert clips.labels.shape == (n, T, 2) and clips.labels[~torch.as_tensor(mask)].isnan().all()
    config = make_config(model="jca", d_model=8, epochs=3, batch_size=16, schedule="constant", device="cpu")
    model, history = train.train_fold(config, clips.take(range(32)), clips.take(range(32, n)),
                                      task=dimensional.VALENCE_AROUSAL)
    assert [row["epoch"] for row in history] == [0, 1, 2] and all(0 <= row["val_loss"] <= 2 for row in history)
    val = clips.take(range(32, n))
    loss, score = train.evaluate(model, val, dimensional.VALENCE_AROUSAL)
    assert score == pytest.approx(1 - loss)
    pred = train.predict(model, val).valence_arousal
    expected = ccc_loss(pred, torch.as_tensor(targets[32:]), torch.as_tensor(mask[32:]))
    assert loss == pytest.approx(expected.item(), abs=1e-6)  # NaN targets are masked, never reach the loss
    with pytest.raises(MerError, match="label smoothing train classifiers"):
        train.train_fold(replace(config, label_smoothing=0.1), clips.take(range(32)), clips.take(range(32, n)),
                         task=dimensional.VALENCE_AROUSAL)
