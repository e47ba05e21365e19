"""The baseline ladder: chance, logistic regression and an RBF SVM on clip-level features.

A reviewer's first question about an attention model is how far a plain classifier on the same
features and the same subject-disjoint folds gets. The ladder answers it with three rungs, trained
by `mer train --model majority|logreg|svm` into the same run-folder artifacts as every network:

- ``majority``: chance. It always predicts the most frequent training class; its probabilities are
  the training class frequencies (scikit-learn's DummyClassifier, strategy "prior").
- ``logreg``: StandardScaler + multinomial LogisticRegression (L2), C chosen from `LOGREG_C`. Between
  the two sits `RowSpace`, the coordinates of each clip in the span of the training clips: an L2
  penalised linear model's weights lie in that span, so the fit is the same, but with ComParE's 6373
  values per clip and about 600 training clips it solves for 600 weights per class instead of 6373.
  On the dev RAVDESS ComParE clip store (fold 0, 598 training clips) a fit takes 0.7-1 s instead of
  3.4-6 s, and a fold's whole nested search 20 s. The newton-cg solver converges in 10-20 iterations
  where lbfgs needed 100-500.
- ``svm``: StandardScaler + SVC with an RBF kernel, C from `SVM_C` and gamma from `SVM_GAMMA` / d.
  The kernel reaches libsvm as `RbfKernel`, a callable, so scikit-learn computes the Gram matrix in
  one BLAS product: on 6373 ComParE dimensions that fits 3.5 times faster than libsvm's own pairwise
  kernel, with the same decision values (to 1e-14). The probabilities are a softmax over the
  one-vs-rest decision values (``break_ties``, so their argmax is the SVM's own prediction), not
  Platt scaling: ``probability=True`` refits five internal SVMs per fit on splits that ignore actors,
  its probabilities can disagree with the prediction, and scikit-learn 1.9 deprecates it. The softmax
  scores rank the classes as the SVM does but are not calibrated.

Everything runs on one thread (``n_jobs=1`` and one BLAS thread): on the shared 2-core development
machine OpenBLAS's threads made a 480 x 480 eigendecomposition take 3.6 s instead of 0.03 s.

Clip-level features (`window_statistics`): a clip-level store (T == 1, one window spanning the whole
clip, e.g. eGeMAPS or ComParE functionals) gives its row as it is; a windowed store gives the mean and
the standard deviation over each clip's present windows, concatenated (2d values). With two
modalities the audio features come first, then the video features.

Selection is nested: `fit` sees only the training and validation actors of an outer fold. The scaler
sits inside the pipeline, and the grid is searched by an inner GroupKFold over those actors (at most
`INNER_FOLDS` splits, never splitting an actor), scored by unweighted average recall (balanced
accuracy, robust to CREMA-D's uneven classes); the best setting is refitted on all of them. Test
actors reach only `LadderModel.probabilities`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from mer_lib.errors import MerError
from mer_lib.models.registry import LADDER

# The grids bracket what the inner searches chose on the dev RAVDESS stores (12 actors, 6 folds).
# logreg: C = 0.01-0.1 on eGeMAPS, 0.01-1 on ComParE (fold 0 of eGeMAPS: inner UAR 0.45 at 0.01,
# 0.30 at 1e-4, 0.39 at 100). SVM on eGeMAPS: C = 10-1000, gamma = 0.01-1 / d; gamma = 10 / d fell to
# 0.13-0.20 and C = 0.1 to 0.32. On ComParE every fold chose C = 1000 at the top of the grid: there the
# training clips are separable and larger C (tried up to 1e5, folds 0 and 3) moved the inner UAR by
# less than 0.01.
LOGREG_C = tuple(10.0 ** np.arange(-3, 3))
SVM_C = tuple(10.0 ** np.arange(0, 4))
SVM_GAMMA = (0.01, 0.1, 1.0)  # times 1/d: 1/d is scikit-learn's "scale" on standardised features
INNER_FOLDS = 5


def window_statistics(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Clip-level features of one modality's windows (N, T, d) with their mask (N, T).

    T == 1: the row itself (N, d), whatever its mask says (a clip-level store has one window per
    clip). T > 1: mean and standard deviation over the present windows, concatenated (N, 2d); a clip
    without any present window gets zeros.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or np.shape(mask) != x.shape[:2]:
        raise MerError(f"window features need windows (N, T, d) and a mask (N, T), got {x.shape} and "
                       f"{np.shape(mask)}")
    if x.shape[1] == 1:
        return x[:, 0]
    weight = np.asarray(mask, dtype=np.float64)[..., None]
    count = np.maximum(weight.sum(1), 1.0)
    mean = (x * weight).sum(1) / count
    std = np.sqrt((((x - mean[:, None]) ** 2) * weight).sum(1) / count)
    return np.concatenate([mean, std], axis=1)


def clip_features(data) -> np.ndarray:
    """The clip-level features of every clip of `data` (a mer_lib.data.clips.ClipData on the CPU): audio, then video."""
    parts = [window_statistics(np.asarray(x), np.asarray(mask))
             for x, mask in ((data.audio, data.audio_mask), (data.video, data.video_mask)) if x is not None]
    return np.concatenate(parts, axis=1)


class RowSpace(TransformerMixin, BaseEstimator):
    """Coordinates in an orthonormal basis of the span of the training rows (see the module docstring).

    An L2-penalised linear model fitted on these coordinates is the model fitted on the rows themselves
    (its weights lie in that span), with at most as many coordinates as training rows.
    """

    def fit(self, x: np.ndarray, y=None) -> RowSpace:
        """The basis V of x = U S V^T from the n x n Gram matrix x x^T = U S^2 U^T, as V = x^T U S^-1
        (five times faster than an SVD of 600 x 6373); directions below 1e-5 of the largest singular
        value are left out. With no more dimensions than rows there is nothing to gain: the identity."""
        if x.shape[1] <= x.shape[0]:
            self.basis_ = np.eye(x.shape[1])
            return self
        values, vectors = np.linalg.eigh(x @ x.T)
        keep = values > values[-1] * 1e-10
        self.basis_ = x.T @ (vectors[:, keep] / np.sqrt(values[keep]))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x @ self.basis_


@dataclass(frozen=True)
class RbfKernel:
    """The RBF kernel exp(-gamma ||x - y||^2) as a callable for SVC (see the module docstring for why)."""

    gamma: float

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return rbf_kernel(x, y, gamma=self.gamma)


@dataclass
class LadderModel:
    """A fitted rung of the ladder and the hyperparameters its inner search chose."""

    estimator: object  # a fitted DummyClassifier or scikit-learn Pipeline
    n_classes: int
    chosen: dict  # e.g. {"C": 1.0, "inner_uar": 0.41}; empty for the majority baseline

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, n_classes) class probabilities; classes absent from the training clips get 0."""
        if isinstance(self.estimator, Pipeline) and isinstance(self.estimator[-1], SVC):
            scores = self.estimator.decision_function(features)
            scores = np.column_stack([-scores, scores]) / 2 if scores.ndim == 1 else scores  # two classes
            seen = np.exp(scores - scores.max(1, keepdims=True))
            seen /= seen.sum(1, keepdims=True)
        else:
            seen = self.estimator.predict_proba(features)
        full = np.zeros((len(features), self.n_classes))
        full[:, self.estimator.classes_] = seen
        return full


