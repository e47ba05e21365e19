"""`make bench`: speed and memory of the pipeline's stages, as JSON and a Markdown table.

Timings live here, never in tests. Each benchmark is a function returning a list of result rows
(stage, input, the measured rates); `run` times them, records peak memory, and writes
`runs/bench/bench.json` and `bench.md`.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from mer_lib import __version__, artifacts, media, paths

REAL_DATA = paths.project_root().parent / "shared" / "data" / "real"


def _timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_decode(corpus: Path) -> list[dict]:
    """Video frames/s and audio real-time factor of PyAV decoding, on the corpus and real samples."""
    rows = []
    videos = sorted(corpus.rglob("*.mp4"))[:8] + sorted((REAL_DATA / "cremad" / "VideoFlash").glob("*.flv"))
    for path in videos:
        (frames, _), seconds = _timed(media.read_video, path)
        rows.append({"stage": "decode video", "input": path.name, "frames": len(frames),
                     "size": f"{frames.shape[2]}x{frames.shape[1]}", "frames_per_s": len(frames) / seconds})
    audios = sorted(corpus.rglob("*.mp4"))[:8] + sorted((REAL_DATA / "ravdess" / "audio").rglob("*.wav"))[:8]
    for path in audios:
        (audio, rate), seconds = _timed(media.read_audio, path, sample_rate=16000)
        rows.append({"stage": "decode audio to 16 kHz", "input": path.name,
                     "real_time_factor": seconds / (len(audio) / rate)})
    return rows


def bench_synth(size: tuple[int, int] | None, clips: int = 8) -> list[dict]:
    """Embedded-corpus generation: seconds per clip at the default and at RAVDESS frame size."""
    from mer_lib.data import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        _, seconds = _timed(synthetic.synthesize, tmp, actors=1, workers=1, size=size, limit=clips)
    label = "default" if size is None else f"{size[0]}x{size[1]}"
    return [{"stage": "synthesize corpus (1 worker)", "input": f"{clips} clips, {label}",
             "seconds_per_clip": seconds / clips}]


def bench_extract(corpus_dir: Path, clips: int = 12) -> list[dict]:
    """Per-extractor seconds per clip, video frames/s and audio real-time factor, one worker."""
    import torch

    from mer_lib.data import manifest as mf
    from mer_lib.features import extract

    torch.set_num_threads(1)
    table = mf.load_manifest(corpus_dir, usable_only=True).head(clips).to_dict("records")
    rows = []
    for modality, name in [("audio", "egemaps"), ("audio", "logmel"), ("video", "fer_minixception"),
                           ("video", "landmarks")]:
        config = extract.ExtractConfig(modality, name, 0.5, 6)
        extract._extractor(config)  # model loading is not per-clip work
        embed = extract.embed_audio if modality == "audio" else extract.embed_video
        _, seconds = _timed(lambda: [embed(clip, config) for clip in table])
        audio_seconds = sum(float(c["duration"]) for c in table)
        rows.append({"stage": f"extract {modality} {name} (1 worker)", "input": f"{len(table)} clips",
                     "clips_per_s": len(table) / seconds,
                     "real_time_factor": seconds / audio_seconds})
    return rows


def bench_video_breakdown(size: tuple[int, int] = (1280, 720), clips: int = 2) -> list[dict]:
    """Where a RAVDESS-size clip's video time goes: decode, face tracking, CNN (one thread)."""
    import torch

    from mer_lib.data import synthetic
    from mer_lib.features.faces import FaceTracker
    from mer_lib.features.visual import VISUAL_EXTRACTORS

    torch.set_num_threads(1)
    cnn, rows = VISUAL_EXTRACTORS["fer_minixception"](), []
    with tempfile.TemporaryDirectory() as tmp:
        for path in synthetic.synthesize(tmp, actors=1, workers=1, size=size, limit=clips)[:clips]:
            (frames, _), decode = _timed(media.read_video, path)
            FaceTracker().track(frames[:1])  # loads the landmark model once, outside the timing
            track, faces = _timed(FaceTracker().track, frames)
            _, embed = _timed(cnn.embed_frames, track.chips[track.found])
            rows.append({"stage": f"video {size[0]}x{size[1]} (1 thread)", "input": path.name,
                         "decode_s": decode, "faces_s": faces, "cnn_s": embed,
                         "total_s_per_clip": decode + faces + embed, "frames": len(frames)})
    return rows


def markdown(rows: list[dict]) -> str:
    """Rows as a Markdown table, numbers to three significant digits."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else ("" if v is None else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run(out_dir: Path, corpus: Path) -> list[dict]:
    """Run every benchmark, print the table, write bench.json and bench.md into `out_dir`."""
    from mer_lib.data import manifest

    manifest.ensure_prepared("synthetic", data_dir=corpus.parent, quiet=True)
    rows = (bench_decode(corpus) + bench_synth(None) + bench_synth((1280, 720), clips=2)
            + bench_extract(corpus.parent) + bench_video_breakdown())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = {"mer_lib_version": __version__, "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "peak_memory_mb": peak_mb}
    artifacts.write_json(out_dir / "bench.json", {"meta": meta, "results": rows})
    table = markdown(_summarise(rows)) + f"\npeak memory: {peak_mb:.0f} MB on {os.cpu_count()} CPUs\n"
    artifacts.write_text(out_dir / "bench.md", table)
    print(table)
    return rows


def _summarise(rows: list[dict]) -> list[dict]:
    """One row per (stage, input kind): the mean of each rate over its inputs."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        kind = row["input"].rsplit(".", 1)[-1] if "." in row["input"] else row["input"]
        groups.setdefault((row["stage"], kind), []).append(row)
    out = []
    for (stage, kind), members in groups.items():
        rates = {k: float(np.mean([m[k] for m in members])) for k in members[0]
                 if isinstance(members[0][k], float)}
        label = f"{len(members)} x {kind}" if len(members) > 1 else members[0]["input"]
        out.append({"stage": stage, "input": label, **rates})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=paths.resolve("runs/bench"))
    parser.add_argument("--corpus", type=Path, default=paths.resolve("data/embedded/media"))
    args = parser.parse_args()
    run(args.out, args.corpus)


if __name__ == "__main__":
    main()
