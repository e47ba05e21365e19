"""`mer extract`: per-window embeddings of every usable clip, into the embedding store.

Per clip and modality: place the T windows as the config's layout says (mer_lib.data.windows: the
paper's ``fixed`` windows from 0 s, or ``voiced``, ``spread``, ``clip``), embed each window (audio:
the extractor sees the window's samples; video: faces are tracked and aligned, every frame is
embedded, and the frames that lie in a window, by time, are mean-pooled and l2-normalised, MATER
section 3.1), and keep the window mask. Video windows of the voiced layout follow the speech of the
clip's audio track. The provenance records the layout and, per clip, the window starts.

Work is parallel over clips (a process pool, one torch thread per worker) and resumable: each
finished clip is written at once to ``embeddings/.partial/<store>-<hash>/<id>.npz`` (or a
``.fail.json`` with the reason), so an interrupted run picks up where it stopped and a rerun does not
redo finished clips. When every clip is done the store and its provenance are assembled atomically;
failed clips are listed in the provenance, never zero-filled. That loop, `build_store`, takes the
per-clip embed function and the provenance extras as parameters: the frozen-backbone cache
(mer_lib.features.backbone) builds its stores with it too.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mer_lib import artifacts, media
from mer_lib.data import manifest as mf
from mer_lib.data import windows as win
from mer_lib.errors import MerError
from mer_lib.features import store
from mer_lib.features.pooling import pool_windows


@dataclass(frozen=True)
class ExtractConfig:
    """What one store is made of; its hash guards the partial results of an interrupted run."""

    modality: str
    extractor: str
    window: float | None  # None for the clip layout
    count: int
    frame_step: int = 1
    chip_size: int = 96
    openface_dir: str | None = None
    layout: str = win.FIXED  # window layout; the clip layout has window None and count 1

    @property
    def name(self) -> str:
        return store.store_name(self.modality, self.extractor, self.window, self.count, self.layout)


_EXTRACTORS: dict = {}  # per process: built once, reused for every clip


def get_extractor(config: ExtractConfig):
    """The extractor of a store's config (mer_lib.features.audio or .visual), built once per process."""
    key = (config.modality, config.extractor)
    if key not in _EXTRACTORS:
        if config.modality == "audio":
            from mer_lib.features.audio import AUDIO_EXTRACTORS as table
        else:
            from mer_lib.features.visual import VISUAL_EXTRACTORS as table
        if config.extractor not in table:
            raise MerError(f"unknown {config.modality} extractor {config.extractor!r} "
                           f"(choose from {', '.join(table)})")
        _EXTRACTORS[key] = table[config.extractor]()
    return _EXTRACTORS[key]


def _plan_notes(plan: win.WindowPlan) -> dict:
    """A clip's window plan as JSON notes (milliseconds): starts, ends and the clip time outside every window."""
    return {"starts": np.round(plan.starts, 3).tolist(), "ends": np.round(plan.ends, 3).tolist(),
            "cut_seconds": round(plan.cut_seconds, 3)}


