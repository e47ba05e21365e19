"""Figures shared by the notebooks and reports (seaborn/matplotlib). Each returns its Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def class_balance(manifest: pd.DataFrame, classes: tuple[str, ...]) -> plt.Figure:
    """Clips per actor and emotion (heatmap), with the per-emotion totals as a bar chart."""
    ok = manifest[manifest["status"] == "ok"]
    table = pd.crosstab(ok["actor"], ok["emotion"]).reindex(columns=list(classes), fill_value=0)
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


def face_chips(chips: np.ndarray, timestamps: np.ndarray, n: int = 8, title: str = "") -> plt.Figure:
    """Aligned face crops over time: what the visual extractor sees."""
    return frame_strip(chips, timestamps, n=n, title=title)


def landmarks_on_frame(frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray | None = None) -> plt.Figure:
    """One frame with its 68 facial landmarks (and the face box)."""
    fig, ax = plt.subplots(figsize=(4, 4 * frame.shape[0] / frame.shape[1]))
    ax.imshow(frame)
    ax.scatter(landmarks[:, 0], landmarks[:, 1], s=6, c="lime")
    if box is not None:
        x0, y0, x1, y1 = box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow"))
    ax.axis("off")
    fig.tight_layout()
    return fig


def log_mel(spectrogram: np.ndarray, hop: float, window: float, count: int, title: str = "") -> plt.Figure:
    """A (frames, bands) log-mel spectrogram with the T window boundaries."""
    fig, ax = plt.subplots(figsize=(10, 3))
    extent = (0, spectrogram.shape[0] * hop, 0, spectrogram.shape[1])
    ax.imshow(spectrogram.T, origin="lower", aspect="auto", extent=extent, cmap="magma")
    for t in range(count + 1):
        ax.axvline(t * window, color="w", lw=0.8)
    ax.set(xlabel="time (s)", ylabel="mel band", title=title)
    fig.tight_layout()
    return fig


def embedding_projection(X: np.ndarray, mask: np.ndarray, labels: np.ndarray, classes: tuple[str, ...],
                         title: str = "") -> plt.Figure:
    """PCA of the present window embeddings (clips x T x d), coloured by the clip's emotion."""
    from sklearn.decomposition import PCA

    points = X[mask]
    emotions = np.asarray(classes)[np.repeat(labels, mask.sum(1))]
    xy = PCA(n_components=2, random_state=0).fit_transform(points)
    fig, ax = plt.subplots(figsize=(6, 5))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=emotions, hue_order=list(classes), s=10, ax=ax, linewidth=0)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    return fig
