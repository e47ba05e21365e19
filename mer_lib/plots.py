"""Figures shared by the notebooks and reports (seaborn/matplotlib). Each returns its Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def class_balance(manifest: pd.DataFrame, classes: tuple[str, ...]) -> plt.Figure:
    """Clips per actor and emotion (heatmap), with the per-emotion totals as a bar chart."""
    ok = manifest[manifest["status"] == "ok"]
    table = pd.crosstab(ok["actor"], pd.Categorical(ok["emotion"], categories=classes))
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(12, max(3.0, 0.25 * len(table) + 1.5)),
                                     gridspec_kw={"width_ratios": [1, 2]})
    sns.barplot(x=table.sum().values, y=list(classes), ax=bars, color="steelblue")
    bars.set(xlabel="clips", title="clips per emotion")
    sns.heatmap(table, annot=len(table) <= 30, fmt="d", cmap="Blues", cbar=False, ax=heat)
    heat.set(xlabel="emotion", ylabel="actor", title="clips per actor and emotion")
    fig.tight_layout()
    return fig


def durations(manifest: pd.DataFrame, window: float | None = None, count: int | None = None) -> plt.Figure:
    """Histogram of clip durations per emotion; a line at T*w shows what the windows cover."""
    ok = manifest[manifest["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.histplot(data=ok, x="duration", hue="emotion", multiple="stack", bins=30, ax=ax)
    if window and count:
        ax.axvline(window * count, color="k", ls="--")
        ax.text(window * count, ax.get_ylim()[1] * 0.95, f" T x w = {count} x {window:g} s", va="top")
    ax.set(xlabel="duration (s)", title="clip durations")
    fig.tight_layout()
    return fig


def frame_strip(frames: np.ndarray, timestamps: np.ndarray, n: int = 8, title: str = "") -> plt.Figure:
    """`n` frames evenly spaced over a clip, labelled with their time."""
    picks = np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int)
    fig, axes = plt.subplots(1, len(picks), figsize=(2 * len(picks), 2.2), squeeze=False)
    for ax, i in zip(axes[0], picks):
        ax.imshow(frames[i])
        ax.set_title(f"{timestamps[i]:.2f} s", fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def waveform(audio: np.ndarray, sample_rate: int, window: float | None = None, count: int | None = None,
             title: str = "") -> plt.Figure:
    """The waveform with the T window boundaries the models see."""
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.plot(np.arange(len(audio)) / sample_rate, audio, lw=0.4, color="0.2")
    if window and count:
        for t in range(count + 1):
            ax.axvline(t * window, color="tab:red", lw=0.8, alpha=0.6)
    ax.set(xlabel="time (s)", ylabel="amplitude", title=title)
    fig.tight_layout()
    return fig
