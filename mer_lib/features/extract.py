"""`mer extract`: per-window embeddings of every usable clip, into the embedding store.

Per clip and modality: place the T windows as the config's layout says (mer_lib.data.windows: the
paper's ``fixed`` windows from 0 s, or ``voiced``, ``spread``, ``clip``), embed each window (audio:
the extractor sees the window's samples; video: faces are tracked and aligned, every frame is
embedded, and the frames that lie in a window, by time, are mean-pooled and l2-normalised, MATER
section 3.1), and keep the window mask. Extractors that see grey only (the FER2013 networks, landmarks)
get faces tracked in the frames' luma, decoded without colour conversion (`ExtractConfig.luma`, recorded
in the store; 1.5 ms less per 720p frame and a third of the memory; window embeddings within a cosine
of 0.998 of RGB frames' on CREMA-D). Video windows of the voiced layout follow the speech of the
clip's audio track. The provenance records the layout and, per clip, the window starts.

Work is parallel over clips (a process pool, one torch and one decoding thread per worker, stopped with the command:
mer_lib.parallel; or one Dask task per clip on a cluster: mer_lib.distributed) and cached per clip. The
extractor is built once before any clip (an unknown name, missing weights or weights that are not a
valid file are one error, never a failure per clip), and each finished clip is written at once to
``embeddings/.partial/<store>-<settings>/<id>-<media>.npz`` (or ``.fail.json`` with the reason).
``<settings>`` hashes the extractor config with its weights' sha256 and ``<media>`` the size and
modification time of the clip's media files, so a result is reused exactly while what decides it is
unchanged: a rerun computes only new clips and clips whose media changed, retries the clips that failed
(unless told to keep those failures), and deletes the results of other settings of the same store and
of clips that changed or left the manifest. When every clip is done the store and its provenance are
assembled atomically; failed clips are listed in the provenance, never zero-filled. Deleting
``embeddings/.partial`` only frees space: the next change then recomputes every clip. That loop,
`build_store`, takes the per-clip embed function and the provenance extras as parameters: the
frozen-backbone cache (mer_lib.features.backbone) builds its stores with it too.

On Dask the workers write the per-clip results into the same folder (a shared filesystem), so the
store is the one a single process builds, and a worker that dies mid-clip costs that clip only: Dask
gives it to another worker. Each worker builds its extractor on its first clip and checks that its
weights are those the store's settings name.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mer_lib import artifacts, distributed, media, parallel
from mer_lib.data import manifest as mf
from mer_lib.data import windows as win
from mer_lib.errors import EmptyInput, MerError, check_number
from mer_lib.features import store
from mer_lib.features.pooling import pool_windows


@dataclass(frozen=True)
class ExtractConfig:
    """What one store is made of: everything that decides a clip's embeddings, checked when made.

    Its hash, with the weights' checksum, names the per-clip cache (see the module docstring).
    """

    modality: str
    extractor: str
    window: float | None  # None for the clip layout
    count: int
    frame_step: int = 1
    chip_size: int = 96
    openface_dir: str | None = None
    layout: str = win.FIXED  # window layout; the clip layout has window None and count 1
    weights_sha256: str | None = None  # the extractor's weights (set by `with_extractor`; None: it has none)
    # video: faces tracked in the frames' luma, not RGB (`extract` sets it for the extractors that see grey only)
    luma: bool = field(default=False, metadata={"added_later": True})

    def __post_init__(self):
        _extractor_class(self.modality, self.extractor)
        win.check(self.window, self.count, self.layout)
        check_number("frame_step", self.frame_step, integer=True, low=1)
        if self.luma and self.modality != "video":
            raise MerError("luma frames concern video stores only")

    @property
    def name(self) -> str:
        return store.store_name(self.modality, self.extractor, self.window, self.count, self.layout)

    @property
    def colour(self) -> str:
        """The frames the store reads (media.COLOURS): "luma" where its faces are tracked in luma, else "rgb"."""
        return "luma" if self.luma else "rgb"


_EXTRACTORS: dict = {}  # per worker process: built once, reused for every clip


def _extractor_class(modality: str, name: str) -> type:
    """The class of extractor `name` of `modality`; MerError listing the choices for an unknown one."""
    if modality == "audio":
        from mer_lib.features.audio import AUDIO_EXTRACTORS as table
    elif modality == "video":
        from mer_lib.features.visual import VISUAL_EXTRACTORS as table
    else:
        raise MerError(f"unknown modality {modality!r} (audio or video)")
    if name not in table:
        raise MerError(f"unknown {modality} extractor {name!r} (choose from {', '.join(table)})")
    return table[name]


def get_extractor(config: ExtractConfig):
    """The config's extractor, with its weights loaded: the one `with_extractor` built, else built on first use.

    Where the config names its weights' checksum (set by `with_extractor`) and the extractor at hand has
    others (replaced since, or a Dask worker's own copy), it is built again; MerError if they still differ,
    since the clip's result would be filed under weights that did not make it.
    """
    key = (config.modality, config.extractor)
    if key not in _EXTRACTORS or config.weights_sha256 not in (None, _EXTRACTORS[key].weights_sha256):
        _EXTRACTORS[key] = _extractor_class(*key)()
    if config.weights_sha256 not in (None, _EXTRACTORS[key].weights_sha256):
        raise MerError(f"the {config.extractor} weights here are not those the run started with (sha256 "
                       f"{config.weights_sha256[:12]}...): workers must share $MER_CACHE or MER_WEIGHTS_<NAME>")
    return _EXTRACTORS[key]


def with_extractor(config: ExtractConfig) -> ExtractConfig:
    """Build the config's extractor now, before any clip, and return the config with its weights' sha256.

    Missing weights, weights that are not a valid file or do not fit, and (for faces) dlib's landmark
    model fail here, once, instead of once per clip. It is built afresh (weights may have been fetched
    or replaced since an earlier run in this process), and forked workers inherit it.
    """
    _EXTRACTORS.pop((config.modality, config.extractor), None)
    extractor = get_extractor(replace(config, weights_sha256=None))  # whichever weights are here; the caller compares
    if config.modality == "video" and extractor.needs != "openface_csv":
        from mer_lib.features.faces import FaceTracker

        FaceTracker(chip_size=config.chip_size)
    return replace(config, weights_sha256=extractor.weights_sha256)


def _plan_notes(plan: win.WindowPlan) -> dict:
    """A clip's window plan as JSON notes (milliseconds): starts, ends and the clip time outside every window."""
    return {"starts": np.round(plan.starts, 3).tolist(), "ends": np.round(plan.ends, 3).tolist(),
            "cut_seconds": round(plan.cut_seconds, 3)}


def embed_audio(clip: dict, config: ExtractConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """(T, d) window embeddings, mask and per-clip notes (duration, window plan) for the clip's audio."""
    extractor = get_extractor(config)
    media.probe(clip["audio_path"])  # a file cut short since `mer data prepare` fails here, as there
    signal, _ = media.read_audio(clip["audio_path"], sample_rate=extractor.sample_rate)
    if win.silent(signal):
        raise EmptyInput(f"the audio is silent (no sample above {win.SILENCE_DBFS:g} dBFS)")
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


def decode_threads() -> int:
    """FFmpeg threads to decode a clip's video with: one where torch computes on one thread, as in the workers
    of a process pool or of Dask, which share the cores one thread each: frame threads there only compete
    with the other workers (on the embedded corpus they cost 4-8 % more CPU per clip, and on shared cores
    the worker waited for its frames: 0.74 s a clip instead of 0.40 under a load of 3). Elsewhere FFmpeg's
    choice (0: about one per core)."""
    import torch

    return 1 if torch.get_num_threads() == 1 else 0


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
    media.probe(clip["video_path"])  # a file cut short since `mer data prepare` fails here, as there
    frames, times = media.read_video(clip["video_path"], step=config.frame_step, end=float(plan.ends.max()),
                                     threads=decode_threads(), colour=config.colour)
    from mer_lib.features.faces import FaceTracker

    track = FaceTracker(chip_size=config.chip_size).track(frames)
    if not track.found.any():
        raise EmptyInput("no face found in any frame")
    inputs = track.chips if extractor.needs == "chips" else track.landmarks
    features = extractor.embed_frames(inputs[track.found])
    X, mask = pool_windows(features, win.frame_windows(times[track.found], plan))
    return X, mask, {"frames": len(frames), "faces_found": int(track.found.sum()), **_plan_notes(plan)}


def _provenance(config: ExtractConfig, clips: list[dict], mask: np.ndarray) -> tuple[dict, str]:
    """A window-embedding store's extra provenance (window starts, clips masked, empty or cut), a summary.

    The window starts and cut come from each clip's notes. Clips with no present window (shorter than
    half a window) are stored as they are: training leaves them out and counts them.
    """
    masked, empty = int((~mask).any(1).sum()), int((~mask).all(1).sum())
    cut = sum(clip["notes"].get("cut_seconds", 0) > 0 for clip in clips)
    extras = {"clips_with_masked_windows": masked, "clips_without_windows": empty, "clips_cut": cut,
              "window_starts": {clip["id"]: clip["notes"]["starts"] for clip in clips if "starts" in clip["notes"]}}
    return extras, (f"{masked} with masked windows ({empty} with none present), {cut} with clip time outside "
                    f"every window ({config.layout} layout)")


def extract_store(data_dir: str | Path, config: ExtractConfig, workers: int | None = None,
                  retry_failed: bool = True, client=None) -> Path | None:
    """Build (or reuse) one store for the usable clips of `data_dir`'s manifest; returns its path.

    `config` comes from `with_extractor` (its extractor built, its weights' checksum set); with a Dask
    `client` the clips are its workers' tasks.
    """
    return build_store(data_dir, config, embedder(config.modality), _provenance, workers, retry_failed, client)


def embedder(modality: str) -> Embed:
    """The per-clip embedding of a modality's store: `embed_audio` for "audio", `embed_video` for "video"."""
    return embed_audio if modality == "audio" else embed_video


# ----------------------------------------------------------------------------- cached per-clip work

# embed(clip, config) -> the clip's (T, d) rows, (T,) mask of present rows and notes (kept with its partial)
Embed = Callable[[dict, Any], tuple[np.ndarray, np.ndarray, dict]]
# provenance(config, clips kept (manifest rows with their embed notes under "notes"), their (clips, T) mask)
#   -> extra provenance keys and a note for the summary
Provenance = Callable[[Any, list[dict], np.ndarray], tuple[dict, str]]
PARTIAL = ".partial"


def _clips_for(manifest: pd.DataFrame, config: Any) -> list[dict]:
    """The manifest rows (as dicts) of the usable clips that have `config.modality` (OpenFace: all usable)."""
    column = "has_audio" if config.modality == "audio" else "has_video"
    usable = manifest[manifest["status"] == "ok"]
    if config.extractor != "openface":
        usable = usable[usable[column].astype(bool)]
    return usable.to_dict("records")


def media_key(clip: dict, config: Any) -> str:
    """A short hash of the identity (size, modification time) of every file the clip's result is made from.

    Those are the manifest row's media files and, for the OpenFace extractor, the clip's CSV; a file
    replaced or touched gets a new key. Content hashes would read every video on every run.
    """
    files = [clip.get("audio_path"), clip.get("video_path")]
    if config.extractor == "openface":
        from mer_lib.features.visual import openface_csv_for

        with contextlib.suppress(MerError):  # no CSV: the clip fails when embedded, with the reason
            files.append(str(openface_csv_for(clip["id"], config.openface_dir)))
    identity = []
    for path in dict.fromkeys(f for f in files if isinstance(f, str) and f):
        try:
            stat = Path(path).stat()
            identity.append([stat.st_size, stat.st_mtime_ns])
        except OSError:
            identity.append(None)
    return artifacts.config_hash(identity)


def settings(config: Any) -> dict:
    """A store config's fields as its settings hash and provenance record them. Fields added later are left
    out while they keep their default, so the stores made before they existed keep their names and caches."""
    return {f.name: getattr(config, f.name) for f in fields(config)
            if not (f.metadata.get("added_later") and getattr(config, f.name) == f.default)}


def _partial_folder(data_dir: Path, config: Any) -> Path:
    """``embeddings/.partial/<store>-<settings hash>``, created; folders of other settings of this store are deleted."""
    root, key = data_dir / "embeddings" / PARTIAL, artifacts.config_hash(settings(config))
    pattern = re.compile(rf"{re.escape(config.name)}-[0-9a-f]{{{len(key)}}}")
    for stale in root.glob(f"{config.name}-*"):
        if pattern.fullmatch(stale.name) and stale.name != f"{config.name}-{key}":
            shutil.rmtree(stale)
    (folder := root / f"{config.name}-{key}").mkdir(parents=True, exist_ok=True)
    return folder


def _prune(partial: Path, stems: dict[str, Path]) -> None:
    """Delete what `partial` holds besides the current clips' results (clips changed or gone, temporary files)."""
    keep = {f"{stem.name}{suffix}" for stem in stems.values() for suffix in (".npz", ".fail.json")}
    for path in partial.iterdir():
        if path.name not in keep:
            path.unlink()


def build_store(data_dir: str | Path, config: Any, embed: Embed, provenance: Provenance,
                workers: int | None = None, retry_failed: bool = True, client=None) -> Path | None:
    """Build (or reuse) store `config.name` of the usable clips of `data_dir`, `embed(clip, config)` per clip.

    `config` is a frozen dataclass with ``modality``, ``extractor``, ``count`` and ``name`` holding
    everything that decides a clip's result (weights' checksum included); whatever it needs (models,
    weights) is built and checked before this is called. Each clip's result is cached under its media
    key (see the module docstring); clips that failed before are retried unless `retry_failed` is
    False. The clips are embedded by `workers` local processes, or by the workers of a Dask `client`.
    Returns the store's path (None: no usable clip).
    """
    data_dir = Path(data_dir)
    clips = _clips_for(mf.load_manifest(data_dir), config)
    if not clips:
        print(f"{config.name}: no clip has {config.modality}; skipped")
        return None
    keys = {clip["id"]: media_key(clip, config) for clip in clips}
    digest = artifacts.config_hash({"config": settings(config), "media": keys})
    final = data_dir / "embeddings" / f"{config.name}.npz"
    meta_path = final.with_suffix(".json")
    meta = artifacts.read_json(meta_path) if final.is_file() and meta_path.is_file() else {}
    if meta.get("inputs_hash") == digest and not (retry_failed and meta.get("failures")):
        print(f"{final} is up to date")
        return final
    partial = _partial_folder(data_dir, config)
    stems = {clip_id: partial / f"{clip_id}-{key}" for clip_id, key in keys.items()}
    _prune(partial, stems)
    failed = [c for c in clips if Path(f"{stems[c['id']]}.fail.json").exists()]
    todo = [c for c in clips if not Path(f"{stems[c['id']]}.npz").exists() and (retry_failed or c not in failed)]
    retried = f", retrying {len(failed)} that failed before" if retry_failed and failed else ""
    print(f"{config.name}: {len(clips) - len(todo)} of {len(clips)} clips already done{retried}")
    _run(todo, embed, config, stems, workers, client)
    return _assemble(data_dir, config, clips, stems, digest, provenance)


def _work(clip: dict, embed: Embed, config: Any, stem: Path) -> None:
    """Embed one clip and write its result to ``<stem>.npz``, or its failure to ``<stem>.fail.json``."""
    try:
        X, mask, notes = embed(clip, config)
        with artifacts.atomic_path(f"{stem}.npz") as tmp:
            np.savez(tmp, X=X.astype(np.float32), mask=mask, notes=json.dumps(notes))
        Path(f"{stem}.fail.json").unlink(missing_ok=True)
    except Exception as err:  # one bad clip is recorded, never the end of a long run
        reason = str(err) if isinstance(err, MerError) else f"{type(err).__name__}: {err}"
        artifacts.write_json(f"{stem}.fail.json", {"reason": reason})


def _one_thread() -> None:
    """Pool initializer: one torch thread per worker process (the workers share the cores)."""
    import torch

    torch.set_num_threads(1)


def _run(todo: list[dict], embed: Embed, config: Any, stems: dict[str, Path], workers: int | None,
         client=None) -> None:
    """Embed `todo` clips with a progress bar (clips/s): one Dask task each with a `client`, else in a
    process pool when `workers` > 1, else here."""
    jobs = [(clip, embed, config, stems[clip["id"]]) for clip in todo]
    with tqdm(total=len(todo), desc=config.name, unit="clip", disable=None) as bar:
        if client is None and parallel.worker_count(workers, len(todo)) > 1:
            with parallel.process_pool(parallel.worker_count(workers, len(todo)), initializer=_one_thread) as pool:
                for future in as_completed([pool.submit(_work, *job) for job in jobs]):
                    future.result()
                    bar.update()
            return
        for _ in distributed.run(client, _work, jobs):
            bar.update()


def _assemble(data_dir: Path, config: Any, clips: list[dict], stems: dict[str, Path], digest: str,
              provenance: Provenance) -> Path:
    """Gather the clips' results into the store and its provenance; failed clips are listed, not stored."""
    kept, rows, masks, failures = [], [], [], {}
    for clip in clips:
        done = Path(f"{stems[clip['id']]}.npz")
        if not done.exists():
            failures[clip["id"]] = artifacts.read_json(f"{stems[clip['id']]}.fail.json")["reason"]
            continue
        with np.load(done) as npz:
            rows.append(npz["X"]), masks.append(npz["mask"])
            kept.append(clip | {"notes": json.loads(str(npz["notes"]))})
    if not kept:
        raise MerError(f"{config.name}: every clip failed, e.g. {next(iter(failures.items()))}; a rerun retries them")
    X, mask = np.stack(rows), np.stack(masks)
    extras, note = provenance(config, kept, mask)
    meta = {**settings(config), **extras, "inputs_hash": digest, "n_clips": len(kept), "dim": int(X.shape[2]),
            "failures": failures, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = store.save_store(data_dir, config.name, store.EmbeddingStore([c["id"] for c in kept], X, mask, meta))
    print(f"wrote {path}: {len(kept)} clips x {X.shape[1]} windows x {meta['dim']}; "
          f"{len(failures)} failed, {note}")
    for clip_id, reason in list(failures.items())[:5]:
        print(f"  failed {clip_id}: {reason}")
    return path


def extract(data_dir: str | Path, audio: str | None = "egemaps", video: str | None = "fer_minixception",
            window: float = 0.5, count: int = 6, workers: int | None = None, frame_step: int = 1,
            openface_dir: str | Path | None = None, layout: str = win.FIXED,
            retry_failed: bool = True, scheduler=None) -> dict[str, Path | None]:
    """Build the audio and/or video store of a prepared data folder (None or "none" skips a modality).

    `layout` places the windows (mer_lib.data.windows); the clip layout ignores `window` and `count`.
    Every setting is checked and every extractor built before any clip is touched. Clips that failed
    in an earlier run are retried unless `retry_failed` is False. The clips are embedded by `workers`
    local processes, or as Dask tasks on `scheduler` (mer_lib.distributed: an address, "local:N" or a
    Client), which is connected to before any clip.
    """
    audio, video = (None if name == "none" else name for name in (audio, video))
    if audio is None and video is None:
        raise MerError("nothing to extract: give --audio NAME and/or --video NAME")
    if video == "openface" and openface_dir is None:
        raise MerError("the openface extractor needs --openface-dir (RAVDESS facial landmark tracking CSVs)")
    parallel.check_workers(workers)
    distributed.check(scheduler)
    if scheduler is not None and workers is not None:
        raise MerError("--workers sets the local processes; on a Dask cluster its workers embed the clips "
                       "(give --cluster local:N for N local ones)")
    win.check(window, count, layout)
    window, count = win.settings(window, count, layout)
    # frame_step concerns video frames only: an audio store is the same (and reused) whatever it is
    configs = [ExtractConfig(modality, name, window, count, frame_step if modality == "video" else 1,
                             openface_dir=str(openface_dir) if openface_dir else None, layout=layout,
                             luma=getattr(_extractor_class(modality, name), "luma", False))
               for modality, name in (("audio", audio), ("video", video)) if name is not None]
    configs = [with_extractor(config) for config in configs]
    with distributed.connect(scheduler) as client:
        return {config.modality: extract_store(data_dir, config, workers, retry_failed, client) for config in configs}
