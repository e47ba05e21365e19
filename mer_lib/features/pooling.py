"""From frame features to window embeddings: mean pooling and l2 normalisation (MATER section 3.1).

MATER mean-pools the per-frame representations of each time window ("mean-pooling through the
features of time windows' frames gives robust representations", section 3.1.1) and normalises every
window embedding with l2-normalisation (section 3.1). Windows without frames are masked and zero.
Windows may overlap (the voiced and spread layouts of mer_lib.data.windows): a frame then counts in
every window it lies in, so frames go to windows by a membership matrix, not one index per frame.
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


def pool_windows(features: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each window's frame features, l2-normalised: ((T, d) float32, (T,) bool mask).

    `features` is (N, d), one row per frame; `members` (N, T) bool says which windows each frame
    lies in (see `mer_lib.data.windows.frame_windows`): a frame may lie in none, one, or several
    overlapping windows. A window with no frame is masked (False) and its row is zero.
    """
    features = np.asarray(features, dtype=np.float64)
    members = np.asarray(members)
    if features.ndim != 2 or members.ndim != 2 or len(members) != len(features) or members.dtype != bool:
        raise MerError(f"pooling needs (N, d) features and an (N, T) bool frame-window membership, got "
                       f"{features.shape} and {members.shape} {members.dtype}")
    if not np.isfinite(features).all():
        raise MerError("frame features contain NaN or infinite values; leave such frames out before pooling")
    frames = members.sum(axis=0)
    means = (members.T.astype(np.float64) @ features) / np.maximum(frames, 1)[:, None]
    return l2_normalise(means).astype(np.float32), frames > 0
