"""mer_lib.metrics: accuracy, UAR (balanced accuracy) per fold and per modality head."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from mer_lib.metrics import accuracy, summarize, uar


def test_uar_is_balanced_accuracy_per_fold():
    rng = np.random.default_rng(1)
    truth = rng.choice(3, size=200, p=[0.7, 0.2, 0.1])
    fused = np.where(rng.random(200) < 0.6, truth, 0)  # a bias towards the frequent class
    head = np.where(rng.random(200) < 0.5, truth, 2)
    assert uar(truth, fused) == pytest.approx(balanced_accuracy_score(truth, fused))
    assert uar(truth, fused) < accuracy(truth, fused)  # the frequent class no longer carries it
    folds = np.repeat([0, 1], 100)
    classes = ("x", "y", "z")
    predictions = pd.DataFrame({"fold": folds, "label": truth} | {f"p_{c}": fused == i for i, c in enumerate(classes)}
                               | {f"p_a_{c}": head == i for i, c in enumerate(classes)})
    metrics = summarize(predictions.astype({c: float for c in predictions if c.startswith("p_")}), classes, "a")
    expected = [balanced_accuracy_score(truth[folds == k], fused[folds == k]) for k in (0, 1)]
    assert metrics["per_fold_uar"] == pytest.approx(expected)
    assert (metrics["uar_mean"], metrics["uar_std"]) == pytest.approx((np.mean(expected), np.std(expected)))
    head_expected = [balanced_accuracy_score(truth[folds == k], head[folds == k]) for k in (0, 1)]
    assert metrics["uar_a_mean"] == pytest.approx(np.mean(head_expected))
