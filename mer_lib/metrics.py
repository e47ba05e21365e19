"""Scores of a run's predictions: accuracy, unweighted average recall (UAR), per fold and per modality
head, per-class accuracy and the confusion matrix (`summarize`), and their spread over seeds
(`seed_summary`).

Every number of metrics.json is computed here from a predictions table (one row per test clip:
fold, label, and probability columns p_<class> for the fused prediction, p_<m>_<class> for each
modality head), so a run, an ensemble of runs (mer_lib.ensemble) and `mer report` score alike.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The share of clips predicted as their true class."""
    return float(np.mean(truth == predicted))


def uar(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted average recall (balanced accuracy): the mean over the classes present in `truth` of
    the share of their clips predicted as them, so that a frequent class cannot carry the score."""
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def _by_fold(predictions: pd.DataFrame, predicted: np.ndarray, score) -> pd.Series:
    """score(truth, predicted) over the clips of each fold, indexed by fold in ascending order."""
    truth = predictions["label"].to_numpy()
    return pd.Series({fold: score(truth[rows], predicted[rows])
                      for fold, rows in sorted(predictions.groupby("fold").indices.items())})


def summarize(predictions: pd.DataFrame, classes: tuple[str, ...], modalities: str) -> dict:
    """Accuracy and UAR per fold (fused; and per modality head), per-class accuracy, and the confusion
    matrix (rows: true)."""
    fused = predictions[[f"p_{c}" for c in classes]].to_numpy().argmax(1)
    truth = predictions["label"].to_numpy()
    per_fold, per_fold_uar = _by_fold(predictions, fused, accuracy), _by_fold(predictions, fused, uar)
    metrics = {"accuracy_mean": float(per_fold.mean()), "accuracy_std": float(per_fold.std(ddof=0)),
               "per_fold": [float(a) for a in per_fold], "folds": [int(k) for k in per_fold.index],
               "uar_mean": float(per_fold_uar.mean()), "uar_std": float(per_fold_uar.std(ddof=0)),
               "per_fold_uar": [float(a) for a in per_fold_uar],
               "n_clips": len(predictions), "classes": list(classes)}
    for m in (m for m in modalities if f"p_{m}_{classes[0]}" in predictions):  # heads the model has
        predicted = predictions[[f"p_{m}_{c}" for c in classes]].to_numpy().argmax(1)
        by_fold = _by_fold(predictions, predicted, accuracy)
        metrics[f"accuracy_{m}_mean"] = float(by_fold.mean())
        metrics[f"per_fold_{m}"] = [float(a) for a in by_fold]
        metrics[f"uar_{m}_mean"] = float(_by_fold(predictions, predicted, uar).mean())
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (truth, fused), 1)
    support = confusion.sum(1)
    metrics["per_class_accuracy"] = {c: (float(confusion[i, i] / support[i]) if support[i] else None)
                                     for i, c in enumerate(classes)}
    metrics["confusion_matrix"] = confusion.tolist()
    return metrics


def seed_summary(per_seed: pd.DataFrame, classes: tuple[str, ...], modalities: str) -> dict:
    """Each seed's accuracy and UAR (mean over folds), and their mean and std over seeds."""
    scores = {int(seed): summarize(rows, classes, modalities) for seed, rows in per_seed.groupby("seed")}
    summary = {"seeds": list(scores)}
    for name in ("accuracy", "uar"):
        values = np.array([m[f"{name}_mean"] for m in scores.values()])
        summary |= {f"{name}_per_seed": values.tolist(), f"{name}_mean": float(values.mean()),
                    f"{name}_std_over_seeds": float(values.std())}
    return summary