def search_space(model: str, n_features: int) -> tuple[Pipeline, dict]:
    """The scaled pipeline of `model` ("logreg" or "svm") and its hyperparameter grid."""
    if model == "logreg":
        steps = [("span", RowSpace()), ("clf", LogisticRegression(solver="newton-cg", max_iter=1000))]
        grid = {"clf__C": list(LOGREG_C)}
    elif model == "svm":
        steps = [("clf", SVC(break_ties=True))]
        grid = {"clf__C": list(SVM_C), "clf__kernel": [RbfKernel(g / n_features) for g in SVM_GAMMA]}
    else:
        raise MerError(f"unknown ladder model {model!r} (choose {', '.join(LADDER)})")
    return Pipeline([("scale", StandardScaler()), *steps]), grid


def fit(model: str, features: np.ndarray, labels: np.ndarray, actors: np.ndarray, n_classes: int) -> LadderModel:
    """Fit rung `model` on the training and validation clips of one outer fold (never its test actors).

    logreg and svm choose their hyperparameters by an inner GroupKFold over `actors`, scored by
    unweighted average recall, and are refitted with the best setting on all the clips given. With a
    single training actor there is no actor to hold out, and scikit-learn's defaults are used (and recorded).
    """
    if model == "majority":
        return LadderModel(DummyClassifier(strategy="prior").fit(features, labels), n_classes, {})
    estimator, grid = search_space(model, features.shape[1])
    n_actors = len(np.unique(actors))
    if n_actors < 2:  # nothing to hold out: scikit-learn's defaults (C = 1, gamma = 1/d), recorded as such
        defaults = {"clf__C": 1.0} | ({"clf__kernel": RbfKernel(1.0 / features.shape[1])} if model == "svm" else {})
        with threadpool_limits(1):
            fitted = estimator.set_params(**defaults).fit(features, labels)
        return LadderModel(fitted, n_classes, {"C": 1.0, "selection": "none: a single training actor"})
    search = GridSearchCV(estimator, grid, scoring="balanced_accuracy", cv=GroupKFold(min(INNER_FOLDS, n_actors)),
                          n_jobs=1, error_score="raise")
    with threadpool_limits(1):
        search.fit(features, labels, groups=actors)
    best = search.best_params_
    chosen = {"C": float(best["clf__C"])} | ({"gamma": best["clf__kernel"].gamma} if "clf__kernel" in best else {})
    return LadderModel(search.best_estimator_, n_classes, chosen | {"inner_uar": float(search.best_score_)})
