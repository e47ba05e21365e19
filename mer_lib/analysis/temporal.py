"""Emotion recognition over time (Ghaleb et al. 2023, section 6, Figures 9-11).

Incremental perception (section 6.1): the model sees only the first t windows of each clip
(t = 1..T; the rest are masked out) and its accuracy is plotted against t, per head. Response time
(section 6.2): for each correctly classified clip, the time t * w from which its prediction is
right; the paper sets the mean per modality beside the mean response times of human raters
reported by the CREMA-D and RAVDESS authors.

The paper's measure: "we only consider the correctly classified samples ... if a video was
correctly classified through the audio modality in the 4th time window of 0.25 second duration,
then the response time is set to 1 second", and Figure 11 counts clips "correctly classified
starting from" a window. `response_times` gives both readings: ``stable_window`` (right from t
on, through T) and ``first_window`` (right at t for the first time).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mer_lib.analysis import (
    accuracy_column,
    head_logits,
    mean_over_folds,
    model_device,
    over_folds,
)
from mer_lib.data import cremad
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import MerError
from mer_lib.train import predict

# Mean human response times in seconds, per modality (a: audio only, v: video only, av: both), as
# quoted in the MATER journal paper, section 6.2: CREMA-D from Cao et al. 2014 (2.98, 2.05, 1.95 s),
# RAVDESS from Livingstone and Russo 2018 (1.55, 1.31, 1.32 s).
HUMAN_RESPONSE_TIME = {"ravdess": {"a": 1.55, "v": 1.31, "av": 1.32},
                       "cremad": {"a": 2.98, "v": 2.05, "av": 1.95}}
# MATER's mean response times on RAVDESS (section 6.2, Figure 11a): 2.01, 1.38, 1.45 s.
PAPER_MODEL_RESPONSE_TIME = {"ravdess": {"a": 2.01, "v": 1.38, "av": 1.45}}
# The modality setting of each prediction head, as the response-time constants name them.
HEAD_MODALITY = {"fused": "av", "a": "a", "v": "v"}


def first_windows(data, t: int):
    """The clips as if only their first t windows had been recorded: windows t+1..T zeroed and masked out."""
    n_windows = data.n_windows
    if not isinstance(t, (int, np.integer)) or not 1 <= t <= n_windows:
        raise MerError(f"t={t!r} windows: it must be an integer in 1..{n_windows} (T)")
    changes = {}
    for name in MODALITY_NAMES.values():
        x, mask = getattr(data, name), getattr(data, f"{name}_mask")
        if x is None:
            continue
        kept = torch.arange(n_windows, device=x.device) < t
        present = kept if mask is None else mask & kept
        changes |= {name: x * kept[:, None].to(x.dtype), f"{name}_mask": present.expand(x.shape[:2]).clone()}
    return replace(data, **changes)


def incremental_predictions(model, data) -> dict[str, np.ndarray]:
    """Per head ("fused", "a", "v" as the model has them) the (N, T) predicted labels after t = 1..T windows."""
    data = data.to(model_device(model))
    columns: dict[str, list[np.ndarray]] = {}
    for t in tqdm(range(1, data.n_windows + 1), desc="first t windows", leave=False, disable=None):
        for head, logits in head_logits(predict(model, first_windows(data, t))).items():
            columns.setdefault(head, []).append(logits.argmax(1).cpu().numpy())
    return {head: np.stack(predicted, axis=1) for head, predicted in columns.items()}


def incremental_accuracy(model, data) -> pd.DataFrame:
    """Accuracy per head when only the first t windows are seen (Figures 9-10).

    Rows t = 1..T; columns accuracy (fused), accuracy_a, accuracy_v (for the heads the model has).
    At t = T this is the plain evaluation of the whole clips.
    """
    labels = data.labels.cpu().numpy()[:, None]
    table = {"t": np.arange(1, data.n_windows + 1)}
    for head, predicted in incremental_predictions(model, data).items():
        table[accuracy_column(head)] = (predicted == labels).mean(0)
    return pd.DataFrame(table)


def response_times(predicted: np.ndarray, labels: np.ndarray, window: float) -> pd.DataFrame:
    """When each clip's prediction becomes right, from its (N, T) predictions after t = 1..T windows.

    Columns: correct (right after all T windows), stable_window (first t from which the prediction
    is right through T; NaN for clips wrong at T), first_window (first t at which it is right;
    NaN if never), and stable_time / first_time in seconds (t * window).
    """
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.ndim != 2 or len(predicted) != len(labels):
        raise MerError(f"predictions must be (clips, T) with one row per label (got {predicted.shape} "
                       f"for {len(labels)} labels)")
    if not window > 0:
        raise MerError(f"the window length must be positive seconds (got {window})")
    n_windows = predicted.shape[1]
    hits = predicted == labels[:, None]
    correct = hits[:, -1]
    right_to_end = np.cumprod(hits[:, ::-1], axis=1).sum(1)  # length of the run of right predictions ending at T
    stable = np.where(correct, n_windows - right_to_end + 1, np.nan)
    first = np.where(hits.any(1), hits.argmax(1) + 1, np.nan)
    return pd.DataFrame({"correct": correct, "stable_window": stable, "first_window": first,
                         "stable_time": stable * window, "first_time": first * window})


def _settings(heads) -> list[str]:
    """The heads that are distinct modality settings: the fused one only when it fuses two heads
    (a one-modality model's fused prediction is its single head)."""
    heads = list(heads)
    return [h for h in heads if h not in ("fused", "accuracy") or len(heads) > 2]


def incremental_over_folds(trained) -> pd.DataFrame:
    """`incremental_accuracy` on every fold's test clips of a trained run, averaged over the folds.

    Rows t = 1..T; one accuracy column per modality setting (see `_settings`): accuracy,
    accuracy_a and accuracy_v for an audio-visual run, only accuracy_a (or accuracy_v) for a
    one-modality run, so its curve sits beside the matching head of a fused model.
    """
    table = mean_over_folds(over_folds(trained, incremental_accuracy), "t")
    return table[["t"] + _settings(c for c in table if c != "t")]


def peak_windows(curves: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The window t at which each accuracy column of each `incremental_accuracy`-like table peaks
    (the first such t): one row per name of `curves`, <NA> where a table lacks the column."""
    return pd.DataFrame({name: curve.set_index("t").idxmax() for name, curve in curves.items()}).T.astype("Int64")


def clip_response_times(model, data, window: float) -> pd.DataFrame:
    """`response_times` of every clip for each modality setting the model predicts, one row per clip
    and setting: a column modality ("a", "v", or "av" for the fused prediction) and label first."""
    labels = data.labels.cpu().numpy()
    predicted = incremental_predictions(model, data)
    tables = [response_times(predicted[head], labels, window).assign(modality=HEAD_MODALITY[head], label=labels)
              for head in _settings(predicted)]
    table = pd.concat(tables, ignore_index=True)
    return table[["modality", "label"] + [c for c in table if c not in ("modality", "label")]]


def mean_response_times(table: pd.DataFrame, human: dict | None = None, paper: dict | None = None) -> pd.DataFrame:
    """Mean response time (s) of the correctly classified clips per modality setting, beside the
    human raters' (`human`, e.g. HUMAN_RESPONSE_TIME["ravdess"]) and the paper's MATER (`paper`).

    `table` holds `clip_response_times` rows. Columns: modality, accuracy (share of clips right
    after all T windows), n_correct, stable_time, first_time, human, paper (NaN where not given).
    """
    order = [m for m in ("a", "v", "av") if m in set(table["modality"])]
    right = table[table["correct"].astype(bool)].groupby("modality")
    summary = pd.DataFrame({"accuracy": table.groupby("modality")["correct"].mean(), "n_correct": right.size()})
    summary = summary.join(right[["stable_time", "first_time"]].mean()).reindex(order)
    summary["n_correct"] = summary["n_correct"].fillna(0).astype(int)
    summary["human"] = [(human or {}).get(m, np.nan) for m in order]
    summary["paper"] = [(paper or {}).get(m, np.nan) for m in order]
    return summary.rename_axis("modality").reset_index()


# ---------------------------------------------------------------- humans beside the model (CREMA-D)

# summaryTable.csv votes name emotions by the first letter of CREMA-D's codes (A, D, F, H, N, S);
# ties between emotions are joined with ":" ("N:S").
VOTE_LETTERS = {code[0]: name for code, name in cremad.EMOTIONS.items()}
_VOTE_COLUMNS = {"a": "human_voice_vote", "v": "human_face_vote", "av": "human_av_vote"}


def vote_credit(vote, emotion: str) -> float:
    """How far a clip's majority vote names its intended emotion: 1 when it does, 1/n for an n-way
    tie that includes it (the chance a tie-break picks it), 0 otherwise; NaN when there is no vote
    (pandas means then leave the clip out).
    """
    if not isinstance(vote, str) or not vote.strip():
        return float("nan")
    named = [VOTE_LETTERS.get(letter.strip()) for letter in vote.split(":")]
    return named.count(emotion) / len(named)


def human_vs_model(votes: pd.DataFrame, predictions: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """Human recognition per modality beside the model's accuracy per head, per emotion (CREMA-D).

    `votes` is ``mer_lib.data.cremad.human_votes`` (id and human_{voice,face,av}_vote); `predictions`
    a run's predictions.csv (id, label and p_<class>, p_a_<class>, p_v_<class>). Only clips in both
    are compared. Rows: one per emotion and "all"; columns human_a, human_v, human_av (share of the
    raters' majority votes naming the intended emotion, see `vote_credit`), model_a, model_v,
    model_av (accuracy of the audio, video and fused heads the model has) and n (clips).
    """
    if "id" not in votes or "id" not in predictions:
        raise MerError("human_vs_model needs an id column in both the votes and the predictions")
    clips = predictions.merge(votes, on="id", how="inner")
    if clips.empty:
        raise MerError("no clip of the predictions has human votes (are they CREMA-D clips with summaryTable.csv?)")
    emotions = np.asarray(classes)[clips["label"].to_numpy()]
    scores = pd.DataFrame({"emotion": emotions})
    for m, column in _VOTE_COLUMNS.items():
        if column in clips:
            scores[f"human_{m}"] = [vote_credit(v, e) for v, e in zip(clips[column], emotions)]
    for m, prefix in (("a", "p_a_"), ("v", "p_v_"), ("av", "p_")):
        columns = [f"{prefix}{c}" for c in classes]
        if all(c in clips for c in columns):
            scores[f"model_{m}"] = clips[columns].to_numpy().argmax(1) == clips["label"].to_numpy()
    per_emotion = scores.groupby("emotion").mean().reindex([c for c in classes if c in set(emotions)])
    overall = scores.drop(columns="emotion").mean().rename("all").to_frame().T
    table = pd.concat([per_emotion, overall]).astype(float)
    counts = scores.groupby("emotion").size()
    table["n"] = [int(counts[e]) for e in per_emotion.index] + [len(scores)]
    return table.rename_axis("emotion").reset_index()
