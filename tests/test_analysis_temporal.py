"""Recognition over time (MATER journal section 6): first windows, incremental accuracy, response times, humans."""
from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib import analysis
from mer_lib.analysis import temporal
from mer_lib.data.clips import ClipData
from mer_lib.data.cremad import CLASSES
from mer_lib.errors import MerError
from mer_lib.models.mater import Mater, MaterConfig
from mer_lib.run_folder import TrainedRun
from mer_lib.train import predict

N, T = 10, 5


def clip_data(seed: int = 0) -> ClipData:
    rng = np.random.default_rng(seed)
    mask = np.ones((N, T), bool)
    mask[0, 3:] = False  # a short clip
    return ClipData.from_numpy(rng.integers(0, 3, N), 3, audio=rng.normal(size=(N, T, 6)), audio_mask=mask,
                               video=rng.normal(size=(N, T, 4)))


def tiny_mater() -> Mater:
    torch.manual_seed(0)
    return Mater(MaterConfig(n_classes=3, d_audio=6, d_video=4, d_model=8, heads=2, layers=2, d_ff=16))


def test_first_windows_masks_and_zeroes_the_rest():
    data = clip_data()
    cut = temporal.first_windows(data, 2)
    assert cut.audio_mask[:, :2].all() and not cut.audio_mask[:, 2:].any() and not cut.video_mask[:, 2:].any()
    assert torch.equal(cut.audio[:, :2], data.audio[:, :2]) and not cut.audio[:, 2:].any()
    assert torch.equal(cut.video[:, :2], data.video[:, :2]) and not cut.video[:, 2:].any()
    full = temporal.first_windows(data, T)
    assert torch.equal(full.audio_mask, data.audio_mask) and torch.equal(full.audio, data.audio)
    assert data.audio_mask[1].all()  # the input is untouched
    for t in (0, T + 1):
        with pytest.raises(MerError, match=r"1\.\.5"):
            temporal.first_windows(data, t)


def test_incremental_evaluation_at_t_equals_full_prediction():
    model, data = tiny_mater(), clip_data()
    predicted = temporal.incremental_predictions(model, data)
    assert set(predicted) == {"fused", "a", "v"} and predicted["fused"].shape == (N, T)
    full = predict(model, data)
    assert (predicted["fused"][:, -1] == full.logits.argmax(1).numpy()).all()
    assert (predicted["a"][:, -1] == full.modality_logits["a"].argmax(1).numpy()).all()
    after_two = predict(model, temporal.first_windows(data, 2))
    assert (predicted["v"][:, 1] == after_two.modality_logits["v"].argmax(1).numpy()).all()

    curve = temporal.incremental_accuracy(model, data)
    assert list(curve.columns) == ["t", "accuracy", "accuracy_a", "accuracy_v"]
    assert curve["t"].tolist() == list(range(1, T + 1))
    labels = data.labels.numpy()
    assert curve["accuracy"].iloc[-1] == pytest.approx((full.logits.argmax(1).numpy() == labels).mean())
    assert curve["accuracy_v"].iloc[1] == pytest.approx((predicted["v"][:, 1] == labels).mean())


def test_response_times_of_hand_made_sequences():
    r, w = 1, 0  # label 1: r is right, w wrong
    predicted = np.array([[w, r, w, r, r],   # right from 4 on; first right at 2
                          [r, r, r, r, r],   # right throughout
                          [r, w, w, w, w],   # wrong at T, was right at 1
                          [w, w, w, w, w],   # never right
                          [w, w, w, w, r]])  # right only at T
    table = temporal.response_times(predicted, np.ones(5, int), window=0.25)
    assert table["correct"].tolist() == [True, True, False, False, True]
    np.testing.assert_array_equal(table["stable_window"], [4, 1, np.nan, np.nan, 5])
    np.testing.assert_array_equal(table["first_window"], [2, 1, 1, np.nan, 5])
    np.testing.assert_allclose(table["stable_time"], [1.0, 0.25, np.nan, np.nan, 1.25])
    np.testing.assert_allclose(table["first_time"], [0.5, 0.25, 0.25, np.nan, 1.25])
    with pytest.raises(MerError, match="clips, T"):
        temporal.response_times(predicted[:, 0], np.ones(5, int), 0.25)
    with pytest.raises(MerError, match="positive"):
        temporal.response_times(predicted, np.ones(5, int), 0.0)


