"""Entropy analysis (MATER journal section 4.2.1): entropies, KL, per-clip table, layer entropies, summaries."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mer_lib import plots
from mer_lib.analysis import entropy as ent
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.models.mater import Mater, MaterConfig
from mer_lib.models.outputs import ModelOutput


def test_entropy_of_known_distributions():
    assert ent.entropy(np.full(8, 1 / 8)) == pytest.approx(math.log(8))
    assert ent.entropy(np.array([0.0, 1.0, 0.0])) == 0.0  # 0 log 0 = 0, no NaN
    assert ent.entropy(np.array([0.75, 0.25])) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    batch = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    values = ent.entropy(batch)
    assert isinstance(values, torch.Tensor)
    torch.testing.assert_close(values, torch.tensor([math.log(2), 0.0]))
    columns = ent.entropy(np.array([[0.5, 1.0], [0.5, 0.0]]), dim=0)  # distributions down the columns
    np.testing.assert_allclose(columns, [math.log(2), 0.0])


def test_kl_divergence_of_known_distributions():
    p = np.array([0.75, 0.25])
    assert ent.kl_divergence(p, p) == pytest.approx(0.0)
    # KL((3/4, 1/4) || (1/2, 1/2)) = 3/4 log(3/2) + 1/4 log(1/2)
    assert ent.kl_divergence(p, [0.5, 0.5]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert ent.kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert ent.kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    torch.testing.assert_close(ent.kl_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])),
                               torch.tensor([math.log(2)]))


def two_clip_output() -> tuple[ModelOutput, torch.Tensor]:
    """Clip 0: audio uniform, video certain of class 0, fused logits favour class 0; label 0.
    Clip 1: audio and video both (3/4, 1/4) over classes (1, 0), fused favours class 0; label 1."""
    log = torch.log
    audio = torch.stack([torch.zeros(2), log(torch.tensor([0.25, 0.75]))])
    video = torch.stack([torch.tensor([20.0, -20.0]), log(torch.tensor([0.25, 0.75]))])
    fused = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    return ModelOutput(fused, {"a": audio, "v": video}), torch.tensor([0, 1])


def test_prediction_entropies_per_clip():
    output, labels = two_clip_output()
    table = ent.prediction_entropies(output, labels, classes=("happy", "sad"))
    h34 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    np.testing.assert_allclose(table["entropy_a"], [math.log(2), h34], atol=1e-6)
    np.testing.assert_allclose(table["entropy_v"], [0.0, h34], atol=1e-6)
    np.testing.assert_allclose(table["entropy_gap"], [math.log(2), 0.0], atol=1e-6)
    # KL(uniform || one-hot on class 0) = 1/2 log(1/2 / 1) + 1/2 log(1/2 / e^-40): large; identical -> 0
    assert table["kl_av"][0] > 15 and table["kl_av"][1] == pytest.approx(0.0, abs=1e-6)
    assert table["correct"].tolist() == [True, False]
    assert table["correct_a"].tolist() == [True, True]  # argmax of a uniform row is class 0
    assert table["correct_v"].tolist() == [True, True]
    assert table["emotion"].tolist() == ["happy", "sad"]
    p_fused = torch.tensor([[1.0, 0.0], [2.0, 0.0]]).softmax(1).numpy()
    np.testing.assert_allclose(table["entropy_fused"], ent.entropy(p_fused), atol=1e-6)


def test_entropies_from_predictions_table_match_the_model_output():
    output, labels = two_clip_output()
    classes = ("happy", "sad")
    columns = {}
    for prefix, logits in (("p_", output.logits), ("p_a_", output.modality_logits["a"]),
                           ("p_v_", output.modality_logits["v"])):
        columns |= {f"{prefix}{c}": p for c, p in zip(classes, logits.softmax(1).numpy().T)}
    predictions = pd.DataFrame({"id": ["x", "y"], "fold": [0, 1], "emotion": ["happy", "sad"], "label": [0, 1]}
                               | columns)
    table = ent.entropies_from_predictions(predictions, classes)
    expected = ent.prediction_entropies(output, labels)
    for measure in ent.MEASURES:
        np.testing.assert_allclose(table[measure].astype(float), expected[measure].astype(float), atol=1e-6)
    assert table[["id", "fold", "emotion"]].values.tolist() == [["x", 0, "happy"], ["y", 1, "sad"]]
    audio_only = ent.entropies_from_predictions(predictions.drop(columns=["p_v_happy", "p_v_sad"]), classes)
    assert [m for m in ent.MEASURES if m in audio_only] == ["entropy_a", "entropy_fused", "correct", "correct_a"]
    np.testing.assert_allclose(audio_only["entropy_a"], expected["entropy_a"], atol=1e-6)
    with pytest.raises(MerError, match="audio or video head"):
        ent.entropies_from_predictions(predictions.drop(columns=[c for c in predictions if c.startswith("p_a_")
                                                                 or c.startswith("p_v_")]), classes)
    with pytest.raises(MerError, match="predictions table"):
        ent.entropies_from_predictions(predictions, ("angry", "sad"))


class InputAsHidden(nn.Module):
    """A stand-in encoder whose layer l's hidden states are l times its input windows."""

    def forward(self, audio=None, video=None, audio_mask=None, video_mask=None, return_internals=False):
        hidden = {m: [x, 2 * x] for m, x in (("a", audio), ("v", video)) if x is not None}
        logits = torch.zeros(len(audio), 2)
        return ModelOutput(logits, {m: logits for m in hidden}, hidden=hidden if return_internals else {})


def binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_layer_entropies_of_known_hidden_states():
    # Audio: present windows [0, 0] (softmax uniform: log 2); padded windows [50, 0] would give ~0 and must not count.
    # Video: every window [log 3, 0] -> layer 1 softmax (3/4, 1/4); layer 2 [2 log 3, 0] -> (9/10, 1/10).
    audio = np.zeros((3, 4, 2), np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    audio[~mask] = [50.0, 0.0]
    video = np.tile(np.float32([math.log(3), 0.0]), (3, 4, 1))
    data = ClipData.from_numpy([0, 1, 0], 2, audio=audio, audio_mask=mask, video=video)
    table = ent.layer_entropies(InputAsHidden(), data, batch_size=2)
    assert table[["modality", "layer"]].values.tolist() == [["a", 1], ["a", 2], ["v", 1], ["v", 2]]
    expected = [math.log(2), math.log(2), binary_entropy(0.75), binary_entropy(0.9)]
    np.testing.assert_allclose(table["entropy"], expected, atol=1e-6)


def test_layer_entropies_of_a_tiny_mater_and_the_baseline_without_hidden_states():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Mater(MaterConfig(n_classes=3, d_audio=6, d_video=5, d_model=8, heads=2, layers=3, d_ff=16))
    data = ClipData.from_numpy(rng.integers(0, 3, 5), 3, audio=rng.normal(size=(5, 4, 6)),
                               video=rng.normal(size=(5, 4, 5)))
    table = ent.layer_entropies(model, data)
    assert len(table) == 6 and sorted(table["layer"].unique()) == [1, 2, 3]
    assert ((table["entropy"] > 0) & (table["entropy"] <= math.log(8) + 1e-6)).all()
    assert model.training is False


def test_gap_correctness_and_summaries():
    df = pd.DataFrame({"emotion": ["happy", "happy", "sad", "sad"], "entropy_gap": [0.1, 0.3, 0.9, 0.7],
                       "correct": [True, True, False, True], "entropy_a": [1.0, 2.0, 3.0, 4.0]})
    result = ent.gap_correctness(df)
    assert result["mean_gap_correct"] == pytest.approx((0.1 + 0.3 + 0.7) / 3)
    assert result["mean_gap_wrong"] == pytest.approx(0.9)
    assert (result["n_correct"], result["n_wrong"]) == (3, 1)
    expected = np.corrcoef(df["entropy_gap"], df["correct"].astype(float))[0, 1]
    assert result["r"] == pytest.approx(expected) and result["r"] < 0  # bigger gap, more often wrong
    all_right = ent.gap_correctness(df.assign(correct=True))
    assert math.isnan(all_right["r"]) and math.isnan(all_right["mean_gap_wrong"])

    summary = ent.summarise(df)
    assert summary["emotion"].tolist() == ["happy", "sad"]
    np.testing.assert_allclose(summary["entropy_gap"], [0.2, 0.8])
    np.testing.assert_allclose(summary["correct"], [1.0, 0.5])
    np.testing.assert_allclose(summary["entropy_a"], [1.5, 3.5])
    assert summary["n"].tolist() == [2, 2]
    with pytest.raises(MerError, match="no such column"):
        ent.summarise(df, by="actor")


def test_layer_gap_averages_folds_per_layer():
    table = pd.DataFrame({"fold": [0, 0, 0, 0, 1, 1, 1, 1], "modality": ["a", "a", "v", "v"] * 2,
                          "layer": [1, 2, 1, 2] * 2, "entropy": [4.0, 3.0, 3.0, 3.0, 4.2, 3.2, 3.4, 3.0]})
    gap = ent.layer_gap(table)
    assert gap["layer"].tolist() == [1, 2]
    np.testing.assert_allclose(gap["entropy_a"], [4.1, 3.1])
    np.testing.assert_allclose(gap["entropy_v"], [3.2, 3.0])
    np.testing.assert_allclose(gap["entropy_gap"], [0.9, 0.1])
    with pytest.raises(MerError, match="audio and video"):
        ent.layer_gap(table[table["modality"] == "a"])


def test_entropy_by_emotion_figure_has_a_box_group_per_emotion():
    table = pd.DataFrame({"model": ["attention"] * 4 + ["baseline"] * 4, "emotion": ["happy", "sad"] * 4,
                          "entropy_gap": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]})
    fig = plots.entropy_by_emotion(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["happy", "sad"]
    assert ax.get_ylabel() == "|H_a - H_v| (nats)"
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["attention", "baseline"]
    plt.close(fig)
