"""`mer predict` over whole recordings: the emotion timeline as a table, a figure and an annotated video.

A recording longer than the run's block of T windows gets a timeline: mer_lib.stream slides the
block along it (hop configurable, one window by default) and every step's fused and per-modality
probabilities go into a CSV (one row per step), a figure (stacked probabilities over time, with the
face followed and the waveform along the same axis) and, optionally, a copy of the video with the face
box and the probability bars drawn on every frame and the original audio kept. Steps with nothing
to go on (no face, silence) are gaps, blank in the figure and empty in the CSV. `--stream` prints
each step as soon as its windows are complete, and reads a capture device as well as a file. A
recording that holds a single block gets the per-window output of mer_lib.predict, as before.
"""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mer_lib import artifacts, media, parallel, predict
from mer_lib.data import manifest as mf
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.data.windows import TIME_EPS
from mer_lib.errors import MerError
from mer_lib.features.extract import get_extractor
from mer_lib.stream import (
    AUDIO_AHEAD,
    ENVELOPE_SECONDS,
    SILENCE_RMS_DBFS,
    Follower,
    RunModels,
    Step,
    Steps,
    followed_faces,
    merge_by_time,
    one_torch_thread,
    video_reading,
)

THUMBNAILS = 12  # face chips along the figure's time axis


