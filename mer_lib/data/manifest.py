"""`mer data prepare`: scan a dataset folder into manifest.csv and folds.csv (DESIGN.md, "Data flow").

manifest.csv has one row per clip: id, dataset, actor, sex, emotion, label, intensity, statement,
repetition, vocal_channel, video_path, audio_path, duration, fps, sample_rate, channels,
has_audio, has_video, status ("ok" or "skip") and reason (why a clip is unusable). Files whose names are not
dataset names, unreadable media and clips known to be bad are kept as "skip" rows with the reason,
so nothing is silently dropped and the rest of the manifest is still written. CREMA-D rows also
carry actor demographics and the human raters' votes.

The step is cached: prepare.json records a hash of the inputs (dataset, fold scheme, and every
media file's name, size and modification time); a rerun with the same hash reuses the artifacts.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mer_lib import __version__, artifacts, media, parallel, paths
from mer_lib.data import cremad, ravdess
from mer_lib.data import folds as folds_mod
from mer_lib.errors import MerError

DATASETS = {"ravdess": ravdess, "cremad": cremad, "synthetic": ravdess}
COLUMNS = ["id", "dataset", "actor", "sex", "emotion", "label", "intensity", "statement", "repetition",
           "vocal_channel", "video_path", "audio_path", "duration", "fps", "sample_rate", "channels",
           "has_audio", "has_video", "status", "reason"]


def classes(dataset: str) -> tuple[str, ...]:
    """The emotion classes of a dataset, in label order."""
    if dataset not in DATASETS:
        raise MerError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    return DATASETS[dataset].CLASSES


def probe_clip(clip: dict) -> dict:
    """Fill a scanned clip's media facts (duration, fps, sample rate, streams) and its status.

    The video file's own audio track counts as audio. Unreadable media turn the clip into a
    "skip" row with the reason instead of stopping the whole scan.
    """
    row = dict(clip, duration=None, fps=None, sample_rate=None, channels=None, has_audio=False, has_video=False,
               status="ok", reason="")
    try:
        if row["video_path"]:
            info = media.probe(row["video_path"])
            row.update(duration=info.duration, fps=info.fps, has_video=info.has_video,
                       has_audio=info.has_audio, sample_rate=info.sample_rate,
                       channels=info.channels)
        if row["audio_path"] and row["audio_path"] != row["video_path"]:
            info = media.probe(row["audio_path"])
            row.update(has_audio=info.has_audio, sample_rate=info.sample_rate, channels=info.channels,
                       duration=row["duration"] or info.duration)
    except MerError as err:
        return row | {"status": "skip", "reason": str(err)}
    if not row["has_audio"]:
        row["audio_path"] = None
    if not (row["duration"] or 0) > 0:
        row.update(status="skip", reason="media has no duration")
    return row


def _inputs_hash(dataset: str, root: Path, scheme: str, n_folds: int | None, files: list[Path]) -> str:
    """Hash of everything the manifest depends on, for the cache check."""
    stats = [(str(p), p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    return artifacts.config_hash({"dataset": dataset, "root": str(root), "scheme": scheme,
                                  "n_folds": n_folds, "files": stats, "version": __version__})


def _media_files(root: Path) -> list[Path]:
    return paths.files_under(root, (".mp4", ".wav", ".flv", ".mp3"))


def build_manifest(dataset: str, root: Path, workers: int | None = None) -> pd.DataFrame:
    """Scan and probe every clip under `root` (in parallel over clips) into a manifest DataFrame."""
    clips, rejected = DATASETS[dataset].scan(root)
    if not clips and not rejected:
        raise MerError(f"no {dataset} media (.mp4, .wav, .flv, .mp3) found under {root}")
    workers = parallel.worker_count(workers, len(clips))
    bar = dict(total=len(clips), desc=f"probing {dataset} clips", unit="clip", disable=None)
    if workers > 1 and len(clips) > 32:
        with parallel.process_pool(workers) as pool:
            rows = list(tqdm(pool.map(probe_clip, clips, chunksize=16), **bar))
    else:
        rows = [probe_clip(c) for c in tqdm(clips, **bar)]
    for row in rows:
        bad = getattr(DATASETS[dataset], "KNOWN_BAD", {}).get(row["id"])
        if bad and row["status"] == "ok":
            row.update(status="skip", reason=bad)
    rows += [{"id": Path(r["path"]).stem, "audio_path": r["path"], "status": "skip", "reason": r["reason"]}
             for r in rejected]
    frame = pd.DataFrame(rows).assign(dataset=dataset)
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame.reindex(columns=COLUMNS + extra)


def prepare(dataset: str, root: str | Path, out_dir: str | Path, scheme: str = "mater",
            n_folds: int | None = None, workers: int | None = None, quiet: bool = False) -> pd.DataFrame:
    """Write manifest.csv, folds.csv and prepare.json for the dataset under `root` into `out_dir`.

    Returns the manifest. Reuses existing artifacts when their inputs hash is unchanged.
    """
    say = (lambda *a: None) if quiet else print
    classes(dataset)
    parallel.check_workers(workers)
    root, out_dir = Path(root).expanduser().resolve(), Path(out_dir).expanduser()
    if not root.is_dir():
        raise MerError(f"{root}: dataset folder not found")
    digest = _inputs_hash(dataset, root, scheme, n_folds, _media_files(root))
    meta_path, manifest_path = out_dir / "prepare.json", out_dir / "manifest.csv"
    if meta_path.is_file() and manifest_path.is_file() and (out_dir / "folds.csv").is_file():
        if pd.read_json(meta_path, typ="series").get("inputs_hash") == digest:
            say(f"{manifest_path} is up to date ({dataset} under {root})")
            return load_manifest(out_dir)
    manifest = build_manifest(dataset, root, workers)
    usable = manifest[manifest["status"] == "ok"]
    if usable.empty:
        raise MerError(f"no usable {dataset} clips under {root}: " + "; ".join(manifest["reason"].head(3)))
    folds = folds_mod.make_folds(usable, scheme, dataset, n_folds)
    artifacts.write_csv(manifest_path, manifest)
    artifacts.write_csv(out_dir / "folds.csv", folds)
    artifacts.write_json(meta_path, {"dataset": dataset, "root": str(root), "scheme": scheme,
                                     "inputs_hash": digest, "mer_lib_version": __version__,
                                     "n_clips": len(manifest), "n_usable": len(usable),
                                     "classes": list(classes(dataset))})
    say(summary(manifest, folds))
    say(f"wrote {manifest_path}, {out_dir / 'folds.csv'}")
    return manifest


def load_manifest(data_dir: str | Path, usable_only: bool = False) -> pd.DataFrame:
    """Read a prepared manifest.csv; MerError naming `mer data prepare` when it is missing."""
    path = Path(data_dir) / "manifest.csv"
    if not path.is_file():
        raise MerError(f"{path} not found: run `mer data prepare DATASET ROOT --out {data_dir}` first")
    frame = pd.read_csv(path, dtype={"statement": str, "reason": str}, keep_default_na=True)
    frame["reason"] = frame["reason"].fillna("")
    return frame[frame["status"] == "ok"].reset_index(drop=True) if usable_only else frame


def load_folds(data_dir: str | Path) -> pd.DataFrame:
    """Read a prepared folds.csv (actor, sex, fold)."""
    path = Path(data_dir) / "folds.csv"
    if not path.is_file():
        raise MerError(f"{path} not found: run `mer data prepare DATASET ROOT --out {data_dir}` first")
    return pd.read_csv(path)


def summary(manifest: pd.DataFrame, folds: pd.DataFrame) -> str:
    """What was prepared: counts per status, modality coverage, emotions, skipped clips, folds."""
    ok = manifest[manifest["status"] == "ok"]
    lines = [f"{len(manifest)} clips: {len(ok)} usable, {len(manifest) - len(ok)} skipped; "
             f"{ok['actor'].nunique()} actors, {ok['emotion'].nunique()} emotions; "
             f"{int(ok['has_video'].sum())} with video, {int(ok['has_audio'].sum())} with audio"]
    for _, row in manifest[manifest["status"] != "ok"].head(10).iterrows():
        lines.append(f"  skipped {row['id']}: {row['reason']}")
    lines.append(folds_mod.describe(folds))
    return "\n".join(lines)


def ensure_prepared(dataset: str = "synthetic", data_root: str | Path | None = None,
                    data_dir: str | Path = "data/embedded", workers: int | None = None,
                    quiet: bool = False) -> Path:
    """Make sure `data_dir` holds a manifest for `dataset`, building whatever is missing.

    For the embedded corpus with no `data_root`, the corpus is generated under `data_dir/media`
    (generation resumes and skips clips already written). Relative paths are taken from the
    repository root. Returns the resolved data folder. This is what notebooks call first.
    """
    data_dir = paths.resolve(data_dir)
    if data_root is None:
        if dataset != "synthetic":
            raise MerError(f"{dataset}: set data_root to the folder where you put the dataset "
                           f"(see data/README.md; `mer data download {dataset} DEST` fetches it)")
        from mer_lib.data import synthetic

        data_root = data_dir / "media"
        synthetic.synthesize(data_root, workers=workers)
    prepare(dataset, paths.resolve(data_root), data_dir, workers=workers, quiet=quiet)
    return data_dir
