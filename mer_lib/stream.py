"""Emotion over a whole recording as it comes in: the run's block of T windows slid along it.

A run classifies blocks of T windows of w seconds (MATER, section 3). Over a recording of any
length, step k is the block whose windows start at k x hop + j x w (j = 0..T-1; the hop defaults to
w, so consecutive steps share T - 1 windows). `Follower` takes the audio samples and video frames as
`media.Reader` delivers them; a step is complete once every modality has arrived past its end. Its
windows are then embedded with the run's own extractors (each window once, however many steps share
it) and the block goes through the run's fold models, whose probabilities are averaged as in
`mer predict`. Only what later steps still need is kept (audio samples and per-frame face features
from the next step's start on), so memory does not grow with the recording's length and a capture
device can be followed live.

Within a step the windows lie back to back (the fixed layout of mer_lib.data.windows), whatever
layout the run was trained with. Masks follow training: an audio window is present when at least
half of it lies in the recording, a video window when one of its frames shows the followed face
(`FaceTracker`: one face, the largest unless told otherwise). A quiet window stays, as the silent
starts of the training clips did (masking them would show the model blocks it never saw: on the
embedded corpus that halved the accuracy of a step), but a block whose audio windows are all quieter
than `SILENCE_RMS_DBFS` is silence: its audio is masked. A step with no present window in any
modality is a gap: its probabilities are NaN, never a guess.

Following the face in each frame (`FaceTracker`, dlib) is the largest part of the work, and dlib holds
Python's lock while it works, so no thread runs beside it. A recording read from a file therefore has its
faces followed in a process of its own (`followed_faces`, through mer_lib.parallel's `produced`), whose
answers the `Follower` takes as ("face", `Followed`, time) pieces beside the audio this process reads
(`merge_by_time`), while this process runs the CNN, openSMILE and the fold models: the same steps, a
quarter less time on two cores (the README's timeline benchmark).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mer_lib import media, predict, run_folder
from mer_lib.analysis import head_logits
from mer_lib.data import manifest as mf
from mer_lib.data import windows as win
from mer_lib.data.clips import ClipData
from mer_lib.data.modalities import MODALITY_NAMES
from mer_lib.errors import MerError
from mer_lib.features.audio import log_mel
from mer_lib.features.extract import ExtractConfig, get_extractor
from mer_lib.features.faces import FaceTracker
from mer_lib.features.pooling import pool_windows

# A block whose audio windows' RMS levels are all below this (dB re full scale) is silence. Not
# windows.SILENCE_DBFS (-60 dBFS peak), which finds recordings with no signal at all: room tone between
# sentences has peaks above that.
SILENCE_RMS_DBFS = -50.0
ENVELOPE_SECONDS = 0.01  # the timeline figure's waveform keeps one peak per 10 ms
THUMBNAIL_SIDE = 48  # face chips kept per window for the figure are shrunk to about this side
CNN_BATCH = 32  # face chips embedded together
# Faces in phone and webcam recordings are smaller than in RAVDESS's close-ups: detect on frames shrunk
# to 640 px at most (not FaceTracker's 320), so faces from about 80 px there (160 px in a 1280-wide
# frame) are found. Detection runs every few frames only; the landmarks do not depend on it.
DETECT_MAX_SIDE = 640
# While the faces are followed in another process, the audio is read at most this many seconds ahead of them
# (its samples wait in the follower until the faces catch up: 2 s of 16 kHz audio is 128 kB).
AUDIO_AHEAD = 2.0


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread, restored after. A timeline's batches are small (one
    block, a few dozen face chips): more threads gain nothing there and cost much when other processes
    share the cores (under a load of 7 on 2 cores a block's MATER forward took 0.44 s with 2 threads, 8 ms
    with one; the whole timeline ran 5.6 times slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def window_key(start: float) -> int:
    """A window's start in whole milliseconds: the key under which steps share it."""
    return int(round(start * 1000))