def test_response_time_constants_are_the_papers():
    assert temporal.HUMAN_RESPONSE_TIME["cremad"] == {"a": 2.98, "v": 2.05, "av": 1.95}
    assert temporal.HUMAN_RESPONSE_TIME["ravdess"] == {"a": 1.55, "v": 1.31, "av": 1.32}
    assert temporal.PAPER_MODEL_RESPONSE_TIME["ravdess"] == {"a": 2.01, "v": 1.38, "av": 1.45}


def test_vote_credit_counts_ties():
    assert temporal.vote_credit("A", "angry") == 1.0
    assert temporal.vote_credit("N:S", "sad") == 0.5
    assert temporal.vote_credit("A:D:N", "happy") == 0.0
    assert math.isnan(temporal.vote_credit(None, "sad"))


def test_human_vs_model_per_emotion():
    classes = CLASSES  # neutral, happy, sad, angry, fearful, disgust
    votes = pd.DataFrame({"id": ["c1", "c2", "c3", "c4"], "human_voice_vote": ["A", "N", "N:S", "S"],
                          "human_face_vote": ["A", "A", "S", "S"], "human_av_vote": ["A", "A:D", "S", "S"]})

    def probs(prefix, predicted):  # one-hot probabilities of the predicted classes
        return {f"{prefix}{c}": [float(p == i) for p in predicted] for i, c in enumerate(classes)}

    angry, sad = classes.index("angry"), classes.index("sad")
    predictions = pd.DataFrame({"id": ["c1", "c2", "c3", "c4", "c5"], "label": [angry, angry, sad, sad, sad]}
                               | probs("p_", [angry, sad, sad, sad, sad])
                               | probs("p_a_", [angry, angry, angry, sad, sad])
                               | probs("p_v_", [sad, sad, sad, sad, sad]))
    table = temporal.human_vs_model(votes, predictions, classes).set_index("emotion")
    assert table.index.tolist() == ["sad", "angry", "all"]  # the classes' order, then all clips
    assert table.loc["angry", "human_a"] == 0.5 and table.loc["angry", "human_av"] == 0.75
    assert table.loc["sad", "human_a"] == 0.75 and table.loc["sad", "human_v"] == 1.0
    assert table.loc["angry", "model_a"] == 1.0 and table.loc["angry", "model_v"] == 0.0
    assert table.loc["angry", "model_av"] == 0.5 and table.loc["sad", "model_a"] == 0.5
    assert table.loc["all", "human_a"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert table["n"].tolist() == [2, 2, 4]  # c5 has no votes
    with pytest.raises(MerError, match="no clip"):
        temporal.human_vs_model(votes.assign(id=["x1", "x2", "x3", "x4"]), predictions, classes)


def two_fold_run(models: dict, data: ClipData) -> TrainedRun:
    """A trained run whose fold 0 tests the first half of `data` and fold 1 the second half."""
    half = len(data) // 2
    return TrainedRun(None, SimpleNamespace(data=data), models, {0: np.arange(half), 1: np.arange(half, len(data))})


def test_over_folds_runs_each_fold_model_on_its_test_clips_and_stacks_results():
    data = clip_data()
    run = two_fold_run({0: "model 0", 1: "model 1"}, data)
    seen = []

    def analysis_of(model, test, offset):
        seen.append((model, test.labels.tolist()))
        return pd.DataFrame({"t": [1, 2], "accuracy": [offset, offset + (model == "model 1")]})

    table = analysis.over_folds(run, analysis_of, offset=0.5)
    assert seen == [("model 0", data.labels[:5].tolist()), ("model 1", data.labels[5:].tolist())]
    assert list(table.columns) == ["fold", "t", "accuracy"] and table["fold"].tolist() == [0, 0, 1, 1]
    averaged = analysis.mean_over_folds(table, "t")
    assert averaged.to_dict("list") == {"t": [1, 2], "accuracy": [0.5, 1.0]}
    stacked = analysis.stack({"first": averaged, "second": averaged.assign(accuracy=0.0)})
    assert list(stacked.columns) == ["model", "t", "accuracy"]
    assert stacked["model"].tolist() == ["first", "first", "second", "second"]


def test_incremental_over_folds_averages_folds_and_keeps_one_column_per_setting():
    data = clip_data()
    model = tiny_mater()
    curve = temporal.incremental_over_folds(two_fold_run({0: model, 1: model}, data))
    halves = [temporal.incremental_accuracy(model, data.take(range(a, b))) for a, b in ((0, 5), (5, N))]
    assert list(curve.columns) == ["t", "accuracy", "accuracy_a", "accuracy_v"]
    np.testing.assert_allclose(curve["accuracy_a"], (halves[0]["accuracy_a"] + halves[1]["accuracy_a"]) / 2)
    torch.manual_seed(0)
    audio_only = Mater(MaterConfig(n_classes=3, modalities="a", d_audio=6, d_model=8, heads=2, layers=1, d_ff=16))
    audio_data = replace(data, video=None, video_mask=None)
    curve = temporal.incremental_over_folds(two_fold_run({0: audio_only, 1: audio_only}, audio_data))
    assert list(curve.columns) == ["t", "accuracy_a"]  # its fused prediction is the audio head


def test_clip_response_times_per_setting_and_their_means():
    model, data = tiny_mater(), clip_data()
    table = temporal.clip_response_times(model, data, window=0.25)
    assert table["modality"].tolist() == ["av"] * N + ["a"] * N + ["v"] * N
    assert table["label"].tolist() == data.labels.tolist() * 3
    predicted = temporal.incremental_predictions(model, data)
    expected = temporal.response_times(predicted["a"], data.labels.numpy(), 0.25)
    pd.testing.assert_frame_equal(table[table["modality"] == "a"].drop(columns=["modality", "label"])
                                  .reset_index(drop=True), expected)

    hand = pd.DataFrame({"modality": ["a", "a", "a", "v", "av"], "correct": [True, True, False, True, False],
                         "stable_time": [1.0, 2.0, np.nan, 0.5, np.nan], "first_time": [0.5, 2.0, 1.0, 0.5, np.nan]})
    means = temporal.mean_response_times(hand, human={"a": 1.55, "v": 1.31, "av": 1.32}, paper={"a": 2.01})
    assert means["modality"].tolist() == ["a", "v", "av"]
    np.testing.assert_allclose(means["accuracy"], [2 / 3, 1.0, 0.0])
    assert means["n_correct"].tolist() == [2, 1, 0]
    np.testing.assert_allclose(means["stable_time"], [1.5, 0.5, np.nan])
    np.testing.assert_allclose(means["first_time"], [1.25, 0.5, np.nan])  # the wrong clip's 1.0 s is left out
    np.testing.assert_allclose(means["human"], [1.55, 1.31, 1.32])
    np.testing.assert_allclose(means["paper"], [2.01, np.nan, np.nan])


def test_peak_windows_names_the_first_best_t_per_column():
    curves = {"av": pd.DataFrame({"t": [1, 2, 3], "accuracy": [0.2, 0.6, 0.6], "accuracy_a": [0.5, 0.1, 0.2]}),
              "a": pd.DataFrame({"t": [1, 2, 3], "accuracy_a": [0.1, 0.2, 0.3]})}
    peaks = temporal.peak_windows(curves)
    assert peaks.index.tolist() == ["av", "a"]
    assert peaks.loc["av"].tolist() == [2, 1] and peaks.loc["a", "accuracy_a"] == 3
    assert pd.isna(peaks.loc["a", "accuracy"])
