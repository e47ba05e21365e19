"""The clips a run trains and tests on: the manifest's usable clips that have windows in the chosen
embedding stores (`load_corpus`), as a table, tensors (mer_lib.data.clips.ClipData) and class names.

Training (mer_lib.train), loading a finished run and the notebooks' analyses load clips this way, so
a run's clips and their order are the same wherever they are loaded (on a Dask worker too).
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mer_lib.data import manifest as mf
from mer_lib.data.clips import ClipData
from mer_lib.data.modalities import MODALITY_NAMES, check_modalities
from mer_lib.errors import MerError
from mer_lib.features import store as store_mod


@dataclass
class Corpus:
    """The clips a run trains and tests on: their table, tensors, class names and stores."""

    clips: pd.DataFrame  # id, actor, emotion, label; row i is clip i of `data`
    data: ClipData
    classes: tuple[str, ...]
    stores: dict[str, str]  # "audio"/"video" -> store name
    dataset: str  # the manifest's dataset: ravdess, cremad or synthetic
    metas: dict[str, dict]  # "audio"/"video" -> the store's provenance
    without_windows: list[str] = field(default_factory=list)  # ids left out: no present window in any store

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of what a run learns from and is tested on: the clips, their labels, every window
        embedding and mask. Fold results and checkpoints record it, so a store whose content changed (not
        one rebuilt with the same content) is trained on again instead of reused."""
        digest = hashlib.sha256("\n".join(self.clips["id"]).encode())
        for tensor in (self.data.labels, *self.data.inputs().values()):
            digest.update(b"-" if tensor is None else tensor.cpu().numpy().tobytes())
        return digest.hexdigest()[:16]


def load_corpus(data_dir: str | Path, modalities: str, audio: str | None = None, video: str | None = None,
                window: float | None = None, windows: int | None = None, layout: str = "fixed") -> Corpus:
    """The usable clips of the manifest that have embeddings in every chosen store (window `layout`:
    mer_lib.data.windows), in manifest order.

    Clips with no present window in any chosen store (shorter than half a window; no face or voice in
    any window) have nothing to learn from or to predict: they are left out, counted and listed."""
    manifest = mf.load_manifest(data_dir, usable_only=True)
    if manifest.empty:
        raise MerError(f"{data_dir}/manifest.csv lists no usable clips")
    classes = mf.classes(str(manifest["dataset"].iloc[0]))
    chosen = {m: store_mod.load_store(data_dir, MODALITY_NAMES[m], {"a": audio, "v": video}[m], window, windows,
                                      layout) for m in check_modalities(modalities)}
    have = set(manifest["id"]).intersection(*(s.ids for s in chosen.values()))
    seen = set().union(*(np.asarray(s.ids)[s.mask.any(1)].tolist() for s in chosen.values()))
    empty = manifest.loc[manifest["id"].isin(have - seen), "id"].tolist()
    if empty:
        print(f"left out {len(empty)} clips with no present window (e.g. {empty[0]}): not trained on, not scored")
    clips = manifest[manifest["id"].isin(have & seen)].reset_index(drop=True)
    if clips.empty:
        raise MerError("no usable clip of the manifest has embeddings in the chosen stores "
                       f"({', '.join(s.meta['name'] for s in chosen.values())})")
    ids = clips["id"].tolist()
    arrays = {}
    for m, s in chosen.items():
        picked = s.select(ids)
        arrays[MODALITY_NAMES[m]], arrays[f"{MODALITY_NAMES[m]}_mask"] = picked.X, picked.mask
    data = ClipData.from_numpy(clips["label"].to_numpy(), len(classes), **arrays)
    return Corpus(clips[["id", "actor", "emotion", "label"]], data, tuple(classes),
                  {MODALITY_NAMES[m]: s.meta["name"] for m, s in chosen.items()}, str(manifest["dataset"].iloc[0]),
                  {MODALITY_NAMES[m]: s.meta for m, s in chosen.items()}, empty)
