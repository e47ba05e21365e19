"""Figures build from small inputs without error and draw what they say."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from mer_lib import plots


def test_dataset_figures():
    manifest = pd.DataFrame({"actor": [1, 1, 2, 2], "emotion": ["happy", "sad", "happy", "sad"],
                             "duration": [3.0, 3.2, 2.9, 3.1], "status": "ok"})
    fig = plots.class_balance(manifest, ("happy", "sad", "angry"))
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["happy", "sad", "angry"]
    assert len(plots.durations(manifest, 0.5, 6).axes[0].lines) == 1
    assert len(plots.waveform(np.zeros(1600), 16000, 0.05, 2).axes[0].lines) == 4  # signal + 3 boundaries


def test_feature_figures():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    assert len(plots.face_chips(frames, np.arange(10) / 10, n=4).axes) == 4
    assert len(plots.log_mel(rng.normal(size=(50, 64)), 0.01, 0.25, 2).axes[0].lines) == 3
    X = rng.normal(size=(6, 4, 8))
    mask = np.ones((6, 4), bool)
    mask[0, 2:] = False
    fig = plots.embedding_projection(X, mask, np.array([0, 1, 0, 1, 0, 1]), ("a", "b"))
    assert len(fig.axes[0].collections[0].get_offsets()) == mask.sum()


def test_training_figures():
    history = pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "epoch": [0, 1, 2] * 2,
                            "train_loss": [2.0, 1.5, 1.2, 2.1, 1.6, 1.1], "train_accuracy": [0.2, 0.4, 0.5] * 2,
                            "val_loss": [2.1, 1.8, 1.7, 2.2, 1.9, 1.9], "val_accuracy": [0.1, 0.3, 0.4] * 2,
                            "lr": 1e-4})
    fig = plots.learning_curves(history)
    assert len(fig.axes) == 2
    assert [len(ax.lines) for ax in fig.axes] == [4, 4]  # 2 folds x (train, validation)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [2.0, 1.5, 1.2])

    fig = plots.confusion_matrix([[3, 1], [0, 2]], ("happy", "sad"), title="fold 0")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.75", "0.25", "0.00", "1.00"]  # rows (true) normalised
    fig = plots.confusion_matrix([[3, 1], [0, 2]], ("happy", "sad"), normalise=False)
    assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "0", "2"]


def test_attention_and_window_figures():
    rng = np.random.default_rng(0)
    heads = rng.dirichlet(np.ones(4), size=(2, 4))  # (heads, T, T), rows sum to 1
    fig = plots.attention_maps([heads, heads[0]], ["clip 1", "clip 2"], window=0.5)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[0].collections[0].get_array().reshape(4, 4), heads.mean(0))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "0.5", "1", "1.5"]

    probs = rng.dirichlet(np.ones(3), size=5)
    fig = plots.window_probabilities(probs, ("happy", "sad", "angry"), 0.25, fused=probs.mean(0))
    assert len(fig.axes) == 2
    assert len(fig.axes[0].collections) == 3  # one stacked band per emotion
    assert fig.axes[0].get_xlim() == (0, 1.25)
    np.testing.assert_allclose([p.get_width() for p in fig.axes[1].patches], probs.mean(0))
    assert len(plots.window_probabilities(probs, ("happy", "sad", "angry"), 0.25).axes) == 1


def test_entropy_figures():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"entropy_a": rng.random(20), "entropy_v": rng.random(20), "entropy_gap": rng.random(20)})
    fig = plots.entropy_distributions({"attention": table, "baseline": table * 2})
    assert len(fig.axes) == 1
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["audio", "video", "|H_a - H_v|"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["attention", "baseline"]

    layers = pd.DataFrame({"modality": ["a", "a", "v", "v"], "layer": [1, 2, 1, 2], "entropy": [2.0, 1.9, 2.5, 2.6]})
    fig = plots.layer_entropy_curves({"attention": layers, "baseline": layers.assign(entropy=3.0)})
    drawn = [line.get_ydata().tolist() for line in fig.axes[0].lines if len(line.get_ydata()) == 2]
    assert [2.0, 1.9] in drawn and [2.5, 2.6] in drawn and [3.0, 3.0] in drawn


def test_noise_figure_shows_mean_and_spread():
    curve = pd.DataFrame({"k": [1, 1, 2, 2], "repetition": [0, 1, 0, 1], "accuracy": [0.8, 0.6, 0.4, 0.4]})
    fig = plots.noise_curves({"attention": curve, "baseline": curve.assign(accuracy=0.5)}, title="noise in audio")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # a mean line and a +-std band per model
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.7, 0.4])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(0.7 + np.std([0.8, 0.6], ddof=1))


def test_temporal_figures():
    curve = pd.DataFrame({"t": [1, 2, 3], "accuracy": [0.3, 0.5, 0.7], "accuracy_a": [0.2, 0.3, 0.6],
                          "accuracy_v": [0.4, 0.5, 0.5]})
    fig = plots.incremental_curves({"attention": curve, "baseline": curve}, window=0.5)
    assert [ax.get_title() for ax in fig.axes] == ["audio-video (fused)", "audio", "video"]
    np.testing.assert_allclose(fig.axes[1].lines[0].get_xdata(), [0.5, 1.0, 1.5])

    times = pd.DataFrame({"correct": [True, True, True, True, False],
                          "first_window": [1, 1, 2, 4, 3], "first_time": [0.5, 0.5, 1.0, 2.0, 1.5],
                          "stable_window": [1, 2, 2, 4, np.nan], "stable_time": [0.5, 1.0, 1.0, 2.0, np.nan]})
    fig = plots.response_time_histograms({"a": times, "v": times, "av": times}, 0.5,
                                         human={"a": 2.98, "v": 2.05, "av": 1.95}, paper={"a": 2.01})
    assert len(fig.axes) == 3
    audio = fig.axes[0]
    assert [p.get_height() for p in audio.patches] == [0.5, 0.25, 0.25]  # first right: share of the 4 right clips
    assert [line.get_xdata()[0] for line in audio.lines] == [1.0, 2.98, 2.01]  # model mean, human, paper
    assert len(fig.axes[1].lines) == 2  # no paper value for video
    assert "first right" in audio.get_xlabel()
    stable = plots.response_time_histograms({"a": times}, 0.5, human={"a": 2.98}, paper={"a": 2.01},
                                            measure="stable").axes[0]
    assert [p.get_height() for p in stable.patches] == [0.25, 0.5, 0.25]
    assert [line.get_xdata()[0] for line in stable.lines] == [1.125]  # no first-time reference beside it
    assert "right from window t on" in stable.get_xlabel()


def test_human_vs_model_figure():
    table = pd.DataFrame({"emotion": ["sad", "angry", "all"], "human_a": [0.7, 0.5, 0.6], "human_v": [1.0, 0.5, 0.75],
                          "model_a": [0.5, 1.0, 0.75], "model_v": [1.0, 0.0, 0.5], "model_av": [1.0, 0.5, 0.75],
                          "n": [2, 2, 4]})
    fig = plots.human_vs_model_bars(table)
    assert [ax.get_title() for ax in fig.axes] == ["audio", "video", "audio-video"]
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [0.5, 0.5, 0.6, 0.7, 0.75, 1.0]
