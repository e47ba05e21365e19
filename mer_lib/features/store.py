"""The embedding store: one npz per (modality, extractor, window config), plus JSON provenance.

File names follow DESIGN.md: ``embeddings/<modality>-<extractor>-w<seconds>xT<count>.npz`` holding
``ids`` (clip ids, manifest order), ``X`` (clips x T x d, float32) and ``mask`` (clips x T, bool,
True where the window holds a real embedding). The ``.json`` beside it records the provenance
(extractor, weights checksum, config, window layout and starts, library version, failures). Both are
written atomically.

The window layout (mer_lib.data.windows) is part of the name unless it is the paper's ``fixed`` one:
``audio-egemaps-w0.5xT8`` (fixed), ``audio-egemaps-w0.5xT8-voiced``, ``audio-egemaps-w0.5xT8-spread``,
and ``audio-egemaps-clip`` (one window, the whole clip). Finding a store filters by layout, ``fixed``
unless asked otherwise, so callers that predate layouts keep getting the paper's stores.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_lib import __version__, artifacts
from mer_lib.data import windows as win
from mer_lib.errors import MerError

MODALITIES = ("audio", "video")
_NAME = re.compile(rf"^(audio|video)-(.+?)-(?:w([0-9.]+)xT(\d+)(?:-({win.VOICED}|{win.SPREAD}))?|({win.CLIP}))$")


def store_name(modality: str, extractor: str, window: float | None, count: int | None,
               layout: str = win.FIXED) -> str:
    """``audio-egemaps-w0.5xT8`` (``-voiced``, ``-spread``; ``audio-egemaps-clip``): a store's npz and json stem."""
    if modality not in MODALITIES:
        raise MerError(f"unknown modality {modality!r} (audio or video)")
    win.check(window, count, layout)
    if layout == win.CLIP:
        return f"{modality}-{extractor}-{layout}"
    return f"{modality}-{extractor}-w{window:g}xT{count}" + ("" if layout == win.FIXED else f"-{layout}")


@dataclass
class EmbeddingStore:
    """Per-window embeddings of a set of clips, with the mask of present windows."""

    ids: list[str]
    X: np.ndarray
    mask: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n, t = self.mask.shape
        if self.X.shape[:2] != (n, t) or len(self.ids) != n:
            raise MerError(f"inconsistent store: {len(self.ids)} ids, X {self.X.shape}, mask {self.mask.shape}")
        if not np.isfinite(self.X).all():
            raise MerError("embedding store contains NaN or infinite values")

    @property
    def dim(self) -> int:
        return int(self.X.shape[2])

    def select(self, ids: list[str]) -> EmbeddingStore:
        """The rows of `ids`, in that order; MerError naming a missing id."""
        index = {clip: i for i, clip in enumerate(self.ids)}
        missing = [clip for clip in ids if clip not in index]
        if missing:
            raise MerError(f"{len(missing)} clips have no embeddings in this store (e.g. {missing[0]})")
        rows = [index[clip] for clip in ids]
        return EmbeddingStore(list(ids), self.X[rows], self.mask[rows], self.meta)


PER_CLIP = ("window_starts", "failures")  # provenance entries with one item per clip


def settings(meta: dict) -> dict:
    """A store's provenance without its per-clip entries: what a run folder records of the stores it was
    trained on (extractor, its settings and weights checksum, window layout, dimension)."""
    return {k: v for k, v in meta.items() if k not in PER_CLIP}


def save_store(data_dir: str | Path, name: str, store: EmbeddingStore) -> Path:
    """Write ``embeddings/<name>.npz`` and ``.json`` atomically; returns the npz path."""
    folder = Path(data_dir) / "embeddings"
    path = folder / f"{name}.npz"
    with artifacts.atomic_path(path) as tmp:
        np.savez(tmp, ids=np.array(store.ids, dtype=str), X=store.X.astype(np.float32),
                 mask=store.mask.astype(bool))
    artifacts.write_json(folder / f"{name}.json", {"mer_lib_version": __version__, **store.meta})
    return path


def parse_store_name(name: str) -> dict | None:
    """``audio-egemaps-w0.5xT8-voiced`` -> {name, modality, extractor, window, count, layout}; None for others.

    The clip layout has window None and count 1.
    """
    match = _NAME.match(name)
    if not match:
        return None
    if match[6]:
        window, count, layout = None, 1, win.CLIP
    else:
        window, count, layout = float(match[3]), int(match[4]), match[5] or win.FIXED
    return {"name": name, "modality": match[1], "extractor": match[2], "window": window, "count": count,
            "layout": layout}


def list_stores(data_dir: str | Path, modality: str | None = None) -> list[dict]:
    """The stores present under `data_dir`: dicts of name, modality, extractor, window, count, layout, path."""
    found = []
    for path in sorted((Path(data_dir) / "embeddings").glob("*.npz")):
        info = parse_store_name(path.stem)
        if info and modality in (None, info["modality"]):
            found.append(info | {"path": path})
    return found


def find_store(data_dir: str | Path, modality: str, extractor: str | None = None,
               window: float | None = None, count: int | None = None, layout: str = win.FIXED) -> dict:
    """The one store matching the given choices; MerError listing the candidates when none or several.

    None matches any extractor, window or count; the clip layout ignores window and count.
    """
    win.check_layout(layout)
    if window is not None:
        win.check_window(window)
    if count is not None:
        win.check_count(count)
    window, count = win.settings(window, count, layout)
    stores = list_stores(data_dir, modality)
    matches = [s for s in stores if extractor in (None, s["extractor"]) and window in (None, s["window"])
               and count in (None, s["count"]) and s["layout"] == layout]
    if len(matches) == 1:
        return matches[0]
    have = ", ".join(s["name"] for s in stores) or "none"
    if not matches:
        raise MerError(f"no {modality} embeddings with the {layout} window layout match under "
                       f"{data_dir}/embeddings (present: {have}); "
                       f"run `mer extract` first")
    raise MerError(f"several {modality} embedding stores match ({have}): choose with --{modality} NAME "
                   f"and --window/--windows")


def load_store(data_dir: str | Path, modality: str, extractor: str | None = None,
               window: float | None = None, count: int | None = None, layout: str = win.FIXED) -> EmbeddingStore:
    """Load the matching store (see find_store) with its provenance."""
    info = find_store(data_dir, modality, extractor, window, count, layout)
    with np.load(info["path"]) as npz:
        ids, X, mask = npz["ids"].tolist(), npz["X"], npz["mask"]
    meta_path = info["path"].with_suffix(".json")
    meta = artifacts.read_json(meta_path) if meta_path.is_file() else {}
    return EmbeddingStore(ids, X, mask, meta | {"name": info["name"]})