@dataclass
class Timeline:
    """A recording's steps (mer_lib.stream.Step) and what the figure and the annotated video draw.

    `present`: the run's modalities the recording has; `face`: which face was followed, in words;
    `envelope`: peak |sample| per `envelope_step` s; `chips`: window start (ms) -> face chip or None;
    `track_times` (N,) and `track_boxes` (N, 4): every video frame's time and face box (NaN without
    one); `windows`: with details, window start (ms) -> the window's embeddings, masks, chip and log-mel
    patch per modality (mer_lib.explorer).
    """

    source: str
    classes: tuple[str, ...]
    steps: Steps
    results: list[Step]
    modalities: str
    present: str
    duration: float
    face: str = ""
    envelope: np.ndarray = field(default_factory=lambda: np.zeros(0))
    chips: dict = field(default_factory=dict)
    track_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    track_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    windows: dict = field(default_factory=dict)
    interrupted: bool = False
    envelope_step: float = ENVELOPE_SECONDS

    @property
    def fused(self) -> np.ndarray:
        """(steps, classes) fused probabilities, NaN rows for gaps."""
        return np.array([s.fused for s in self.results]).reshape(-1, len(self.classes))

    def head(self, m: str) -> np.ndarray:
        """(steps, classes) probabilities of modality `m`'s head, NaN where it had no present window."""
        return np.array([s.heads[m] for s in self.results]).reshape(-1, len(self.classes))

    @property
    def starts(self) -> np.ndarray:
        return np.array([s.start for s in self.results])

    def table(self) -> pd.DataFrame:
        """One row per step: start, end, emotion (empty for a gap), its probability, p_<class> (fused),
        p_<m>_<class> per modality, and the present windows per modality (<m>_windows)."""
        fused = self.fused
        gap = np.isnan(fused).all(axis=1)
        filled = np.where(gap[:, None], 0.0, fused)
        table = pd.DataFrame({"step": [s.index for s in self.results], "start": self.starts,
                              "end": [s.end for s in self.results],
                              "emotion": np.where(gap, "", np.asarray(self.classes)[filled.argmax(axis=1)]),
                              "probability": np.where(gap, np.nan, filled.max(axis=1))})
        columns = {f"p_{c}": fused[:, i] for i, c in enumerate(self.classes)}
        for m in self.modalities:
            columns |= {f"p_{m}_{c}": self.head(m)[:, i] for i, c in enumerate(self.classes)}
            columns[f"{m}_windows"] = [s.present[m] for s in self.results]
        return pd.concat([table, pd.DataFrame(columns)], axis=1)

    def against(self, truth: pd.DataFrame) -> pd.DataFrame:
        """Accuracy of each head over the steps whose block lies within one segment of `truth` (rows of
        start, end, emotion; blocks across two segments have no single answer) and that are not gaps
        for that head: one row per head with its steps and accuracy."""
        table, rows = self.table(), []
        within = [truth[(truth["start"] <= start + TIME_EPS) & (truth["end"] >= end - TIME_EPS)]["emotion"]
                  for start, end in zip(table["start"], table["end"])]
        labels = np.array([found.iloc[0] if len(found) else "" for found in within])
        for head, probs in [("fused", self.fused)] + [(m, self.head(m)) for m in self.present]:
            scored = (labels != "") & ~np.isnan(probs).all(axis=1)
            predicted = np.asarray(self.classes)[np.nan_to_num(probs, nan=-1.0).argmax(axis=1)]
            rows.append({"head": MODALITY_NAMES.get(head, head), "steps": int(scored.sum()),
                         "accuracy": float((predicted == labels)[scored].mean()) if scored.any() else np.nan})
        return pd.DataFrame(rows)

    def thumbnails(self, n: int = THUMBNAILS) -> list[tuple[float, np.ndarray]]:
        """Up to `n` (time, chip) pairs: for n evenly spaced times, the window nearest each that shows the face."""
        shown = {key / 1000 + self.steps.window / 2: chip for key, chip in self.chips.items() if chip is not None}
        if not shown:
            return []
        times = np.array(sorted(shown))
        wanted = (np.arange(n) + 0.5) * self.duration / n
        return [(times[i], shown[times[i]]) for i in np.unique(np.abs(times[None] - wanted[:, None]).argmin(1))]

    def box_at(self, time: float) -> np.ndarray | None:
        """The followed face's box in the video frame nearest `time` (None without a face)."""
        if not len(self.track_times):
            return None
        box = self.track_boxes[_nearest(self.track_times, time)]
        return None if np.isnan(box).any() else box

    def step_at(self, time: float) -> Step | None:
        """The step whose block is centred nearest `time`."""
        return self.results[_nearest(self._centres, time)] if self.results else None

    @functools.cached_property
    def _centres(self) -> np.ndarray:
        return self.starts + self.steps.count * self.steps.window / 2

    def summary(self) -> str:
        """A few lines: steps and gaps, the emotions most often on top, the face followed."""
        table = self.table()
        shares = table.loc[table["emotion"] != "", "emotion"].value_counts(normalize=True)
        top = ", ".join(f"{emotion} {share:.0%}" for emotion, share in shares.head(3).items()) or "none"
        return (f"{len(table)} steps of {self.steps.count} x {self.steps.window:g} s every {self.steps.hop:g} s over "
                f"{self.duration:.1f} s, {int((table['emotion'] == '').sum())} gaps (no face and no voice); "
                f"most often on top: {top}\nface: {self.face}")


def describe_face(follower: Follower) -> str:
    """Which face the timeline followed, in words."""
    side = follower.sides.get("v")
    if side is None:
        return "no video" if "v" in follower.run.modalities else "not used by this run"
    first, box = next(((t, box) for t, box in side.track if box is not None), (None, None))
    if box is None:
        return "no face found"
    which = {"largest": "the largest", "left": "the leftmost", "right": "the rightmost"}[side.face]
    centre = (box[0] + box[2]) / 2 / side.size[0]
    many = f" of {side.most_faces} faces" if side.most_faces > 1 else " (one face seen)"
    return f"{which}{many}, first seen at {first:.1f} s, {centre:.0%} of the way across the frame"


