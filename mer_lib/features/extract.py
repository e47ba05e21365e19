"""`mer extract`: per-window embeddings of every usable clip, into the embedding store.

Per clip and modality: decode the media, embed each of the T windows (audio: the extractor sees
the window's samples; video: faces are tracked and aligned, every frame is embedded, and the frames
of a window are mean-pooled and l2-normalised, MATER section 3.1), and keep the window mask.

Work is parallel over clips (a process pool, one torch thread per worker) and resumable: each
finished clip is written at once to ``embeddings/.partial/<store>/<id>.npz`` (or a ``.fail.json``
with the reason), so an interrupted run picks up where it stopped and a rerun does not redo finished
clips. When every clip is done the store and its provenance are assembled atomically; failed clips
are listed in the provenance, never zero-filled.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

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
    window: float
    count: int
    frame_step: int = 1
    chip_size: int = 96
    openface_dir: str | None = None

    @property
    def name(self) -> str:
        return store.store_name(self.modality, self.extractor, self.window, self.count)


_EXTRACTORS: dict = {}  # per worker process: built once, reused for every clip


def _extractor(config: ExtractConfig):
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


def embed_audio(clip: dict, config: ExtractConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(T, d) window embeddings, mask and per-clip notes for the clip's audio."""
    extractor = _extractor(config)
    signal, _ = media.read_audio(clip["audio_path"], sample_rate=extractor.sample_rate)
    X, mask = extractor.embed(signal, config.window, config.count)
    return X, mask, {"duration": len(signal) / extractor.sample_rate}


