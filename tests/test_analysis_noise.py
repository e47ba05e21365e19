"""Noise experiments (MATER journal section 5): noise curves over k windows and folds, noise at an SNR."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib import analysis, grids
from mer_lib.analysis import noise
from mer_lib.config import make_config
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.models.mater import Mater, MaterConfig
from mer_lib.models.noise import inject_noise
from mer_lib.run_folder import TrainedRun
from mer_lib.train import predict

N, T, D_A, D_V = 12, 8, 6, 5


def clip_data(seed: int = 0) -> ClipData:
    """Windows with entries in [2, 3): never unit norm, so a noise window is told apart by its norm."""
    rng = np.random.default_rng(seed)
    mask = np.ones((N, T), bool)
    mask[0, 5:] = False
    return ClipData.from_numpy(rng.integers(0, 3, N), 3, audio=2 + rng.random((N, T, D_A)), audio_mask=mask,
                               video=2 + rng.random((N, T, D_V)))


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(N, T) windows whose embedding differs."""
    return (before != after).any(-1)


def tiny_mater() -> Mater:
    torch.manual_seed(0)
    return Mater(MaterConfig(n_classes=3, d_audio=D_A, d_video=D_V, d_model=8, heads=2, layers=1, d_ff=16))


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 30.0])
def test_add_noise_snr_gives_the_requested_snr(snr_db):
    t = np.arange(16000) / 16000
    waveform = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noisy = noise.add_noise_snr(waveform, snr_db, np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.shape == waveform.shape
    added = noisy.astype(np.float64) - waveform
    measured = 10 * np.log10(np.mean(waveform.astype(np.float64) ** 2) / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=0.01)
    assert abs(np.corrcoef(added[:-1], added[1:])[0, 1]) < 0.05  # white: no correlation between neighbours


def test_add_noise_snr_rejects_silence_and_integers():
    with pytest.raises(MerError, match="silent"):
        noise.add_noise_snr(np.zeros(100, np.float32), 10, np.random.default_rng(0))
    with pytest.raises(MerError, match="float waveform"):
        noise.add_noise_snr(np.ones(100, np.int16), 10, np.random.default_rng(0))


def test_noise_curve_is_deterministic_and_measures_accuracy():
    model, data = tiny_mater(), clip_data()
    curve = noise.noise_curve(model, data, "a", ks=[1, T], repetitions=3, seed=5)
    assert list(curve.columns) == ["k", "repetition", "accuracy", "accuracy_a", "accuracy_v"]
    assert curve[["k", "repetition"]].values.tolist() == [[1, 0], [1, 1], [1, 2], [T, 0], [T, 1], [T, 2]]
    assert curve.equals(noise.noise_curve(model, data, "a", ks=[1, T], repetitions=3, seed=5))
    # noise only in audio: the video head's accuracy is the clean one in every row
    clean = (predict(model, data).modality_logits["v"].argmax(1) == data.labels).float().mean().item()
    assert (curve["accuracy_v"] == clean).all()
    # a row equals predicting on the same draw by hand
    generator = torch.Generator().manual_seed(noise._seed(5, T, 2))
    by_hand = predict(model, inject_noise(data, "a", T, generator))
    assert curve["accuracy"].iloc[-1] == (by_hand.logits.argmax(1) == data.labels).float().mean().item()
    assert len(noise.noise_curve(model, data, "av", repetitions=1)) == T  # ks default to 1..T


def test_noise_curves_over_every_fold_and_their_mean_accuracy():
    model, data = tiny_mater(), clip_data()
    run = TrainedRun(None, SimpleNamespace(data=data), {0: model, 1: model}, {0: np.arange(6), 1: np.arange(6, N)})
    curves = noise.noise_curves({"attention": run}, "v", ks=[0, 2], repetitions=2, seed=3)
    table = curves["attention"]
    assert list(table.columns[:3]) == ["fold", "k", "repetition"] and len(table) == 2 * 2 * 2
    fold1 = noise.noise_curve(model, data.take(np.arange(6, N)), "v", ks=[0, 2], repetitions=2, seed=3)
    pd.testing.assert_frame_equal(table[table["fold"] == 1].drop(columns="fold").reset_index(drop=True), fold1)

    means = noise.mean_accuracy(curves | {"baseline": table.assign(accuracy=0.25)})
    assert means.index.tolist() == ["attention", "baseline"] and means.columns.tolist() == [0, 2]
    assert means.loc["attention", 2] == pytest.approx(table[table["k"] == 2]["accuracy"].mean())
    assert (means.loc["baseline"] == 0.25).all()
    assert set(noise.NOISE_IN) == {"a", "v", "av"}


def test_missing_modality_falls_back_to_the_present_head():
    model, data = tiny_mater(), clip_data()
    table = noise.missing_modality(model, data)
    assert table["missing"].tolist() == ["none", "a", "v"] and list(table.columns) == ["missing", "accuracy"]
    full = predict(model, data)
    for m, head in (("a", "v"), ("v", "a")):
        right = (full.modality_logits[head].argmax(1) == data.labels).float().mean().item()
        assert table.set_index("missing").loc[m, "accuracy"] == pytest.approx(right)
    assert table["accuracy"].iloc[0] == pytest.approx((full.logits.argmax(1) == data.labels).float().mean().item())


def test_compared_runs_asks_for_the_attention_model_and_the_baseline(monkeypatch, tmp_path):
    asked = {}

    def fake_grid(data_dir, out_root, grid, **training):
        asked.update(grid=grid, training=training)
        return {f"run{i}": tmp_path / f"run{i}" for i in range(len(grid))}

    monkeypatch.setattr(grids, "cross_validate_grid", fake_grid)
    runs = analysis.compared_runs("data", tmp_path, "av", train_noise="v", preset="fast", folds="0")
    assert runs == {"attention": tmp_path / "run0", "baseline": tmp_path / "run1"}
    assert asked["grid"] == [{"modalities": "av", "train_noise": "v", "pe": True, "mhsa": True},
                             {"modalities": "av", "train_noise": "v", "pe": False, "mhsa": False}]
    assert asked["training"] == {"preset": "fast", "folds": "0"}
    names = [grids.run_name(make_config("fast", **settings)) for settings in asked["grid"]]
    assert names == ["mater-av-noisev", "mater-av-nope-nomhsa-noisev"]
