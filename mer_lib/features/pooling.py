"""From frame features to window embeddings: mean pooling and l2 normalisation (MATER section 3.1).

MATER mean-pools the per-frame representations of each time window ("mean-pooling through the
features of time windows' frames gives robust representations", section 3.1.1) and normalises every
window embedding with l2-normalisation (section 3.1). Windows without frames are masked and zero.
Shared by the visual extractors (frames of a video) and the audio ones (l2 only).
"""
from __future__ import annotations

import numpy as np

from mer_lib.errors import MerError

EPS = 1e-12  # below this norm a vector is treated as zero and left as it is (no division by zero)


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """`x` scaled to unit Euclidean length along `axis`; all-zero vectors stay zero (never NaN)."""
    x = np.asarray(x)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, EPS).astype(x.dtype)


def pool_windows(features: np.ndarray, window_index: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each window's frame features, l2-normalised: ((T, d) float32, (T,) bool mask).

    `features` is (N, d), one row per frame; `window_index` (N,) gives each frame's window in
    0..count-1, or -1 for frames outside all windows (see `mer_lib.data.windows.assign_frames`).
    A window with no frame is masked (False) and its row is zero.
    """
    features = np.asarray(features, dtype=np.float64)
    window_index = np.asarray(window_index)
    if features.ndim != 2 or window_index.shape != (len(features),):
        raise MerError(f"pooling needs (N, d) features and N window indices, got {features.shape} "
                       f"and {window_index.shape}")
    if len(window_index) and (window_index.min() < -1 or window_index.max() >= count):
        raise MerError(f"window indices must lie in -1..{count - 1}, got {window_index.min()}..{window_index.max()}")
    if not np.isfinite(features).all():
        raise MerError("frame features contain NaN or infinite values; mark such frames with window index -1")
    inside = window_index >= 0
    sums = np.zeros((count, features.shape[1]))
    np.add.at(sums, window_index[inside], features[inside])
    frames = np.bincount(window_index[inside], minlength=count)
    means = sums / np.maximum(frames, 1)[:, None]
    return l2_normalise(means).astype(np.float32), frames > 0
