"""Time windows, MATER's unit of analysis (Ghaleb et al. 2023, section 3.1), and where they lie in a clip.

A clip is described by T windows of w seconds. A *layout* says where they lie; every layout gives a
`WindowPlan` (per window its start and end in seconds, and a mask of the windows that are present),
and both audio (`segment`: the samples of each window) and video (`frame_windows`: which frames fall
in which window) are cut from the plan, so the two modalities share one code path.

- ``fixed`` (the paper's, the default): T windows back to back from 0 s. Clips shorter than T*w get
  a mask over the windows they do not cover; longer clips are cut at T*w.
- ``voiced``: the T windows spread over the clip's voiced span (`voiced_span`: RAVDESS clips open and
  close with about a second of silence). Starts are evenly spaced from the span's start to its end
  minus w, so windows overlap when the span is shorter than T*w and leave gaps when it is longer.
- ``spread``: the same even spacing over the whole clip.
- ``clip``: one window that is the whole clip (T = 1, w = the clip's duration), for clip-level
  functionals; the window length and count asked for are ignored.

Spreading T windows over a span of s seconds: T = 1, or a span shorter than one window (s < w),
centres the window on the span; every window then coincides, so the model sees T identical present
windows, which is the limit of the even spacing as s shrinks to w. Windows may reach past the span
but are shifted to lie inside the clip; only a clip shorter than w leaves a window partly outside,
and, as in ``fixed``, a window counts as present when at least half of it lies inside the clip.

The voiced span is found from short-time energy (25 ms frames, 10 ms hop): it runs from the first to
the last frame whose energy is within `VOICED_DB` (35 dB) of the clip's loudest frame, counting only
runs of at least `MIN_VOICED_SECONDS` (0.1 s) of such frames, so a click at the start of a recording
does not open the span. The rule is energy, not voicing: breaths and loud noise next to the speech
count, and on very quiet recordings (peak within 35 dB of the noise floor) the span can reach the
clip's edges. On 720 RAVDESS clips (12 actors) the span starts at 0.94 s and ends 0.88 s before the
clip's end on average and lasts 1.1-3.6 s (mean 1.9 s): shorter than 8 x 0.5 s in every clip, so
voiced windows of the paper's size overlap.

Paper settings: RAVDESS 8 x 0.5 s and 16 x 0.25 s; CREMA-D 6 x 0.5 s and 12 x 0.25 s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mer_lib.errors import MerError, check_number

PAPER_WINDOWS = {"ravdess": [(0.5, 8), (0.25, 16)], "cremad": [(0.5, 6), (0.25, 12)],
                 "synthetic": [(0.5, 6), (0.25, 12)]}
MIN_COVERAGE = 0.5  # a window counts as present when at least half of it lies inside the clip
FIXED, VOICED, SPREAD, CLIP = "fixed", "voiced", "spread", "clip"
LAYOUTS = (FIXED, VOICED, SPREAD, CLIP)
VOICED_DB = 35.0  # a frame is voiced when its energy is at most this far below the loudest frame's
# A recording whose every sample stays below this level (a thousandth of full scale) has nothing to
# hear: speech reaches -20 to -3 dBFS, a microphone's noise floor alone rarely -60.
SILENCE_DBFS = -60.0
MIN_VOICED_SECONDS = 0.1  # shorter runs of voiced frames (clicks) do not open or close the span
ENERGY_FRAME_SECONDS, ENERGY_HOP_SECONDS = 0.025, 0.010
TIME_EPS = 1e-9  # seconds: a frame time stamp this close to a window's start belongs to it
# Upper bounds far above any use, so that a typo is an error before anything is allocated: the papers
# use T = 6-16 windows of 0.25-0.5 s over clips of 2-5 s. A store holds clips x T x d values and MATER's
# attention T x T weights per head, layer and clip, so T = 1000 is already 4 MB per head and clip; and
# T windows covering more than 10 minutes describe a recording, not a clip (T x w seconds of samples
# are cut per clip: 10 minutes at 48 kHz is 115 MB).
MAX_WINDOWS = 1000
MAX_COVERED_SECONDS = 600.0


@dataclass(frozen=True)
class WindowPlan:
    """Where the T windows of one clip lie, which are present, and how much of the clip no window covers."""

    starts: np.ndarray  # (T,) seconds, non-decreasing
    ends: np.ndarray  # (T,) seconds
    mask: np.ndarray  # (T,) bool, True where the window is present
    cut_seconds: float  # clip time that lies in no window (fixed layout: beyond T*w)
    window: float  # every window's length in seconds (the clip's duration for the clip layout)

    @property
    def n_present(self) -> int:
        return int(self.mask.sum())


def check_layout(layout: str) -> None:
    """MerError unless `layout` is one of LAYOUTS."""
    if layout not in LAYOUTS:
        raise MerError(f"unknown window layout {layout!r} (choose from {', '.join(LAYOUTS)})")


def check_window(window: float) -> None:
    """MerError unless `window` is a usable window length in seconds (--window)."""
    check_number("window", window, above=0, high=MAX_COVERED_SECONDS)


def check_count(count: int) -> None:
    """MerError unless `count` is a usable number of windows T (--windows)."""
    check_number("windows", count, integer=True, low=1, high=MAX_WINDOWS)


def check(window: float | None, count: int | None, layout: str = FIXED) -> None:
    """MerError unless the layout is known and, except for `clip`, the window length and count make sense."""
    check_layout(layout)
    if layout == CLIP:
        return
    check_window(window)
    check_count(count)
    if window * count > MAX_COVERED_SECONDS:
        raise MerError(f"{count} windows (--windows) of {window:g} s (--window) cover {window * count:g} s, more than "
                       f"{MAX_COVERED_SECONDS:g} s: windows describe one clip (see mer_lib.data.windows)")


def settings(window: float | None, count: int | None, layout: str = FIXED) -> tuple[float | None, int | None]:
    """The (window, count) a layout keeps: the clip layout has no window length and one window."""
    return (None, 1) if layout == CLIP else (window, count)


def _energy_frames(n_samples: int, rate: int) -> tuple[int, int]:
    """(frame length, hop) in samples for short-time energy: 25 ms and 10 ms, the frame cut to the signal."""
    return min(n_samples, int(round(ENERGY_FRAME_SECONDS * rate))), max(1, int(round(ENERGY_HOP_SECONDS * rate)))


def frame_energy(signal: np.ndarray, rate: int) -> np.ndarray:
    """Mean squared amplitude of 25 ms frames every 10 ms (one frame when the signal is shorter)."""
    signal = np.asarray(signal, dtype=np.float64)
    length, hop = _energy_frames(len(signal), rate)
    if length == 0:
        return np.zeros(0)
    sums = np.concatenate([[0.0], np.cumsum(signal ** 2)])
    first = np.arange(0, len(signal) - length + 1, hop)
    return (sums[first + length] - sums[first]) / length


def silent(signal: np.ndarray) -> bool:
    """Whether no sample of `signal` (float, full scale 1) reaches SILENCE_DBFS."""
    signal = np.asarray(signal)
    return not signal.size or float(np.abs(signal).max()) < 10 ** (SILENCE_DBFS / 20)


def voiced_span(signal: np.ndarray, rate: int) -> tuple[float, float]:
    """(start, end) seconds from the first to the last voiced frame (see the module docstring for the rule)."""
    energy = frame_energy(signal, rate)
    if not energy.size or not energy.max() > 0:
        raise MerError("the voiced layout needs sound, but the audio is silent")
    voiced = (energy >= energy.max() * 10 ** (-VOICED_DB / 10)).astype(int)
    length, hop = _energy_frames(len(signal), rate)
    run = min(len(voiced), max(1, int(round(MIN_VOICED_SECONDS / ENERGY_HOP_SECONDS))))
    run_starts = np.flatnonzero(np.convolve(voiced, np.ones(run, int), mode="valid") == run)
    if not run_starts.size:  # only short bursts: every voiced frame counts (the loudest always is one)
        run, run_starts = 1, np.flatnonzero(voiced)
    return float(run_starts[0] * hop / rate), float(((run_starts[-1] + run - 1) * hop + length) / rate)


def _spread_starts(low: float, high: float, window: float, count: int, duration: float) -> np.ndarray:
    """Starts of `count` windows evenly spaced over [low, high], centred when one or when the span is short."""
    if count == 1 or high - low <= window:
        starts = np.full(count, (low + high - window) / 2)
    else:
        starts = np.linspace(low, high - window, count)
    return np.clip(starts, 0.0, max(0.0, duration - window))


def _uncovered(starts: np.ndarray, ends: np.ndarray, duration: float) -> float:
    """Clip time that lies in no window (windows sorted by start, all of one length)."""
    inside = np.minimum(ends, duration)
    previous = np.concatenate([[0.0], inside[:-1]])
    fresh = np.clip(inside - np.maximum(starts, previous), 0.0, None)
    return max(0.0, duration - float(fresh.sum()))


def plan(duration: float, window: float | None, count: int | None, layout: str = FIXED,
         span: tuple[float, float] | None = None) -> WindowPlan:
    """Lay T=`count` windows of `window` seconds over a clip of `duration` seconds as `layout` says.

    `span` is the clip's voiced (start, end) in seconds, needed by the voiced layout only (see
    `voiced_span`; it is clipped to the clip). The clip layout ignores `window` and `count`.
    """
    check(window, count, layout)
    if layout == CLIP:
        window, starts = duration, np.zeros(1)
    elif layout == FIXED:
        starts = np.arange(count) * window
    elif layout == SPREAD:
        starts = _spread_starts(0.0, duration, window, count, duration)
    elif span is None:
        raise MerError("the voiced layout needs the clip's voiced span (windows.voiced_span of its audio)")
    else:
        low, high = np.clip(span, 0.0, duration)
        starts = _spread_starts(low, high, window, count, duration)
    ends = starts + window
    covered = np.clip(np.minimum(ends, duration) - starts, 0.0, None)
    mask = (covered > 0) & (covered >= MIN_COVERAGE * window)
    return WindowPlan(starts, ends, mask, _uncovered(starts, ends, duration), float(window))


def plan_signal(signal: np.ndarray, rate: int, window: float | None, count: int | None,
                layout: str = FIXED) -> WindowPlan:
    """The plan of a clip given as samples: its duration and, for `voiced`, its voiced span come from `signal`."""
    span = voiced_span(signal, rate) if layout == VOICED else None
    return plan(len(signal) / rate, window, count, layout, span)


def segment(signal: np.ndarray, rate: int, plan: WindowPlan, origin: int = 0) -> np.ndarray:
    """The samples of each window of `plan`: (T, samples per window), zero where a window leaves the signal.

    Starts are counted in window lengths times the window's sample count, so fixed windows tile the
    signal exactly (window k starts at sample k * size). `origin` is the clip's sample index of
    `signal[0]`, for a signal that holds only part of a long recording (mer_lib.stream).
    """
    signal = np.asarray(signal)
    size = int(round(plan.window * rate))
    first = np.round(plan.starts * (size / plan.window if plan.window > 0 else 0.0)).astype(int) - origin
    index = first[:, None] + np.arange(size)
    padded = np.append(signal, np.zeros(1, signal.dtype))  # index len(signal) reads a zero
    return padded[np.where((index >= 0) & (index < len(signal)), index, len(signal))]


def frame_windows(timestamps: np.ndarray, plan: WindowPlan) -> np.ndarray:
    """(N frames, T windows) bool: frame n lies in window t (start <= time < end). Overlapping windows share frames."""
    times = np.asarray(timestamps, dtype=np.float64)[:, None] + TIME_EPS
    return (times >= plan.starts[None, :]) & (times < plan.ends[None, :])
