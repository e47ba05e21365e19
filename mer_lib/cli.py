"""The `mer` command: a thin argparse layer over mer_lib (DESIGN.md, "The command line").

Every subcommand prints what it did; bad input ends with a one-line `mer: error: ...` and exit
status 2 (a MerError raised anywhere in the library). Ctrl-C (SIGINT) and SIGTERM (``kill``,
``timeout``) end a command the same way: worker processes stop with it, finished work is kept, and
the exit status is 128 + the signal's number.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from mer_lib.config import add_train_flags, flag_settings
from mer_lib.data.windows import LAYOUTS
from mer_lib.errors import MerError, check_number


class _Parser(argparse.ArgumentParser):
    """argparse whose errors (unknown flag, a value of the wrong type) are the one `mer: error:` line too."""

    def error(self, message: str):
        self.exit(2, f"mer: error: {message} (see `{self.prog} --help`)\n")


def _size(text: str) -> tuple[int, int]:
    """Parse WxH (e.g. 1280x720) into (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 320x240, got {text!r}") from None
    return w, h


def _none(name: str | None) -> str | None:
    """The extractor flag's value, None for "none" (skip that modality)."""
    return None if name in (None, "none") else name


def cmd_data_synth(args) -> None:
    from mer_lib.data import synthetic

    paths = synthetic.synthesize(args.out_dir, actors=args.actors, seed=args.seed, size=args.size,
                                 workers=args.workers)
    print(f"wrote {len(paths)} clips of the embedded corpus to {args.out_dir}")


def cmd_data_download(args) -> None:
    from mer_lib.data import download

    download.download(args.dataset, args.dest, openface=not args.no_openface)


def cmd_data_prepare(args) -> None:
    from mer_lib.data import manifest

    manifest.prepare(args.dataset, args.root, args.out, scheme=args.scheme, workers=args.workers)


def cmd_extract(args) -> None:
    from mer_lib.features import extract

    extract.extract(args.data_dir, audio=_none(args.audio), video=_none(args.video), window=args.window,
                    count=args.windows, workers=args.workers, frame_step=args.frame_step,
                    openface_dir=args.openface_dir, layout=args.layout, retry_failed=not args.skip_failed,
                    scheduler=_scheduler(args))


def cmd_extract_backbone(args) -> None:
    from mer_lib.features import backbone

    backbone.extract_backbone(args.data_dir, video_backbone=_none(args.video), frame_size=args.frame_size,
                              audio_backbone=_none(args.audio), video_weights=args.video_weights,
                              audio_weights=args.audio_weights, spectrogram_size=args.spectrogram_size,
                              workers=args.workers)


def cmd_train(args) -> None:
    from mer_lib import train

    settings = flag_settings(args)
    train.run(args.data_dir, args.out, audio=args.audio, video=args.video, window=args.window,
              windows=args.windows, layout=args.layout, preset=args.preset, folds=args.folds,
              seeds=_integers(args.seeds, "--seeds"), scheduler=_scheduler(args), **settings)


def _scheduler(args) -> str | None:
    """Where the command's tasks run (mer_lib.distributed): --cluster local:N, --scheduler ADDRESS, or None (here)."""
    from mer_lib import distributed

    if args.cluster is not None and not distributed.LOCAL.fullmatch(args.cluster):
        raise MerError(f"--cluster takes local:N (a Dask cluster of N worker processes here), got {args.cluster!r}; "
                       f"for a running scheduler give --scheduler ADDRESS")
    return args.cluster or args.scheduler


def _add_scheduler(parser: argparse.ArgumentParser, tasks: str) -> None:
    """The --scheduler and --cluster flags (one or the other) of a command whose `tasks` can run on Dask."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help=f"run {tasks} on the Dask scheduler at ADDRESS (tcp://host:8786); its workers must "
                            f"see the data, run and cache folders at the same paths")
    group.add_argument("--cluster", metavar="local:N", default=None,
                       help=f"run {tasks} on a local Dask cluster of N worker processes, started for the command")


def _integers(text: str | None, flag: str) -> list[int] | None:
    """--seeds 0,1,2 -> [0, 1, 2] (also --folds); one-line error for anything else."""
    if text is None:
        return None
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise MerError(f"{flag} takes comma-separated integers, e.g. 0,1,2 (got {text!r})") from None
    if len(set(values)) != len(values):
        raise MerError(f"{flag} lists a value twice: {text}")
    for value in values:
        check_number(flag.lstrip("-"), value, integer=True, low=0)
    return values


def cmd_report(args) -> None:
    from mer_lib import report

    report.report(args.run_dirs, out=args.out)


def cmd_ensemble(args) -> None:
    from mer_lib import ensemble

    metrics = ensemble.combine(args.run_dirs, args.out)
    print(f"ensemble of {len(args.run_dirs)} runs: accuracy {metrics['accuracy_mean']:.3f} +- "
          f"{metrics['accuracy_std']:.3f}, UAR {metrics['uar_mean']:.3f}; wrote {args.out}")


def cmd_protocol(args) -> None:
    from mer_lib import protocol

    protocol.protocol(args.root, args.out, folds=args.folds, quick=args.quick, workers=args.workers,
                      only=args.only.split(",") if args.only else None, scheduler=_scheduler(args))


def cmd_predict(args) -> None:
    from mer_lib import timeline

    timeline.run(args.video, args.run, out=args.out, hop=args.hop, stream=args.stream, video_out=args.annotate,
                 face=args.face, silence_db=args.silence_db, folds=_integers(args.folds, "--folds"),
                 format=args.input_format, options=_options(args.input_option))


def _options(pairs: list[str]) -> dict[str, str]:
    """--input-option framerate=30 ... -> {"framerate": "30"}; one-line error for anything else."""
    if any("=" not in pair for pair in pairs):
        raise MerError(f"--input-option takes KEY=VALUE, got {next(p for p in pairs if '=' not in p)!r}")
    return dict(pair.split("=", 1) for pair in pairs)


def cmd_weights_list(args) -> None:
    from mer_lib import weights

    for row in weights.list_weights():
        state = "usable" if row["usable"] else f"{'invalid' if row['present'] else 'missing'} ({row['problem']})"
        print(f"{row['name']:24s} {state}\n{'':24s} source: {row['source']}; checksum: {row['checksum']}")


def cmd_weights_fetch(args) -> None:
    from mer_lib import weights

    path = weights.fetch(args.name, base_url=args.base_url)
    print(f"{args.name}: {path} (sha256 {weights.sha256_file(path)})")


def cmd_notebooks_run(args) -> None:
    from mer_lib import notebooks

    results = notebooks.run_all(params_file=args.params, out_dir=args.out, only=args.only)
    if any(not r.ok for r in results):
        raise MerError("some notebooks failed; see the summary above")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mer", description="Audio-visual emotion recognition course tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets: embedded corpus, download, prepare").add_subparsers(
        dest="data_command", required=True)
    p = data.add_parser("synth", help="write the embedded corpus (RAVDESS naming and layout)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--actors", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=None, help="frame size WxH (default: small frames)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    p.set_defaults(func=cmd_data_synth)

    p = data.add_parser("download", help="download RAVDESS or CREMA-D (needs internet; resumable)")
    p.add_argument("dataset", choices=["ravdess", "cremad"])
    p.add_argument("dest", type=Path)
    p.add_argument("--no-openface", action="store_true", help="RAVDESS: skip the facial landmark tracking")
    p.set_defaults(func=cmd_data_download)

    p = data.add_parser("prepare", help="write manifest.csv and folds.csv for a dataset folder")
    p.add_argument("dataset", choices=["ravdess", "cremad", "synthetic"])
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, required=True, help="data folder for the artifacts")
    p.add_argument("--scheme", choices=["mater", "hicmae", "mocanu"], default="mater",
                   help="fold scheme: MATER (RAVDESS 12, CREMA-D 10 folds), HiCMAE (6 / 5 folds) or the "
                        "cross-modal model's (Mocanu et al.: 10 / 10)")
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("extract", help="per-window audio and video embeddings into the embedding store")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--audio", default="egemaps", help="egemaps (default), compare, logmel, vggish, or none")
    p.add_argument("--video", default="fer_minixception",
                   help="fer_minixception (default), vggm_fer, landmarks, openface, or none")
    p.add_argument("--window", type=float, default=0.5, help="window length w in seconds")
    p.add_argument("--windows", type=int, default=6, help="number of windows T")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument("--frame-step", type=int, default=1, help="embed every k-th video frame")
    p.add_argument("--openface-dir", type=Path, default=None, help="RAVDESS OpenFace CSVs (for --video openface)")
    p.add_argument("--layout", choices=LAYOUTS, default="fixed",
                   help="where the windows lie: fixed (paper: from 0 s), voiced (over the speech), spread (over "
                        "the clip), clip (one window, the whole clip; --window/--windows ignored)")
    p.add_argument("--skip-failed", action="store_true",
                   help="keep the failures of earlier runs (same media and settings) instead of retrying those clips")
    _add_scheduler(p, "one task per clip")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("extract-backbone",
                       help="cache frozen 3D-CNN face maps and spectrogram ResNet-18 features (cross_attention)")
    p.add_argument("data_dir", type=Path)
    p.add_argument("--video", choices=["r3d_18", "r2plus1d_18", "mc3_18", "none"], default="r3d_18",
                   help="video backbone (Kinetics-400 weights: mer weights fetch r3d_18_kinetics400)")
    p.add_argument("--frame-size", type=int, default=112, help="face frame side in pixels (paper: 224)")
    p.add_argument("--audio", choices=["resnet18", "none"], default="resnet18",
                   help="spectrogram backbone (ImageNet weights: mer weights fetch resnet18_imagenet)")
    p.add_argument("--spectrogram-size", type=int, default=224, help="side the spectrogram images are resized to")
    p.add_argument("--video-weights", default=None, help="registry name of other video backbone weights")
    p.add_argument("--audio-weights", default=None, help="registry name of other audio backbone weights")
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=cmd_extract_backbone)

    p = sub.add_parser("train", help="cross-validate a model on stored embeddings (subject-disjoint folds)")
    p.add_argument("data_dir", type=Path)
    add_train_flags(p)
    p.add_argument("--seeds", default=None,
                   help="e.g. 0,1,2: train each fold once per seed; predictions average the seeds (ensemble)")
    p.add_argument("--audio", default=None, help="audio extractor of the store (default: the only one)")
    p.add_argument("--video", default=None, help="video extractor of the store (default: the only one)")
    p.add_argument("--window", type=float, default=None)
    p.add_argument("--windows", type=int, default=None)
    p.add_argument("--layout", choices=LAYOUTS, default="fixed", help="window layout of the stores (mer extract)")
    p.add_argument("--folds", default="all", help="all, or e.g. 0,3")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    _add_scheduler(p, "one task per (fold, seed)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("report", help="accuracy tables of training runs beside the papers' numbers")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the tables and figures (default RUN_DIR/report, or the runs' parent/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ensemble", help="average the test probabilities of finished runs on the same folds")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="run folder for the ensemble's predictions and metrics")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("predict", help="a trained run's emotions for a new recording: per window for a short clip, "
                                       "a timeline for a longer one")
    p.add_argument("video", metavar="VIDEO", help="video or audio file (or a capture device with --input-format)")
    p.add_argument("--run", type=Path, required=True, help="run folder written by mer train")
    p.add_argument("--out", type=Path, default=None, help="folder for the CSV and plot (default RUN/predict)")
    p.add_argument("--hop", type=float, default=None, help="seconds between timeline steps (default: one window)")
    p.add_argument("--stream", action="store_true", help="print each step as soon as its windows are complete")
    p.add_argument("--annotate", action="store_true",
                   help="also write VIDEO_annotated.mp4: face box and probability bars on every frame, audio kept")
    p.add_argument("--face", default="largest", help="which face to follow among several: largest, left or right")
    p.add_argument("--folds", default=None,
                   help="average only these folds' models, e.g. the fold whose test actors the recording shows "
                        "(default all; a timeline even for a short clip)")
    p.add_argument("--silence-db", type=float, default=None,
                   help="audio windows below this level (dB re full scale) are silence, masked (default -50)")
    p.add_argument("--input-format", default=None,
                   help="read a capture device through this libavdevice format (v4l2, avfoundation, dshow)")
    p.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                   help="capture device option, e.g. framerate=30 or video_size=1280x720 (repeatable)")
    p.set_defaults(func=cmd_predict)

    w = sub.add_parser("weights", help="pretrained weights: list, fetch").add_subparsers(
        dest="weights_command", required=True)
    p = w.add_parser("list", help="registered weights, where they come from, whether they are here")
    p.set_defaults(func=cmd_weights_list)
    p = w.add_parser("fetch", help="download a registered weight file into the cache (needs internet)")
    p.add_argument("name")
    p.add_argument("--base-url", default=None, help="mirror to download from instead of the official source")
    p.set_defaults(func=cmd_weights_fetch)

    p = sub.add_parser("protocol", help="the real-audio comparison: prepare, extract, train the baseline "
                                        "ladder and the MATER variants on the same folds, one table")
    p.add_argument("root", type=Path, help="folder of RAVDESS Actor_XX folders (audio-only or audio-visual)")
    p.add_argument("--out", type=Path, required=True, help="protocol folder (data/, runs/, protocol.md)")
    p.add_argument("--folds", default="all", help="all, or e.g. 0,3")
    p.add_argument("--only", default=None, help="comma-separated run names (default: every run)")
    p.add_argument("--quick", action="store_true", help="2 epochs, tiny networks: a smoke test, not results")
    p.add_argument("--workers", type=int, default=None, help="extraction processes")
    _add_scheduler(p, "the clips and the (fold, seed) tasks of every run")
    p.set_defaults(func=cmd_protocol)

    nb = sub.add_parser("notebooks", help="run the course notebooks headless").add_subparsers(
        dest="nb_command", required=True)
    p = nb.add_parser("run", help="papermill over all notebooks, in order")
    p.add_argument("--params", type=Path, default=None, help="YAML parameters (default configs/embedded.yaml)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,03")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/notebooks)")
    p.set_defaults(func=cmd_notebooks_run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the command as Ctrl-C's KeyboardInterrupt is, so both unwind alike."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises Terminated while the block runs, the previous handler after (Python handles
    signals in the main thread only: elsewhere the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the `mer` command on `argv`; its exit status (argparse's errors and --help included)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:
        return done.code
    try:
        with _sigterm_interrupts():
            args.func(args)
    except MerError as err:
        print(f"mer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        received = signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT
        print(f"mer: interrupted ({received.name}); finished work is kept and a rerun resumes", file=sys.stderr)
        return 128 + received
    return 0


if __name__ == "__main__":
    sys.exit(main())