@dataclass(frozen=True)
class Steps:
    """Where a timeline's steps lie: step k is the T=`count` windows of `window` s from k x `hop` s on."""

    window: float
    count: int
    hop: float

    def __post_init__(self):
        if not self.hop > 0:
            raise MerError(f"the hop between steps must be a positive number of seconds, got {self.hop}")

    def starts(self, k: int) -> np.ndarray:
        """The start (s) of each window of step k."""
        return k * self.hop + np.arange(self.count) * self.window

    def end(self, k: int) -> float:
        return k * self.hop + self.count * self.window

    def fits(self, k: int, duration: float) -> bool:
        """Whether step k's last window lies at least half inside a recording of `duration` seconds."""
        return self.end(k) - (1 - win.MIN_COVERAGE) * self.window <= duration + win.TIME_EPS

    def count_in(self, duration: float) -> int:
        """How many steps fit in a recording of `duration` seconds."""
        first_end = self.end(0) - (1 - win.MIN_COVERAGE) * self.window
        return max(0, int(np.floor((duration + win.TIME_EPS - first_end) / self.hop)) + 1)


@dataclass
class Step:
    """One step's probabilities: fused (C,) and per modality (C,), NaN where nothing was present."""

    index: int
    start: float
    end: float
    fused: np.ndarray
    heads: dict[str, np.ndarray]
    present: dict[str, int]  # present windows per modality of the run

    @property
    def gap(self) -> bool:
        return bool(np.isnan(self.fused).all())


class RunModels:
    """A finished run ready for new recordings: classes, windows, each modality's store config and the fold models.

    `folds` keeps some fold models only (e.g. the fold whose test actors a recording comes from);
    None averages them all, as `mer predict` does. A run on clip-layout stores has `window` None.
    """

    def __init__(self, run_dir: str | Path, folds: list[int] | None = None):
        saved = run_folder.read_run_config(run_dir)
        self.classes = tuple(mf.classes(saved["data"]["dataset"]))
        self.modalities = saved["train"]["modalities"]
        self.configs: dict[str, ExtractConfig] = {}
        self.dims: dict[str, int] = {}
        for m in self.modalities:
            config, self.dims[m] = predict.extract_config(saved, MODALITY_NAMES[m])
            if config.extractor == "openface":
                raise MerError("the run used RAVDESS's OpenFace CSVs, which a new recording does not have")
            self.configs[m] = predict.check_weights(config, MODALITY_NAMES[m])
        first = next(iter(self.configs.values()))
        self.window, self.count, self.layout = first.window, first.count, first.layout
        models = run_folder.fold_models(run_dir, len(self.classes), self.dims, self.count)
        missing = sorted(set(folds or []) - set(models))
        if missing:
            raise MerError(f"{run_dir} has no fold {missing[0]} (it has {', '.join(map(str, models))})")
        self.models = [model for fold, model in models.items() if folds is None or fold in folds]

    @property
    def colour(self) -> str:
        """The frames a recording is read in: luma where the run's video store tracked faces in luma, else RGB."""
        return self.configs["v"].colour if "v" in self.configs else "rgb"

    def block(self, windows: dict[str, tuple[np.ndarray, np.ndarray]]) -> ClipData:
        """One block of windows {m: ((T, d) embeddings, (T,) mask)} as ClipData; a missing modality is all masked."""
        arrays = {}
        for m in self.modalities:
            x, mask = windows.get(m, (np.zeros((self.count, self.dims[m]), np.float32), np.zeros(self.count, bool)))
            arrays[MODALITY_NAMES[m]], arrays[f"{MODALITY_NAMES[m]}_mask"] = x[None], mask[None]
        return ClipData.from_numpy([0], len(self.classes), **arrays)

    @torch.no_grad()
    def probabilities(self, data: ClipData) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Fused and per-modality probabilities (C,) of a one-clip ClipData, averaged over the fold models;
        NaN for a modality with no present window, and for the fusion when no modality has one."""
        heads = [{h: logits.softmax(1)[0].numpy() for h, logits in head_logits(model(**data.inputs())).items()}
                 for model in self.models]
        mean = {h: np.mean([p[h] for p in heads], axis=0) for h in heads[0]}
        present = {m: bool(getattr(data, f"{MODALITY_NAMES[m]}_mask").any()) for m in self.modalities}
        nan = np.full(len(self.classes), np.nan)
        by_modality = {m: mean[m] if present[m] and m in mean else nan for m in self.modalities}
        return (mean["fused"] if any(present.values()) else nan), by_modality


def video_reading(config: ExtractConfig) -> dict:
    """media.Reader's settings that read a recording's frames as the video store `config` read its clips'."""
    return {"frame_step": config.frame_step, "colour": config.colour}