def embed_video(clip: dict, config: ExtractConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(T, d) window embeddings, mask and notes for the clip's faces (or its OpenFace CSV)."""
    extractor = _extractor(config)
    end = config.window * config.count
    if config.extractor == "openface":
        from mer_lib.features.visual import openface_csv_for, read_openface

        times, features, _ = read_openface(openface_csv_for(clip["id"], config.openface_dir))
        return (*pool_windows(features, win.assign_frames(times, config.window, config.count), config.count),
                {"frames": len(times)})
    frames, times = media.read_video(clip["video_path"], step=config.frame_step, end=end)
    from mer_lib.features.faces import FaceTracker

    track = FaceTracker(chip_size=config.chip_size).track(frames)
    if not track.found.any():
        raise MerError("no face found in any frame")
    inputs = track.chips if extractor.needs == "chips" else track.landmarks
    features = extractor.embed_frames(inputs[track.found])
    index = win.assign_frames(times[track.found], config.window, config.count)
    X, mask = pool_windows(features, index, config.count)
    return X, mask, {"frames": len(frames), "faces_found": int(track.found.sum())}


def _work(clip: dict, config: ExtractConfig, partial: Path) -> tuple[str, str | None]:
    """Embed one clip and write its partial result; returns (id, failure reason or None)."""
    import torch

    torch.set_num_threads(1)
    embed = embed_audio if config.modality == "audio" else embed_video
    try:
        X, mask, notes = embed(clip, config)
        with artifacts.atomic_path(partial / f"{clip['id']}.npz") as tmp:
            np.savez(tmp, X=X.astype(np.float32), mask=mask, notes=json.dumps(notes))
        return clip["id"], None
    except Exception as err:  # one bad clip is recorded, never the end of a long run
        reason = str(err) if isinstance(err, MerError) else f"{type(err).__name__}: {err}"
        artifacts.write_json(partial / f"{clip['id']}.fail.json", {"reason": reason})
        return clip["id"], reason


def _clips_for(manifest: pd.DataFrame, config: ExtractConfig) -> list[dict]:
    column = "has_audio" if config.modality == "audio" else "has_video"
    usable = manifest[manifest["status"] == "ok"]
    if config.extractor != "openface":
        usable = usable[usable[column].astype(bool)]
    return usable.to_dict("records")


def extract_store(data_dir: str | Path, config: ExtractConfig, workers: int | None = None) -> Path | None:
    """Build (or reuse) one store for the usable clips of `data_dir`'s manifest; returns its path."""
    data_dir = Path(data_dir)
    clips = _clips_for(mf.load_manifest(data_dir), config)
    if not clips:
        print(f"{config.name}: no clip has {config.modality}; skipped")
        return None
    final = data_dir / "embeddings" / f"{config.name}.npz"
    digest = artifacts.config_hash({**asdict(config), "ids": [c["id"] for c in clips]})
    meta_path = final.with_suffix(".json")
    if final.is_file() and meta_path.is_file() and artifacts.read_json(meta_path).get("inputs_hash") == digest:
        print(f"{final} is up to date")
        return final
    partial = data_dir / "embeddings" / ".partial" / f"{config.name}-{digest}"
    partial.mkdir(parents=True, exist_ok=True)
    todo = [c for c in clips if not (partial / f"{c['id']}.npz").exists()
            and not (partial / f"{c['id']}.fail.json").exists()]
    print(f"{config.name}: {len(clips) - len(todo)} of {len(clips)} clips already done")
    _run(todo, config, partial, workers)
    return _assemble(data_dir, config, clips, partial, digest)


def _run(todo: list[dict], config: ExtractConfig, partial: Path, workers: int | None) -> None:
    """Embed `todo` clips in parallel with a progress bar (clips/s)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(todo), desc=config.name, unit="clip", disable=None)
    if workers == 1:
        for clip in todo:
            _work(clip, config, partial)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(_work, clip, config, partial) for clip in todo]
            for future in as_completed(futures):
                future.result()
                bar.update()
    bar.close()


def _assemble(data_dir: Path, config: ExtractConfig, clips: list[dict], partial: Path, digest: str) -> Path:
    """Gather the partial results into the store and its provenance."""
    ids, rows, masks, failures, windows_masked, cut = [], [], [], {}, 0, 0
    for clip in clips:
        done = partial / f"{clip['id']}.npz"
        if not done.exists():
            failures[clip["id"]] = artifacts.read_json(partial / f"{clip['id']}.fail.json")["reason"]
            continue
        with np.load(done) as npz:
            ids.append(clip["id"]), rows.append(npz["X"]), masks.append(npz["mask"])
        windows_masked += int((~masks[-1]).any())
        cut += int(win.plan(float(clip["duration"]), config.window, config.count).cut_seconds > 0)
    if not ids:
        raise MerError(f"{config.name}: every clip failed, e.g. {next(iter(failures.items()))}")
    extractor = _extractor(config)
    meta = {**asdict(config), "inputs_hash": digest, "n_clips": len(ids), "dim": int(rows[0].shape[1]),
            "weights_sha256": getattr(extractor, "weights_sha256", None), "failures": failures,
            "clips_with_masked_windows": windows_masked, "clips_cut": cut, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = store.save_store(data_dir, config.name, store.EmbeddingStore(ids, np.stack(rows), np.stack(masks), meta))
    print(f"wrote {path}: {len(ids)} clips x {config.count} windows x {meta['dim']}; "
          f"{len(failures)} failed, {windows_masked} shorter than T*w (masked windows), "
          f"{cut} longer (cut at {config.window * config.count:g} s)")
    for clip_id, reason in list(failures.items())[:5]:
        print(f"  failed {clip_id}: {reason}")
    return path


def extract(data_dir: str | Path, audio: str | None = "egemaps", video: str | None = "fer_minixception",
            window: float = 0.5, count: int = 6, workers: int | None = None, frame_step: int = 1,
            openface_dir: str | Path | None = None) -> dict[str, Path | None]:
    """Build the audio and/or video store of a prepared data folder (None skips a modality)."""
    win.check(window, count)
    if audio is None and video is None:
        raise MerError("nothing to extract: give --audio NAME and/or --video NAME")
    if video == "openface" and openface_dir is None:
        raise MerError("the openface extractor needs --openface-dir (RAVDESS facial landmark tracking CSVs)")
    plans = [("audio", audio), ("video", video)]
    return {modality: extract_store(data_dir, ExtractConfig(
                modality, name, window, count, frame_step,
                openface_dir=str(openface_dir) if openface_dir else None), workers)
            for modality, name in plans if name is not None}
