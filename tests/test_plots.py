"""Figures build from small inputs without error and draw what they say."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd

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