@dataclass(frozen=True)
class Followed:
    """The face followed in one frame: FaceTracker.update's (box, landmarks, chip), None without it; the
    frame's (width, height); the most faces one detection has seen so far (FaceTracker.most_faces)."""

    face: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    size: tuple[int, int]
    most_faces: int


def follow(tracker: FaceTracker, image: np.ndarray, luma: bool) -> Followed:
    """Follow the face into the next frame: luma (H, W) where the run's store was made from luma, else RGB."""
    if (image.ndim == 2) != luma:
        raise MerError(f"the run's faces were tracked in {'luma' if luma else 'RGB'} frames, this frame "
                       f"is {'luma' if image.ndim == 2 else 'RGB'}: read with media.Reader(colour=run.colour)")
    return Followed(tracker.update(image), image.shape[1::-1], tracker.most_faces)


def face_tracker(config: ExtractConfig, face: str) -> FaceTracker:
    """The tracker a timeline follows `face` with, cutting chips as the video store `config` did."""
    return FaceTracker(chip_size=config.chip_size, detect_max_side=DETECT_MAX_SIDE, face=face)


def followed_faces(source: str, config: ExtractConfig, face: str) -> Iterator[tuple[str, Followed, float]]:
    """("face", Followed, time) for each frame of the recording file `source` that the video store `config`
    would read: the per-frame face work of a timeline, which runs in a process of its own (parallel.produced)."""
    tracker = face_tracker(config, face)
    with media.Reader(source, audio=False, **video_reading(config)) as reader, \
            contextlib.closing(media.read_ahead(reader)) as frames:
        for _, image, time in frames:
            yield "face", follow(tracker, image, config.luma), time


def merge_by_time(first: Iterable, second: Iterable, ahead: float) -> Iterator:
    """Two time-ordered sequences of (kind, data, time) pieces as one, `first` at most `ahead` seconds ahead of
    `second` (the audio read here beside the faces followed elsewhere: its buffer stays bounded)."""
    first = iter(first)
    pending = next(first, None)
    for item in second:
        while pending is not None and pending[2] <= item[2] + ahead:
            yield pending
            pending = next(first, None)
        yield item
    if pending is not None:
        yield pending
    yield from first


class AudioWindows:
    """The audio side of a `Follower`: samples held until their windows are embedded, silence masked."""

    def __init__(self, extractor, window: float, silence_db: float = SILENCE_RMS_DBFS, patches: bool = False):
        self.extractor, self.window, self.silence_db, self.patches = extractor, window, silence_db, patches
        self.rate = extractor.sample_rate
        self.buffer, self.origin = np.zeros(0, np.float32), 0  # sample index of buffer[0]
        self.envelope: list[float] = []  # peak |sample| per ENVELOPE_SECONDS, for the figure
        self._hop = max(1, round(ENVELOPE_SECONDS * self.rate))

    @property
    def until(self) -> float:
        """Seconds of audio received."""
        return (self.origin + len(self.buffer)) / self.rate

    def push(self, samples: np.ndarray, time: float) -> None:
        """Append the next samples (they follow the previous ones without a gap; `time` is not needed)."""
        enveloped = len(self.envelope) * self._hop - self.origin  # buffer index of the first sample not enveloped
        self.buffer = np.concatenate([self.buffer, samples])
        whole = (len(self.buffer) - enveloped) // self._hop
        blocks = self.buffer[enveloped:enveloped + whole * self._hop].reshape(whole, self._hop)
        self.envelope += np.abs(blocks).max(axis=1).tolist()

    def embed(self, starts: np.ndarray) -> dict:
        """{"x": (n, d), "mask": (n,), "silent": (n,) and with `patches` "patch": (n, frames, 64) log-mel}
        of the windows at `starts`; windows less than half inside the audio received so far are masked,
        windows below the silence level are flagged (the Follower masks a block of silence)."""
        ends = starts + self.window
        covered = np.clip(np.minimum(ends, self.until) - starts, 0.0, None) >= win.MIN_COVERAGE * self.window
        plan = win.WindowPlan(starts, ends, covered, 0.0, self.window)
        segments = win.segment(self.buffer, self.rate, plan, self.origin)
        level = 10 * np.log10(np.mean(segments.astype(np.float64) ** 2, axis=1) + 1e-20)
        x, mask = self.extractor.embed_segments(segments, covered, self.window)
        out = {"x": x, "mask": mask, "silent": level < self.silence_db}
        return out | ({"patch": log_mel(segments, self.rate)} if self.patches else {})

    def release(self, before: float) -> None:
        """Forget the samples before `before` seconds (no later window starts there)."""
        enveloped = len(self.envelope) * self._hop - self.origin
        # two samples of margin: a window's first sample is rounded from its start (win.segment)
        drop = min(enveloped, max(0, int(np.floor(before * self.rate)) - 2 - self.origin))
        self.buffer, self.origin = self.buffer[drop:], self.origin + drop

    def finish(self) -> float:
        return self.until


