"""What the course notebooks share beyond the library: their first steps (`setup`: the prepared data,
its stores, modalities and classes), which modalities the prepared data offers, and which sections and
training runs fit them.

Many users have only RAVDESS's audio-only release (Audio_Speech_Actors_01-24): no clip has video.
The notebooks then run everything that needs audio alone (MATER's audio head, its entropies, noise
in audio, incremental recognition) and skip, with one line each, what needs faces or both modalities.
`modalities` says which modalities a run of the notebooks uses, `needs` guards a section, and
`within` and `grid_for` keep the settings and training runs that fit.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from mer_lib import paths
from mer_lib.data import manifest as mf
from mer_lib.errors import MerError
from mer_lib.features import extract

NAMES = {"a": "audio", "v": "video", "av": "audio and video"}
# Late-fusion models with one head per modality: a grid entry naming no modalities trains them on all
# the data has. Every other model of a grid (cross-modal fusion, JCA) needs both modalities.
PER_MODALITY_MODELS = ("mater", "lstm")


class Setup(NamedTuple):
    """What a notebook's first cell gives the rest of it (unpacks in this order)."""

    data_dir: Path  # the prepared data folder, resolved
    runs_dir: Path | None  # <runs_dir>/<dataset>: the notebook's run folders; None when it trains none
    modalities: str  # "av", "a" or "v" (`modalities`)
    classes: tuple[str, ...]  # the dataset's emotions, in label order


def setup(dataset: str, data_root: str | Path | None, data_dir: str | Path, audio: str | None, video: str | None,
          window: float | None = None, windows: int | None = None, runs_dir: str | Path | None = None) -> Setup:
    """The steps every notebook from 02 on starts with, from its parameters: the data folder prepared
    (the embedded corpus generated) when missing, the window embedding stores extracted when `window`
    and `windows` are given (reused when present), the modalities the data and extractors offer, the
    class names, the notebook's run folder root, and a line saying when the data is the embedded corpus,
    a teaching and test fixture. One function, so the notebooks cannot drift apart in how they begin."""
    data_dir = mf.ensure_prepared(dataset, data_root, data_dir, quiet=True)
    if window is not None and windows is not None:
        extract.extract(data_dir, audio=audio, video=video, window=window, count=windows)
    chosen = modalities(data_dir, audio, video)
    if dataset == "synthetic":
        print("Running on the embedded synthetic corpus: a teaching and test fixture, not real emotions.")
    return Setup(data_dir, None if runs_dir is None else paths.resolve(runs_dir) / dataset, chosen,
                 mf.classes(dataset))


def extractor(name: str | None) -> str | None:
    """An extractor parameter as the library takes it: None for None or "none" (the modality is skipped)."""
    return None if name in (None, "none") else name


def modalities(data_dir: str | Path, audio: str | None = "egemaps", video: str | None = "fer_minixception") -> str:
    """"av", "a" or "v": the modalities that have an extractor (not None or "none") and at least one
    usable clip of the prepared data folder; MerError when neither does."""
    usable = mf.load_manifest(data_dir, usable_only=True)
    chosen = [m for m, column, name in (("a", "has_audio", audio), ("v", "has_video", video))
              if extractor(name) is not None and column in usable and usable[column].astype(bool).any()]
    if not chosen:
        raise MerError(f"{data_dir}: no usable clip has a modality with an extractor "
                       f"(audio {audio!r}, video {video!r})")
    return "".join(chosen)


def needs(required: str, available: str, what: str) -> bool:
    """Whether the `required` modalities ("a", "v", "av") are all `available`; when not, print one line
    saying that `what` is skipped and why."""
    if set(required) <= set(available):
        return True
    print(f"skipped: {what} (needs {NAMES[required]}; this data has {NAMES[available]} only)")
    return False


def within(settings: Iterable[str], available: str, what: str = "") -> list[str]:
    """The modality settings ("a", "v", "av") that use only `available` modalities, in order; the others
    are named in one printed line (prefixed by `what` when given)."""
    settings = list(settings)
    kept = [s for s in settings if set(s) <= set(available)]
    if len(kept) < len(settings):
        dropped = ", ".join(NAMES[s] for s in settings if s not in kept)
        print(f"skipped{' ' + what if what else ''}: {dropped} (this data has {NAMES[available]} only)")
    return kept


def grid_for(grid: list[dict], available: str) -> list[dict]:
    """The entries of a training grid (``mer_lib.grids.MATER_ABLATIONS``, ``mer_lib.grids.FUSION_COMPARISON``) that can
    train on the `available` modalities, in order; the skipped ones are named in one printed line.

    An entry naming no modalities means audio-visual; with one modality only, the per-modality models
    (`PER_MODALITY_MODELS`) train on it instead and every other model is skipped. With both modalities
    the grid is returned unchanged.
    """
    if available == "av":
        return list(grid)
    kept, skipped = [], []
    for entry in grid:
        if "modalities" not in entry and entry.get("model", "mater") in PER_MODALITY_MODELS:
            entry = entry | {"modalities": available}
        wanted = entry.get("modalities", "av")
        (kept if set(wanted) <= set(available) else skipped).append(entry)
    if skipped:
        names = ", ".join(_describe(e) for e in skipped)
        print(f"skipped {len(skipped)} of {len(grid)} runs that need {NAMES['av']} ({names}): "
              f"this data has {NAMES[available]} only")
    return kept


def _describe(entry: dict) -> str:
    """A grid entry in a few words: its model, modalities and the settings it changes."""
    rest = [f"{k}={v}" for k, v in entry.items() if k not in ("model", "modalities")]
    return " ".join([entry.get("model", "mater"), entry.get("modalities", "av")] + rest)