def predict_timeline(source: str | Path, run: str | Path | RunModels, hop: float | None = None, face: str = "largest",
                     silence_db: float = SILENCE_RMS_DBFS, details: bool = False, format: str | None = None,
                     options: dict | None = None, on_step=None, progress: bool = True,
                     faces_apart: bool | None = None) -> Timeline:
    """The timeline of a recording (or of a capture device: `format`, `options`, see media.Reader) under a run.

    `run` is a run folder or loaded RunModels (e.g. with some folds only); `hop` defaults to one
    window; `on_step(step)` is called as each step completes (streaming); with `details` every
    window's inputs stay in the timeline (mer_lib.explorer); `faces_apart`: see `pieces`. Interrupting
    (Ctrl-C) ends the reading and returns the steps so far, marked `interrupted`.
    """
    run = run if isinstance(run, RunModels) else RunModels(run)
    if run.window is None:
        raise MerError("the run's stores use the clip layout (one window per clip): a timeline needs windows of "
                       "one length; `mer predict` without --stream treats the recording as one clip")
    steps = Steps(run.window, run.count, hop or run.window)
    with one_torch_thread(), reader_for(source, run, format, options) as reader:
        present = "".join(m for m, stream in (("a", reader.audio), ("v", reader.video)) if stream is not None)
        follower = Follower(run, steps, present, face, silence_db, details)
        with pieces(reader, follower, faces_apart) as items:
            results, interrupted = _follow(items, reader.duration, follower, on_step, progress)
        duration = reader.duration if reader.duration and not interrupted else None
        results += _each(follower.finish(duration), on_step)
    audio, video = follower.sides.get("a"), follower.sides.get("v")
    track = video.track if video else []
    return Timeline(str(source), run.classes, steps, results, run.modalities, present,
                    duration or max(side.finish() for side in follower.sides.values()), describe_face(follower),
                    np.asarray(audio.envelope if audio else []), follower.chips,
                    np.array([time for time, _ in track]).reshape(-1),
                    np.array([np.full(4, np.nan) if box is None else box for _, box in track]).reshape(-1, 4),
                    follower.windows, interrupted)


def reader_for(source: str | Path, run: RunModels, format: str | None = None,
               options: dict | None = None) -> media.Reader:
    """The recording read as the run's stores were made: the audio at its extractor's rate, every
    `frame_step`-th frame, RGB or luma; only the modalities the run uses."""
    video = run.configs.get("v")
    return media.Reader(source, follower_rate(run), format=format, options=options, audio="a" in run.modalities,
                        video=video is not None, **(video_reading(video) if video else {}))


@contextlib.contextmanager
def pieces(reader: media.Reader, follower: Follower, faces_apart: bool | None = None) -> Iterator[Iterator]:
    """The pieces of `reader` for `follower.push`, decoded ahead in a thread (media.read_ahead).

    With `faces_apart` the faces are followed in a process of their own, which reads the video itself
    (stream.followed_faces), and this process reads only the audio: the same steps, in about three
    quarters of the time on two cores. None: apart where that can gain, a file (a capture device
    cannot be opened twice) with video the follower uses, and more than one core.
    """
    video = follower.sides.get("v")
    if faces_apart is None:
        faces_apart = video is not None and reader.format is None and (os.cpu_count() or 1) > 1
    if not faces_apart or video is None:
        with contextlib.closing(media.read_ahead(reader)) as items:
            yield items
        return
    with parallel.produced(followed_faces, reader.source, video.config, video.face) as faces, \
            contextlib.closing(media.read_ahead(reader.pieces(video=False))) as audio:
        yield merge_by_time(audio, faces, AUDIO_AHEAD)


def follower_rate(run: RunModels) -> int | None:
    """The sample rate the run's audio extractor reads (None for a run without audio)."""
    return get_extractor(run.configs["a"]).sample_rate if "a" in run.configs else None


def _nearest(values: np.ndarray, value: float) -> int:
    """The index of the sorted `values` nearest `value`."""
    i = int(np.clip(np.searchsorted(values, value), 1, max(len(values) - 1, 1)))
    return i - 1 if len(values) < 2 or value - values[i - 1] <= values[i] - value else i


def _each(steps: list[Step], on_step) -> list[Step]:
    """`steps`, each first handed to `on_step` when there is one."""
    for step in steps if on_step else []:
        on_step(step)
    return steps