class VideoWindows:
    """The video side of a `Follower`: the face followed frame by frame, per-frame CNN features held
    until their windows are pooled (mean, then l2; MATER section 3.1.1), as `mer extract` pools them."""

    def __init__(self, extractor, config: ExtractConfig, window: float, face: str = "largest",
                 chip_side: int = THUMBNAIL_SIDE):
        self.extractor, self.config, self.window, self.face = extractor, config, window, face
        self.shrink = max(1, config.chip_size // chip_side)
        self.waiting: list[tuple[float, np.ndarray, np.ndarray]] = []  # (time, CNN input, chip) not embedded yet
        self.times: list[float] = []  # embedded frames with a face, not yet released: times, features, chips
        self.features: list[np.ndarray] = []
        self.chips: list[np.ndarray] = []
        self.track: list[tuple[float, np.ndarray | None]] = []  # every frame: (time, face box or None)
        self.last, self.size = -np.inf, None  # the latest frame's time and (width, height)
        self.most_faces = 0  # the most faces one detection saw

    @functools.cached_property
    def tracker(self) -> FaceTracker:
        """The tracker `push` follows the face with (made when first needed: faces followed in another
        process come to `push_face`, and this process never loads the landmark model)."""
        return face_tracker(self.config, self.face)

    @property
    def until(self) -> float:
        """The time of the latest frame."""
        return self.last

    def push(self, image: np.ndarray, time: float) -> None:
        """Follow the face in the next frame: luma (H, W) where the run's store was made from luma, else RGB."""
        self.push_face(follow(self.tracker, image, self.config.luma), time)

    def push_face(self, followed: Followed, time: float) -> None:
        """Take the face followed in the next frame (here by `push`, or in another process): its CNN input waits."""
        face = followed.face
        self.track.append((time, None if face is None else face[0].astype(np.float32)))
        self.last, self.size, self.most_faces = time, followed.size, followed.most_faces
        if face is not None:
            self.waiting.append((time, face[2] if self.extractor.needs == "chips" else face[1], face[2]))
        if len(self.waiting) >= CNN_BATCH:
            self._embed_waiting()

    def _embed_waiting(self) -> None:
        """Run the CNN on the chips (or landmarks) waiting, in one batch."""
        if self.waiting:
            times, inputs, chips = zip(*self.waiting)
            self.features += list(self.extractor.embed_frames(np.stack(inputs)))
            self.times += times
            self.chips += [chip[::self.shrink, ::self.shrink] for chip in chips]
            self.waiting = []

    def embed(self, starts: np.ndarray) -> dict:
        """{"x": (n, d), "mask": (n,), "chip": per window the chip nearest its middle (None without a face)}
        of the windows at `starts`; a window is present when one of its frames shows the face."""
        self._embed_waiting()
        plan = win.WindowPlan(starts, starts + self.window, np.ones(len(starts), bool), 0.0, self.window)
        times = np.asarray(self.times, dtype=np.float64)
        members = win.frame_windows(times, plan)
        if not len(times):
            return {"x": np.zeros((len(starts), self.extractor.dim), np.float32),
                    "mask": np.zeros(len(starts), bool), "chip": [None] * len(starts)}
        x, mask = pool_windows(np.stack(self.features), members)
        distance = np.where(members, np.abs(times[:, None] - (starts + self.window / 2)), np.inf)
        return {"x": x, "mask": mask, "chip": [self.chips[i] if ok else None
                                               for i, ok in zip(distance.argmin(0), mask)]}

    def release(self, before: float) -> None:
        """Forget the frames before `before` seconds (no later window starts there)."""
        keep = int(np.searchsorted(np.asarray(self.times), before - win.TIME_EPS))
        self.times, self.features, self.chips = self.times[keep:], self.features[keep:], self.chips[keep:]

    def finish(self) -> float:
        """The video's duration: the last frame's time plus the typical interval between frames."""
        times = np.array([t for t, _ in self.track[-32:]])
        if not len(times):
            return 0.0
        return float(times[-1] + (np.median(np.diff(times)) if len(times) > 1 else 0.0))


@dataclass
class Follower:
    """A recording's steps as its audio and video arrive (see the module docstring).

    `present` names the modalities the source has ("a", "v", "av"; those the run does not use are
    ignored). `push` each decoded piece (media.Reader's items) and collect the steps it completes;
    `finish` completes the last ones. With `details`, every window's embeddings, masks, face chip
    (full size) and log-mel patch stay in `windows` (the explorer looks at them); otherwise each
    window keeps only a small face chip (`chips`) for the timeline figure.
    """

    run: RunModels
    steps: Steps
    present: str
    face: str = "largest"
    silence_db: float = SILENCE_RMS_DBFS
    details: bool = False
    next: int = 0
    sides: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # window key -> {m: embed() row} of windows later steps share
    windows: dict = field(default_factory=dict)  # with details: window key -> {m: embed() row}, kept
    chips: dict = field(default_factory=dict)  # window key -> small face chip or None

    def __post_init__(self):
        if "a" in self.present and "a" in self.run.modalities:
            self.sides["a"] = AudioWindows(get_extractor(self.run.configs["a"]), self.steps.window, self.silence_db,
                                           patches=self.details)
        if "v" in self.present and "v" in self.run.modalities:
            config = self.run.configs["v"]
            self.sides["v"] = VideoWindows(get_extractor(config), config, self.steps.window, self.face,
                                           config.chip_size if self.details else THUMBNAIL_SIDE)
        if not self.sides:
            raise MerError(f"the recording has no {' or '.join(MODALITY_NAMES[m] for m in self.run.modalities)} "
                           f"for this run")

    def push(self, kind: str, data: np.ndarray | Followed, time: float) -> list[Step]:
        """Take one decoded piece ("audio" samples or a "video" frame) or the face followed in a frame elsewhere
        ("face", `followed_faces`); the steps it completes."""
        side = self.sides.get("a" if kind == "audio" else "v")
        if side is not None:
            (side.push_face if kind == "face" else side.push)(data, time)
        done = []
        while all(side.until >= self.steps.end(self.next) - win.TIME_EPS for side in self.sides.values()):
            done.append(self._step())
        return done

    def finish(self, duration: float | None = None) -> list[Step]:
        """The steps left once the recording has ended (`duration` s; default: what arrived)."""
        duration = duration if duration is not None else max(side.finish() for side in self.sides.values())
        done = []
        while self.steps.fits(self.next, duration):
            done.append(self._step())
        return done

    def _step(self) -> Step:
        """Embed the next step's new windows, classify the step, release what no later step needs."""
        k = self.next
        starts = self.steps.starts(k)
        keys = [window_key(s) for s in starts]
        new = np.array([s for s, key in zip(starts, keys) if key not in self.cache])
        if len(new):
            rows = {m: side.embed(new) for m, side in self.sides.items()}
            for i, s in enumerate(new):
                self.cache[window_key(s)] = {m: {name: values[i] for name, values in row.items()}
                                             for m, row in rows.items()}
        blocks = {m: (np.stack([self.cache[key][m]["x"] for key in keys]),
                      np.array([self.cache[key][m]["mask"] for key in keys])) for m in self.sides}
        if "a" in blocks and all(self.cache[key]["a"]["silent"] for key in keys):  # silence: no voice to go on
            blocks["a"] = (blocks["a"][0], np.zeros(len(keys), bool))
        fused, heads = self.run.probabilities(self.run.block(blocks))
        for key in keys:
            self.chips.setdefault(key, self.cache[key].get("v", {}).get("chip"))
            if self.details:
                self.windows.setdefault(key, self.cache[key])
        self.next = k + 1
        following = self.steps.starts(self.next)[0]
        self.cache = {key: row for key, row in self.cache.items() if key >= window_key(following)}
        for side in self.sides.values():
            side.release(following)
        return Step(k, float(starts[0]), self.steps.end(k), fused, heads,
                    {m: int(blocks[m][1].sum()) if m in blocks else 0 for m in self.run.modalities})
