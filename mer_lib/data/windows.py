"""Non-overlapping time windows, MATER's unit of analysis (Ghaleb et al. 2023, section 3.1).

A clip is cut into T windows of w seconds from its start. Clips shorter than T*w get a mask over
the windows they do not cover; longer clips are cut at T*w. Both are recorded, never hidden.
Paper settings: RAVDESS 8 x 0.5 s and 16 x 0.25 s; CREMA-D 6 x 0.5 s and 12 x 0.25 s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mer_lib.errors import MerError

PAPER_WINDOWS = {"ravdess": [(0.5, 8), (0.25, 16)], "cremad": [(0.5, 6), (0.25, 12)],
                 "synthetic": [(0.5, 6), (0.25, 12)]}
MIN_COVERAGE = 0.5  # a window counts as present when at least half of it lies inside the clip


@dataclass(frozen=True)
class WindowPlan:
    """Where the T windows of one clip lie, which are present, and how much of the clip is cut."""

    starts: np.ndarray  # (T,) seconds
    ends: np.ndarray  # (T,) seconds
    mask: np.ndarray  # (T,) bool, True where the window is present
    cut_seconds: float  # clip time beyond T*w that is not used

    @property
    def n_present(self) -> int:
        return int(self.mask.sum())


def check(window: float, count: int) -> None:
    """MerError unless the window length and count make sense."""
    if not window > 0 or count < 1:
        raise MerError(f"windows need a positive length and count, got {window} s x {count}")


def plan(duration: float, window: float, count: int) -> WindowPlan:
    """Lay T=`count` windows of `window` seconds over a clip of `duration` seconds."""
    check(window, count)
    starts = np.arange(count) * window
    ends = starts + window
    covered = np.clip(duration - starts, 0.0, window)
    return WindowPlan(starts, ends, covered >= MIN_COVERAGE * window, max(0.0, duration - count * window))


def segment(signal: np.ndarray, rate: int, window: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a 1-D signal into (T, samples_per_window) windows, zero-padding the tail; with the mask."""
    check(window, count)
    size = int(round(window * rate))
    padded = np.zeros(size * count, dtype=signal.dtype)
    used = signal[: size * count]
    padded[: len(used)] = used
    return padded.reshape(count, size), plan(len(signal) / rate, window, count).mask


def assign_frames(timestamps: np.ndarray, window: float, count: int) -> np.ndarray:
    """The window index of each video frame time stamp; -1 for frames after T*w."""
    check(window, count)
    index = np.floor(np.asarray(timestamps) / window + 1e-9).astype(int)
    return np.where((index >= 0) & (index < count), index, -1)