def _follow(items: Iterator, duration: float | None, follower: Follower, on_step,
            progress: bool) -> tuple[list[Step], bool]:
    """Feed the pieces to the follower, with a progress bar in media seconds; (steps, interrupted)."""
    results, seen = [], 0.0
    with tqdm(total=round(duration or 0, 1) or None, unit="s", desc="timeline", disable=None if progress else True,
              bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s [{elapsed}<{remaining}]") as bar:
        try:
            for kind, data, time in items:
                results += _each(follower.push(kind, data, time), on_step)
                if time > seen:
                    bar.update(time - seen)
                    seen = time
        except KeyboardInterrupt:
            return results, True
    return results, False


# ----------------------------------------------------------------------------- outputs

def write(timeline: Timeline, out: str | Path, truth: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """<out>/<name>_timeline.csv and .png (atomic writes); `truth` segments (start, end, emotion) go on the figure."""
    from mer_lib import plots

    stem = Path(timeline.source).stem
    csv = artifacts.write_csv(Path(out) / f"{stem}_timeline.csv", timeline.table())
    png = Path(out) / f"{stem}_timeline.png"
    plots.save(plots.timeline(timeline, truth=truth), png)
    return csv, png


def annotate(timeline: Timeline, path: str | Path) -> Path:
    """A copy of the recording with the followed face's box and the probability bars of the step centred
    on each frame drawn on it, the original audio kept (mer_lib.media.rewrite_video)."""
    from mer_lib import plots

    if "v" not in timeline.present:
        raise MerError(f"{timeline.source} has no video to annotate")

    def draw(image: np.ndarray, time: float) -> np.ndarray:
        step = timeline.step_at(time)
        return plots.annotate_frame(image, timeline.box_at(time), None if step is None else step.fused,
                                    timeline.classes)

    return media.rewrite_video(timeline.source, path, draw)


def print_step(step: Step, classes: tuple[str, ...]) -> None:
    """One line per step as it completes: its time, the fused emotion and each modality's."""
    def best(p: np.ndarray) -> str:
        return "-" if np.isnan(p).all() else f"{classes[int(np.nanargmax(p))]} {np.nanmax(p):.2f}"

    heads = ", ".join(f"{MODALITY_NAMES[m]} {best(p)}" for m, p in step.heads.items())
    print(f"{step.start:8.2f}-{step.end:8.2f} s  {'gap' if step.gap else best(step.fused):18s} ({heads})", flush=True)


def run(source: str | Path, run_dir: str | Path, out: str | Path | None = None, hop: float | None = None,
        stream: bool = False, video_out: bool = False, face: str = "largest", silence_db: float | None = None,
        folds: list[int] | None = None, format: str | None = None,
        options: dict | None = None) -> Timeline | predict.Prediction:
    """The `mer predict` command: a timeline for a long recording, mer_lib.predict's per-window output for
    a short one (one block at most), unless `stream` or `folds` ask for the timeline.

    Writes <out>/<name>_timeline.csv and .png (and _annotated.mp4 with `video_out`) under RUN/predict
    by default. `stream` prints each step as it completes; `folds` averages only those fold models;
    `format` reads a capture device; `silence_db` None is SILENCE_RMS_DBFS.
    """
    out = Path(out) if out is not None else Path(run_dir) / "predict"
    models = RunModels(run_dir, folds)
    timeline_asked = stream or folds is not None or format is not None
    if not timeline_asked and (models.window is None or _single_block(source, models, hop)):
        if models.window is None:
            print("note: the run's stores use the clip layout, so the recording is one clip")
        return predict.run(source, run_dir, out)
    if format is None and not Path(source).is_file():
        raise MerError(f"{source} does not exist")
    silence_db = SILENCE_RMS_DBFS if silence_db is None else silence_db
    timeline = predict_timeline(source, models, hop, face, silence_db, format=format, options=options,
                                on_step=(lambda step: print_step(step, models.classes)) if stream else None,
                                progress=not stream)
    if not timeline.results:
        raise MerError(f"{source}: shorter than one step ({models.count} x {models.window:g} s); nothing to predict")
    _note_missing(timeline)
    written = list(write(timeline, out))
    if video_out:
        written.append(annotate(timeline, out / f"{Path(source).stem}_annotated.mp4"))
    print(("stopped early; " if timeline.interrupted else "") + timeline.summary())
    print(f"wrote {', '.join(str(p) for p in written)}")
    return timeline


def _single_block(source: str | Path, models: RunModels, hop: float | None) -> bool:
    """Whether the recording holds at most one step (it then keeps mer predict's per-window output)."""
    if not Path(source).is_file():
        raise MerError(f"{source} does not exist")
    return Steps(models.window, models.count, hop or models.window).count_in(media.probe(source).duration) <= 1


def _note_missing(timeline: Timeline) -> None:
    missing = [MODALITY_NAMES[m] for m in timeline.modalities if m not in timeline.present]
    if missing:
        print(f"note: {Path(timeline.source).name} has no {' or '.join(missing)}; the timeline uses "
              f"{MODALITY_NAMES[timeline.present]} only")


# ----------------------------------------------------------------------------- a recording to try

def corpus_recording(data_dir: str | Path, out: str | Path, actor: int | None = None,
                     emotions: list[str] | None = None) -> tuple[Path, pd.DataFrame]:
    """One longer recording made of a prepared dataset's clips of one actor, back to back.

    `emotions` is the sequence of clips (default: each of the dataset's classes the actor has once);
    an emotion named again takes that actor's next clip of it. `actor` defaults to the first. Video
    clips must share frame size and rate. Writes `out` (an .mp4, or a .wav when the clips have no
    video) and returns it with the truth: one row per clip (start, end, emotion, id), to set beside
    the timeline.
    """
    manifest = mf.load_manifest(data_dir, usable_only=True)
    actor = int(manifest["actor"].min()) if actor is None else actor
    own = manifest[manifest["actor"] == actor]
    emotions = list(emotions or [c for c in mf.classes(str(manifest["dataset"].iloc[0])) if c in set(own["emotion"])])
    chosen = pd.DataFrame([_nth_clip(own, emotion, n, actor, data_dir)
                           for emotion, n in zip(emotions, pd.Series(emotions).groupby(emotions).cumcount())])
    rate = 48000
    audio = [media.read_audio(path, sample_rate=rate)[0] for path in chosen["audio_path"]]
    ends = np.cumsum([len(a) / rate for a in audio])
    truth = pd.DataFrame({"start": ends - [len(a) / rate for a in audio], "end": ends, "emotion": emotions,
                          "id": chosen["id"].tolist()})
    if not chosen["has_video"].astype(bool).all():
        return media.write_audio(Path(out).with_suffix(".wav"), np.concatenate(audio), rate), truth
    fps = media.probe(chosen["video_path"].iloc[0]).fps
    frames = (frame for path, sound in zip(chosen["video_path"], audio)
              for frame in _fitted(media.read_video(path)[0], round(len(sound) / rate * fps)))
    return media.write_av(out, frames, fps, np.concatenate(audio), rate), truth


def _nth_clip(clips: pd.DataFrame, emotion: str, n: int, actor: int, data_dir) -> pd.Series:
    """The n-th (0-based) clip of `emotion` among one actor's clips; MerError when there are fewer."""
    found = clips[clips["emotion"] == emotion]
    if n >= len(found):
        raise MerError(f"{data_dir}: actor {actor} has {len(found)} usable clips of {emotion}, {n + 1} asked")
    return found.iloc[n]


def _fitted(frames: np.ndarray, count: int) -> np.ndarray:
    """`count` frames: cut, or padded with the last one, so each clip's video lasts as long as its audio."""
    return frames[np.minimum(np.arange(count), len(frames) - 1)]
