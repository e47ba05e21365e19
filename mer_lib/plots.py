"""Figures shared by the notebooks and reports (seaborn/matplotlib). Each returns its Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mer_lib import artifacts


def save(figure: plt.Figure, path) -> None:
    """Write `figure` as a PNG atomically and close it (command-line reports, not notebooks)."""
    with artifacts.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


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


def _show_image(ax: plt.Axes, image: np.ndarray, **kwargs) -> None:
    """An RGB image, or a grey one (2-D: luma frames' face chips) in grey levels 0..255."""
    grey = {"cmap": "gray", "vmin": 0, "vmax": 255} if image.ndim == 2 else {}
    ax.imshow(image, **grey, **kwargs)


def frame_strip(frames: np.ndarray, timestamps: np.ndarray, n: int = 8, title: str = "") -> plt.Figure:
    """`n` frames evenly spaced over a clip, labelled with their time."""
    picks = np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int)
    fig, axes = plt.subplots(1, len(picks), figsize=(2 * len(picks), 2.2), squeeze=False)
    for ax, i in zip(axes[0], picks):
        _show_image(ax, frames[i])
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
    _show_image(ax, frame)
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


# ---------------------------------------------------------------- training and prediction (notebook 03, mer predict)


def learning_curves(history: pd.DataFrame) -> plt.Figure:
    """Loss and accuracy per epoch from history.csv, training solid and validation dashed, one colour per fold."""
    fig, (loss, accuracy) = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, measure in ((loss, "loss"), (accuracy, "accuracy")):
        for (fold, rows), colour in zip(history.groupby("fold"), sns.color_palette(n_colors=history["fold"].nunique())):
            ax.plot(rows["epoch"], rows[f"train_{measure}"], color=colour, label=f"fold {fold} train")
            ax.plot(rows["epoch"], rows[f"val_{measure}"], color=colour, ls="--", label=f"fold {fold} validation")
        ax.set(xlabel="epoch", ylabel=measure, title=measure)
    accuracy.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def confusion_matrix(matrix, classes: tuple[str, ...], title: str = "", normalise: bool = True) -> plt.Figure:
    """Heatmap of a confusion matrix (rows: true emotion, columns: predicted); rows sum to 1 when `normalise`."""
    matrix = np.asarray(matrix, dtype=float)
    if normalise:
        matrix = matrix / np.maximum(matrix.sum(1, keepdims=True), 1.0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.6 + 0.6 * len(classes)))
    sns.heatmap(pd.DataFrame(matrix, index=list(classes), columns=list(classes)), annot=True,
                fmt=".2f" if normalise else ".0f", cmap="Blues", vmin=0, vmax=1 if normalise else None,
                cbar=False, square=True, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def _seconds_ticks(ax: plt.Axes, count: int, window: float) -> None:
    """Label the T window cells of a heatmap axis pair with the window start times in seconds."""
    step = max(1, count // 8)
    ticks = np.arange(0, count, step)
    labels = [f"{t * window:g}" for t in ticks]
    ax.set_xticks(ticks + 0.5, labels)
    ax.set_yticks(ticks + 0.5, labels)


def attention_maps(attention: list, titles: list[str], window: float,
                   axis_labels: tuple[str, str] = ("attended window (s)", "query window (s)")) -> plt.Figure:
    """Attention between windows for a few clips: (heads, T, T) maps are averaged over the heads.

    For self-attention, row t is how much the window starting at t * window seconds attends to each
    other window; `axis_labels` (x, y) name the axes of other maps (e.g. cross-modal weights).
    """
    maps = [np.asarray(a, dtype=float) for a in attention]
    maps = [a.mean(0) if a.ndim == 3 else a for a in maps]
    fig, axes = plt.subplots(1, len(maps), figsize=(3.4 * len(maps), 3.2), squeeze=False)
    for ax, weights, title in zip(axes[0], maps, titles):
        sns.heatmap(weights, cmap="viridis", vmin=0, square=True, cbar=False, ax=ax)
        _seconds_ticks(ax, len(weights), window)
        ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=title)
    fig.tight_layout()
    return fig


def window_probabilities(probs, classes: tuple[str, ...], window: float, fused=None) -> plt.Figure:
    """Per-window emotion probabilities (T, C) as stacked areas over time, the fused distribution beside them."""
    probs = np.asarray(probs, dtype=float)
    starts = np.arange(len(probs)) * window
    colours = sns.color_palette(n_colors=len(classes))
    has_fused = fused is not None
    fig, axes = plt.subplots(1, 1 + has_fused, figsize=(9 + 2 * has_fused, 3.5), squeeze=False,
                             gridspec_kw={"width_ratios": [4, 1][: 1 + has_fused]})
    over_time = axes[0][0]
    edges = np.append(starts, starts[-1] + window)
    over_time.stackplot(edges, np.vstack([probs, probs[-1:]]).T, labels=list(classes), colors=colours, step="post")
    over_time.set(xlim=(0, edges[-1]), ylim=(0, 1), xlabel="time (s)", ylabel="probability",
                  title="per-window emotion probabilities")
    if has_fused:  # the bars name the colours
        bars = axes[0][1]
        bars.barh(list(classes), np.asarray(fused, dtype=float), color=colours)
        bars.invert_yaxis()
        bars.set(xlim=(0, 1), xlabel="probability", title="whole clip")
    else:
        over_time.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- MATER analyses (notebooks 04-06)

_HEAD_TITLES = {"accuracy": "audio-video (fused)", "accuracy_a": "audio", "accuracy_v": "video"}
_ENTROPY_MEASURES = {"entropy_a": "audio", "entropy_v": "video", "entropy_gap": "|H_a - H_v|"}


def entropy_distributions(tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """Per-clip prediction entropies of several models side by side (section 4.2.1).

    `tables` maps a model name (e.g. "attention", "baseline") to its `prediction_entropies` table;
    violins show the audio and video entropies and their gap (those the tables have: an audio-only
    model has the audio entropy only), one colour per model.
    """
    long = pd.concat([table[[m for m in _ENTROPY_MEASURES if m in table]].rename(columns=_ENTROPY_MEASURES)
                      .melt(var_name="measure", value_name="entropy (nats)").assign(model=name)
                      for name, table in tables.items()], ignore_index=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.violinplot(data=long, x="measure", y="entropy (nats)", hue="model", cut=0, inner="quart", ax=ax)
    ax.set(xlabel="", title=f"entropy of the {' and '.join(long['measure'].unique()[:2])} predictions")
    fig.tight_layout()
    return fig


def layer_entropy_curves(tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """Mean entropy of each encoder layer's representations (Figure 4): colour = modality, line style = model.

    `tables` maps a model name to its `layer_entropies` table (modality, layer, entropy).
    """
    long = pd.concat([table.assign(model=name) for name, table in tables.items()], ignore_index=True)
    long["modality"] = long["modality"].map({"a": "audio", "v": "video"})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sns.lineplot(data=long, x="layer", y="entropy", hue="modality", style="model", markers=True, ax=ax)
    ax.set_xticks(sorted(long["layer"].unique()))
    ax.set(xlabel="encoder layer", ylabel="mean entropy (nats)", title="entropy of the layer representations")
    fig.tight_layout()
    return fig


def noise_curves(curves: dict[str, pd.DataFrame], measure: str = "accuracy", title: str = "") -> plt.Figure:
    """Accuracy against the number k of noisy windows, mean +- std over the repetitions (Figures 5-8).

    `curves` maps a model name to its `noise_curve` table; `measure` picks the head
    ("accuracy" fused, "accuracy_a", "accuracy_v").
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in curves.items():
        stats = curve.groupby("k")[measure].agg(["mean", "std"]).fillna(0.0)
        ax.plot(stats.index, stats["mean"], marker="o", label=name)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2)
    ax.set(xlabel="noisy windows k", ylabel=f"{_HEAD_TITLES.get(measure, measure)} accuracy", ylim=(0, 1),
           title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def incremental_curves(curves: dict[str, pd.DataFrame], window: float | None = None) -> plt.Figure:
    """Accuracy after the first t windows (Figures 9-10): one panel per head, one line per model.

    `curves` maps a model name to its `incremental_accuracy` table; with `window` the x axis is in seconds.
    """
    heads = [h for h in _HEAD_TITLES if any(h in curve for curve in curves.values())]
    fig, axes = plt.subplots(1, len(heads), figsize=(4 * len(heads), 3.3), sharey=True, squeeze=False)
    for ax, head in zip(axes[0], heads):
        for name, curve in curves.items():
            if head in curve:
                x = curve["t"] * window if window else curve["t"]
                ax.plot(x, curve[head], marker="o", label=name)
        ax.set(xlabel="first t windows (s)" if window else "first t windows", title=_HEAD_TITLES[head], ylim=(0, 1))
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def response_time_histograms(times: dict[str, pd.DataFrame], window: float, human: dict | None = None,
                             paper: dict | None = None, measure: str = "first") -> plt.Figure:
    """Response times of the correctly classified clips (Figure 11), one panel per head.

    `times` maps a head ("a", "v", "av") to its `response_times` table; bars are the share of the right
    clips first right at window t (`measure` "first", the paper's definition, section 6.2: "correctly
    predicted for the first time") or right from window t on ("stable"). Vertical lines: the model's mean
    of the same measure and, where given, the human mean (`human`, e.g. HUMAN_RESPONSE_TIME["cremad"],
    when raters first identify the emotion) and the paper's MATER mean (`paper`), both keyed by head; the
    reference lines are first-time measures, so they are drawn only beside the "first" measure.
    """
    titles = {"a": "audio", "v": "video", "av": "audio-video"}
    xlabel = {"first": "response time (s): first right at window t", "stable": "time (s): right from window t on"}
    fig, axes = plt.subplots(1, len(times), figsize=(4 * len(times), 3.3), sharey=True, squeeze=False)
    for ax, (head, table) in zip(axes[0], times.items()):
        right = table[table["correct"].astype(bool)]
        share = right[f"{measure}_window"].dropna().astype(int).value_counts(normalize=True).sort_index()
        ax.bar(share.index * window, share.values, width=0.8 * window, color="tab:blue", alpha=0.7)
        lines = [("model", right[f"{measure}_time"].mean(), "-")]
        if measure == "first":
            lines += [("human", (human or {}).get(head), "--"), ("paper MATER", (paper or {}).get(head), ":")]
        for label, value, style in lines:
            if value is not None and np.isfinite(value):
                ax.axvline(value, color="k", ls=style, label=f"{label} {value:.2f} s")
        ax.set(xlabel=xlabel[measure], title=titles.get(head, head))
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("share of correct clips")
    fig.tight_layout()
    return fig


def human_vs_model_bars(table: pd.DataFrame) -> plt.Figure:
    """Humans beside the model per modality and emotion, from `analysis.temporal.human_vs_model`."""
    modalities = [m for m in ("a", "v", "av") if f"human_{m}" in table or f"model_{m}" in table]
    titles = {"a": "audio", "v": "video", "av": "audio-video"}
    fig, axes = plt.subplots(1, len(modalities), figsize=(4.5 * len(modalities), 3.5), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], modalities):
        columns = {f"human_{m}": "human raters", f"model_{m}": "model"}
        long = (table.set_index("emotion")[[c for c in columns if c in table]].rename(columns=columns)
                .reset_index().melt(id_vars="emotion", var_name="who", value_name="recognition"))
        sns.barplot(data=long, x="emotion", y="recognition", hue="who", ax=ax)
        ax.set(title=titles[m], xlabel="", ylim=(0, 1))
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def positional_encoding(encoding: np.ndarray, window: float) -> plt.Figure:
    """The sinusoidal encoding (T, d) as a heatmap: one row per window, one column per dimension."""
    fig, ax = plt.subplots(figsize=(8, 2.6))
    sns.heatmap(encoding, cmap="RdBu_r", center=0, ax=ax, cbar_kws={"label": "PE value"})
    ax.set_yticks(np.arange(len(encoding)) + 0.5, [f"{t * window:g}" for t in range(len(encoding))], rotation=0)
    ax.set(xlabel="dimension", ylabel="window start (s)", title="sinusoidal positional encoding")
    ax.set_xticks([])
    fig.tight_layout()
    return fig


def tsne_panels(panels: dict[str, tuple[np.ndarray, np.ndarray]], classes: tuple[str, ...]) -> plt.Figure:
    """One scatter per name -> (points (N, 2), labels (N,)), coloured by emotion (Mocanu et al. Figs. 6-7)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    palette = sns.color_palette("tab10", len(classes))
    for ax, (name, (points, labels)) in zip(axes[0], panels.items()):
        for k, emotion in enumerate(classes):
            chosen = labels == k
            ax.scatter(points[chosen, 0], points[chosen, 1], s=12, color=palette[k], label=emotion)
        ax.set(title=name, xticks=[], yticks=[])
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def entropy_by_emotion(table: pd.DataFrame, measure: str = "entropy_gap") -> plt.Figure:
    """One per-clip entropy measure per emotion, one box per model (section 4.2.1).

    `table` stacks the `prediction_entropies` tables of several models with a model column
    (``analysis.stack``); `measure` is a column of it, e.g. entropy_gap, entropy_fused, kl_av.
    """
    label = _ENTROPY_MEASURES.get(measure, measure)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.boxplot(data=table, x="emotion", y=measure, hue="model", fliersize=2, ax=ax)
    ax.set(xlabel="", ylabel=f"{label} (nats)", title=f"{label} per emotion")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- own recordings (notebook 08, mer predict)

def _stacked(ax: plt.Axes, centres: np.ndarray, probs: np.ndarray, colours, title: str) -> None:
    """Probabilities (steps, C) stacked at the step centres; NaN steps (gaps) stay blank."""
    shown = np.nan_to_num(probs, nan=0.0)
    if len(centres):
        ax.stackplot(centres, shown.T, colors=colours, step="mid")
    ax.set(ylim=(0, 1), ylabel="p", title=title)


def timeline(timeline, truth: pd.DataFrame | None = None) -> plt.Figure:
    """A recording's emotion timeline (mer_lib.timeline.Timeline): face chips along the time axis, the
    fused probabilities stacked over time (each step at the centre of its block; gaps blank and
    hatched), each modality's head, and the audio waveform. `truth` (start, end, emotion) rows add a
    band of what the recording really shows, where that is known."""
    classes, fused = timeline.classes, timeline.fused
    colours = sns.color_palette(n_colors=len(classes))
    centres = timeline.starts + timeline.steps.count * timeline.steps.window / 2
    heads = [m for m in timeline.modalities if m in timeline.present]
    rows = ["faces"] * ("v" in heads) + ["truth"] * (truth is not None) + ["fused"] + heads + ["audio"] * ("a" in heads)
    ratios = {"faces": 1.0, "truth": 0.3, "fused": 2.0, "a": 0.9, "v": 0.9, "audio": 0.8}
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.2 * sum(ratios[r] for r in rows) + 0.8), sharex=True,
                             gridspec_kw={"height_ratios": [ratios[r] for r in rows]}, squeeze=False)
    ax = dict(zip(rows, axes[:, 0]))
    _stacked(ax["fused"], centres, fused, colours, "fused (late fusion of the heads)")
    half = timeline.steps.hop / 2
    for centre in centres[np.isnan(fused).all(axis=1)]:
        ax["fused"].axvspan(centre - half, centre + half, color="0.9", hatch="//", lw=0)
    for m in heads:
        _stacked(ax[m], centres, timeline.head(m), colours, {"a": "audio head", "v": "video head"}[m])
    ax["fused"].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours], labels=list(classes),
                       fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    if "faces" in ax:
        _face_strip(ax["faces"], timeline.thumbnails(), timeline.duration, timeline.face)
    if "truth" in ax:
        _truth_band(ax["truth"], truth, dict(zip(classes, colours)))
    if "audio" in ax:
        peaks = timeline.envelope
        times = np.arange(len(peaks)) * timeline.envelope_step
        ax["audio"].fill_between(times, -peaks, peaks, color="0.3", lw=0)
        ax["audio"].set(ylim=(-1, 1), ylabel="audio", yticks=[])
    axes[-1, 0].set(xlim=(0, max(timeline.duration, 1e-3)), xlabel="time (s)")
    fig.suptitle(f"{timeline.source.rsplit('/', 1)[-1]}: {timeline.steps.count} x {timeline.steps.window:g} s "
                 f"windows every {timeline.steps.hop:g} s", fontsize=10)
    fig.tight_layout()
    return fig


def _face_strip(ax: plt.Axes, thumbnails: list, duration: float, face: str) -> None:
    """Face chips placed at their times along the time axis."""
    width = duration / max(len(thumbnails), 1) * 0.9
    for time, chip in thumbnails:
        _show_image(ax, chip, extent=(time - width / 2, time + width / 2, 0, 1), aspect="auto")
    ax.set(ylim=(0, 1), yticks=[], title=f"face followed: {face}")


def _truth_band(ax: plt.Axes, truth: pd.DataFrame, colours: dict) -> None:
    """What the recording really shows: one coloured span per (start, end, emotion) row."""
    for row in truth.itertuples():
        ax.axvspan(row.start, row.end, color=colours.get(row.emotion, "0.5"))
        ax.text((row.start + row.end) / 2, 0.5, row.emotion, ha="center", va="center", fontsize=7)
    ax.set(yticks=[], ylabel="truth")


def annotate_frame(image: np.ndarray, box, probabilities, classes: tuple[str, ...]) -> np.ndarray:
    """A video frame with the followed face's box and one bar per emotion (its probability) drawn on it;
    "no face or voice" where the probabilities are missing (a gap)."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    height, width = image.shape[:2]
    row = max(10, height // 30)
    try:
        font = ImageFont.load_default(size=row - 2)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    if box is not None:
        draw.rectangle([float(v) for v in box], outline=(60, 220, 60), width=max(1, width // 300))
    if probabilities is None or np.isnan(probabilities).all():
        draw.text((4, 4), "no face or voice", fill=(255, 255, 255), font=font)
        return np.asarray(picture)
    colours = [tuple(int(255 * c) for c in rgb) for rgb in sns.color_palette(n_colors=len(classes))]
    panel = width // 3
    for i, (name, p, colour) in enumerate(zip(classes, probabilities, colours)):
        top = 4 + i * row
        draw.rectangle([4, top, 4 + panel, top + row - 2], fill=(0, 0, 0))
        draw.rectangle([4, top, 4 + round(panel * float(p)), top + row - 2], fill=colour)
        draw.text((6, top), f"{name} {p:.2f}", fill=(255, 255, 255), font=font)
    return np.asarray(picture)


def explorer_view(view, classes: tuple[str, ...], window: float) -> plt.Figure:
    """One explorer view (mer_lib.explorer.View): the window's face chip and log-mel patch, each encoder's
    attention row for it (the window marked, masked windows hatched), and the probabilities of each head
    with the noise and missing-modality switches (bars) beside those without them (outlines)."""
    modalities = list(view.present)
    fig, axes = plt.subplots(1, 3 + len(modalities), figsize=(3.2 * (3 + len(modalities)), 3.2),
                             gridspec_kw={"width_ratios": [1, 1.2] + [1.2] * len(modalities) + [2.0]})
    chip, patch, *attention, bars = axes
    if view.chip is not None:
        _show_image(chip, view.chip)
    chip.set(xticks=[], yticks=[], title="face" if view.chip is not None else "no face in this window")
    if view.patch is not None:
        patch.imshow(view.patch.T, origin="lower", aspect="auto", cmap="magma")
    patch.set(xlabel="10 ms frames", ylabel="mel band", title="log-mel" if view.patch is not None else "no audio")
    for ax, m in zip(attention, modalities):
        count = len(view.present[m])
        row = view.attention.get(m)
        ax.bar(range(count), row if row is not None else np.zeros(count), color="steelblue")
        ax.bar([view.state.window], [1.0], color="none", edgecolor="crimson", lw=1.5)
        for t in np.flatnonzero(~view.present[m]):
            ax.axvspan(t - 0.5, t + 0.5, color="0.85", hatch="//", lw=0, zorder=0)
        ax.set(ylim=(0, 1), xticks=range(count), xlabel="window", title=f"{'audio' if m == 'a' else 'video'} attention"
               + ("" if row is not None else " (none)"))
    heads = [h for h in ("fused", *modalities) if h in view.probabilities]
    height = 0.8 / len(heads)
    colours = sns.color_palette(n_colors=len(heads))
    for i, (head, colour) in enumerate(zip(heads, colours)):
        y = np.arange(len(classes)) + i * height
        label = {"fused": "fused", "a": "audio head", "v": "video head"}[head]
        bars.barh(y, np.nan_to_num(view.probabilities[head]), height, color=colour, label=label)
        bars.barh(y, np.nan_to_num(view.clean[head]), height, fill=False, edgecolor="black", lw=0.6)
    bars.set(yticks=np.arange(len(classes)) + 0.4 - height / 2, yticklabels=list(classes), xlim=(0, 1),
             xlabel="probability (outline: without the switches)")
    bars.invert_yaxis()
    bars.legend(fontsize=7, loc="lower right")
    state = view.state
    switches = ", ".join(s for s in (f"noise in {state.noise} ({state.noisy} windows)" if state.noise != "none" else "",
                                     f"{state.missing} dropped" if state.missing != "none" else "") if s)
    fig.suptitle(f"step {state.step}, window {state.window}: {view.start:.2f}-{view.end:.2f} s"
                 + (f"; {switches}" if switches else ""), fontsize=10)
    fig.tight_layout()
    return fig
