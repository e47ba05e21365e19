"""Recognition over time (MATER journal section 6): first windows, incremental accuracy, response times, humans."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib.analysis import temporal
from mer_lib.data.cremad import CLASSES
from mer_lib.errors import MerError
from mer_lib.models.mater import Mater, MaterConfig
from mer_lib.train import ClipData, predict

N, T = 10, 5


def clip_data(seed: int = 0) -> ClipData:
    rng = np.random.default_rng(seed)
    mask = np.ones((N, T), bool)
    mask[0, 3:] = False  # a short clip
    return ClipData.from_numpy(rng.integers(0, 3, N), 3, audio=rng.normal(size=(N, T, 6)), audio_mask=mask,
                               video=rng.normal(size=(N, T, 4)))


def tiny_mater() -> Mater:
    torch.manual_seed(0)
    return Mater(MaterConfig(n_classes=3, d_audio=6, d_video=4, d_model=8, n_heads=2, n_layers=2, d_ff=16))


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