def embed_audio(clip: dict, config: ExtractConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(T, d) window embeddings, mask and per-clip notes (duration, window plan) for the clip's audio."""
    extractor = get_extractor(config)
    signal, _ = media.read_audio(clip["audio_path"], sample_rate=extractor.sample_rate)
    X, mask, plan = extractor.embed_planned(signal, config.window, config.count, config.layout)
    return X, mask, {"duration": len(signal) / extractor.sample_rate, **_plan_notes(plan)}


def audio_track_span(clip: dict) -> tuple[float, float]:
    """The voiced span of the clip's audio track, which places the video windows of the voiced layout."""
    path = clip.get("audio_path")
    if not clip.get("has_audio", True) or not isinstance(path, str) or not path:
        raise MerError(f"the voiced layout places video windows over the speech, but clip {clip.get('id')} "
                       f"has no audio track (use another --layout)")
    return win.voiced_span(*media.read_audio(path))


def video_plan(clip: dict, config: ExtractConfig) -> win.WindowPlan:
    """The clip's window plan for its video: the duration from the manifest (else the file), the span from its audio."""
    duration = float(clip["duration"]) if "duration" in clip else media.probe(clip["video_path"]).duration
    span = audio_track_span(clip) if config.layout == win.VOICED else None
    return win.plan(duration, config.window, config.count, config.layout, span)


def embed_video(clip: dict, config: ExtractConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(T, d) window embeddings, mask and notes for the clip's faces (or its OpenFace CSV).

    Frames go to the windows that contain their time stamps; a window is present when it has a frame.
    """
    extractor = get_extractor(config)
    plan = video_plan(clip, config)
    if config.extractor == "openface":
        from mer_lib.features.visual import openface_csv_for, read_openface

        times, features, _ = read_openface(openface_csv_for(clip["id"], config.openface_dir))
        return (*pool_windows(features, win.frame_windows(times, plan)), {"frames": len(times), **_plan_notes(plan)})
    frames, times = media.read_video(clip["video_path"], step=config.frame_step, end=float(plan.ends.max()))
    from mer_lib.features.faces import FaceTracker

    track = FaceTracker(chip_size=config.chip_size).track(frames)
    if not track.found.any():
        raise MerError("no face found in any frame")
    inputs = track.chips if extractor.needs == "chips" else track.landmarks
    features = extractor.embed_frames(inputs[track.found])
    X, mask = pool_windows(features, win.frame_windows(times[track.found], plan))
    return X, mask, {"frames": len(frames), "faces_found": int(track.found.sum()), **_plan_notes(plan)}


def _provenance(config: ExtractConfig, clips: list[dict], mask: np.ndarray) -> tuple[dict, str]:
    """A window-embedding store's extra provenance (weights checksum, window starts, clips masked or cut), a summary.

    The window starts and cut come from each clip's notes (partial results from before window
    layouts have none: such clips are left out of ``window_starts``).
    """
    masked = int((~mask).any(1).sum())
    cut = sum(clip["notes"].get("cut_seconds", 0) > 0 for clip in clips)
    extras = {"weights_sha256": getattr(get_extractor(config), "weights_sha256", None),
              "clips_with_masked_windows": masked, "clips_cut": cut,
              "window_starts": {clip["id"]: clip["notes"]["starts"] for clip in clips if "starts" in clip["notes"]}}
    return extras, f"{masked} with masked windows, {cut} with clip time outside every window ({config.layout} layout)"


def extract_store(data_dir: str | Path, config: ExtractConfig, workers: int | None = None) -> Path | None:
    """Build (or reuse) one store for the usable clips of `data_dir`'s manifest; returns its path."""
    embed = embed_audio if config.modality == "audio" else embed_video
    return build_store(data_dir, config, embed, _provenance, workers)


# ----------------------------------------------------------------------------- resumable per-clip work

# embed(clip, config) -> the clip's (T, d) rows, (T,) mask of present rows and notes (kept with its partial)
Embed = Callable[[dict, Any], tuple[np.ndarray, np.ndarray, dict]]
# provenance(config, clips kept (manifest rows with their embed notes under "notes"), their (clips, T) mask)
#   -> extra provenance keys and a note for the summary
Provenance = Callable[[Any, list[dict], np.ndarray], tuple[dict, str]]


def _clips_for(manifest: pd.DataFrame, config: Any) -> list[dict]:
    """The manifest rows (as dicts) of the usable clips that have `config.modality` (OpenFace: all usable)."""
    column = "has_audio" if config.modality == "audio" else "has_video"
    usable = manifest[manifest["status"] == "ok"]
    if config.extractor != "openface":
        usable = usable[usable[column].astype(bool)]
    return usable.to_dict("records")


def build_store(data_dir: str | Path, config: Any, embed: Embed, provenance: Provenance,
                workers: int | None = None, setup: Callable[[Any], object] | None = None) -> Path | None:
    """Build (or reuse) store `config.name` of the usable clips of `data_dir`, `embed(clip, config)` per clip.

    `config` is a frozen dataclass with ``modality``, ``extractor``, ``count`` and ``name``: its fields
    and the clip ids make the hash that keeps a store up to date and names the partial results.
    `setup(config)`, when given, runs once before any clip is embedded, so a broken setup (weights that
    do not fit) is one error, not one failure per clip. Returns the store's path (None: no usable clip).
    """
    data_dir = Path(data_dir)
    clips = _clips_for(mf.load_manifest(data_dir), config)
    if not clips:
        print(f"{config.name}: no clip has {config.modality}; skipped")
        return None
    final = data_dir / "embeddings" / f"{config.name}.npz"
    digest = _inputs_hash(config, clips)
    meta_path = final.with_suffix(".json")
    if final.is_file() and meta_path.is_file() and artifacts.read_json(meta_path).get("inputs_hash") == digest:
        print(f"{final} is up to date")
        return final
    if setup is not None:
        setup(config)
    partial = data_dir / "embeddings" / ".partial" / f"{config.name}-{digest}"
    partial.mkdir(parents=True, exist_ok=True)
    todo = [c for c in clips if not (partial / f"{c['id']}.npz").exists()
            and not (partial / f"{c['id']}.fail.json").exists()]
    print(f"{config.name}: {len(clips) - len(todo)} of {len(clips)} clips already done")
    _run(todo, embed, config, partial, workers)
    return _assemble(data_dir, config, clips, partial, digest, provenance)


def _inputs_hash(config: Any, clips: list[dict]) -> str:
    """Hash of a store's config and clip ids. The window layout counts only when it is not the paper's
    fixed one, so stores and partial results from before layouts existed keep their hash."""
    fields = {k: v for k, v in asdict(config).items() if (k, v) != ("layout", win.FIXED)}
    return artifacts.config_hash({**fields, "ids": [c["id"] for c in clips]})


def _work(clip: dict, embed: Embed, config: Any, partial: Path) -> None:
    """Embed one clip and write its partial result, or a ``.fail.json`` with the reason."""
    try:
        X, mask, notes = embed(clip, config)
        with artifacts.atomic_path(partial / f"{clip['id']}.npz") as tmp:
            np.savez(tmp, X=X.astype(np.float32), mask=mask, notes=json.dumps(notes))
    except Exception as err:  # one bad clip is recorded, never the end of a long run
        reason = str(err) if isinstance(err, MerError) else f"{type(err).__name__}: {err}"
        artifacts.write_json(partial / f"{clip['id']}.fail.json", {"reason": reason})


def _one_thread() -> None:
    """Pool initializer: one torch thread per worker process (the workers share the cores)."""
    import torch

    torch.set_num_threads(1)


def _run(todo: list[dict], embed: Embed, config: Any, partial: Path, workers: int | None) -> None:
    """Embed `todo` clips, in a process pool when `workers` > 1, with a progress bar (clips/s)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with tqdm(total=len(todo), desc=config.name, unit="clip", disable=None) as bar:
        if workers == 1:
            for clip in todo:
                _work(clip, embed, config, partial)
                bar.update()
            return
        with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
            for future in as_completed([pool.submit(_work, clip, embed, config, partial) for clip in todo]):
                future.result()
                bar.update()


def _assemble(data_dir: Path, config: Any, clips: list[dict], partial: Path, digest: str,
              provenance: Provenance) -> Path:
    """Gather the partial results into the store and its provenance; failed clips are listed, not stored."""
    kept, rows, masks, failures = [], [], [], {}
    for clip in clips:
        done = partial / f"{clip['id']}.npz"
        if not done.exists():
            failures[clip["id"]] = artifacts.read_json(partial / f"{clip['id']}.fail.json")["reason"]
            continue
        with np.load(done) as npz:
            rows.append(npz["X"]), masks.append(npz["mask"])
            kept.append(clip | {"notes": json.loads(str(npz["notes"]))})
    if not kept:
        raise MerError(f"{config.name}: every clip failed, e.g. {next(iter(failures.items()))}")
    X, mask = np.stack(rows), np.stack(masks)
    extras, note = provenance(config, kept, mask)
    meta = {**asdict(config), **extras, "inputs_hash": digest, "n_clips": len(kept), "dim": int(X.shape[2]),
            "failures": failures, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = store.save_store(data_dir, config.name, store.EmbeddingStore([c["id"] for c in kept], X, mask, meta))
    print(f"wrote {path}: {len(kept)} clips x {X.shape[1]} windows x {meta['dim']}; "
          f"{len(failures)} failed, {note}")
    for clip_id, reason in list(failures.items())[:5]:
        print(f"  failed {clip_id}: {reason}")
    return path


def extract(data_dir: str | Path, audio: str | None = "egemaps", video: str | None = "fer_minixception",
            window: float = 0.5, count: int = 6, workers: int | None = None, frame_step: int = 1,
            openface_dir: str | Path | None = None, layout: str = win.FIXED) -> dict[str, Path | None]:
    """Build the audio and/or video store of a prepared data folder (None or "none" skips a modality).

    `layout` places the windows (mer_lib.data.windows); the clip layout ignores `window` and `count`.
    """
    audio, video = (None if name == "none" else name for name in (audio, video))
    win.check(window, count, layout)
    window, count = win.settings(window, count, layout)
    if audio is None and video is None:
        raise MerError("nothing to extract: give --audio NAME and/or --video NAME")
    if video == "openface" and openface_dir is None:
        raise MerError("the openface extractor needs --openface-dir (RAVDESS facial landmark tracking CSVs)")
    plans = [("audio", audio), ("video", video)]
    # frame_step concerns video frames only: an audio store is the same (and reused) whatever it is
    return {modality: extract_store(data_dir, ExtractConfig(
                modality, name, window, count, frame_step if modality == "video" else 1,
                openface_dir=str(openface_dir) if openface_dir else None, layout=layout), workers)
            for modality, name in plans if name is not None}
