"""`mer protocol`: the real-audio comparison in one command, every model beside the simplest baselines.

From a folder of RAVDESS audio (`Actor_XX` folders of the audio-only release, or the audio-visual
one) it prepares the data, extracts every store the runs need, trains each run on the same
subject-disjoint folds, and writes one table (`protocol.md`, `protocol.csv`): accuracy and
unweighted average recall (UAR), mean +- std over folds, training time and peak memory of each run,
and the human raters. Each training run is a `mer train` command in a child process, so its time
and peak memory (ru_maxrss of that process) are its own; finished runs are reused on a rerun, unless
they were trained with other settings than the row asks for now (a preset changed): those train again.

The runs (RUNS): the ladder (majority class; logistic regression and RBF SVM on eGeMAPS and on
ComParE functionals of the whole clip), MATER and the LSTM on eGeMAPS windows (the course's
embedding path, paper layout 8 x 0.5 s) with MATER's Table 1 ablations of PE and MHSA on the same
windows, MATER on the learned log-mel front-end (`--preset audio`) with the voiced and the paper's
fixed window layout, MATER on eGeMAPS windows over the voiced span, and `mater-views`: the two
voiced MATER runs (log-mel and eGeMAPS views of each clip) fused at the decision level by
`mer_lib.ensemble`; `mater-three-views` adds MATER on eGeMAPS windows in the fixed layout (the whole
clip, its silent start and end included: a third view that costs a minute). The log-mel rows train
each fold with two seeds and average their predictions (`mer train --seeds 0,1`): that member varies
most from seed to seed, and the table's seeds column says how many seeds each row averages. `--quick`
shrinks epochs and model for a smoke run (CI runs it on the two-actor sample); its numbers are not
results.

With a Dask scheduler (mer_lib.distributed) the clips are extracted on its workers and each run's
`mer train` child submits its (fold, seed) tasks there (a local cluster is started once, for all
runs); the runs follow one another. The time is then the run's wall time on the cluster, and the peak
memory that of the child process alone, not of the workers.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mer_lib import artifacts, distributed, ensemble, run_folder
from mer_lib.config import config_from_flags, trained_settings
from mer_lib.data import manifest as mf
from mer_lib.errors import MerError
from mer_lib.features import extract as extract_mod

COURSE_SIZE = ["--d-model", "128", "--layers", "2", "--heads", "4", "--d-ff", "256"]
PAPER_LAYOUT = ["--window", "0.5", "--windows", "8"]


@dataclass(frozen=True)
class Run:
    """One row of the table: a store to extract (extractor, layout) and the `mer train` arguments on it,
    or an ensemble of earlier rows (`members`, combined by `mer_lib.ensemble`, nothing trained)."""

    name: str
    extractor: str = ""
    layout: str = ""
    args: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)  # trained once per seed, predictions averaged (`mer train --seeds`)

    @property
    def n_seeds(self) -> str:
        """The table's seeds cell: how many seeds the row averages (an ensemble: each member's)."""
        return "+".join(BY_NAME[m].n_seeds for m in self.members) if self.members else str(len(self.seeds))

    @property
    def features(self) -> str:
        """The table's features cell: the store, or the members' stores."""
        if self.members:
            return " + ".join(BY_NAME[m].features for m in self.members)
        return f"{self.extractor} ({self.layout})"

    def store_args(self) -> list[str]:
        """The `mer train` arguments that pick this run's store."""
        layout = ["--layout", self.layout] + ([] if self.layout == "clip" else PAPER_LAYOUT)
        return ["--audio", self.extractor, *layout]


RUNS = [
    Run("majority", "egemaps", "clip", ("--model", "majority")),
    Run("logreg-egemaps", "egemaps", "clip", ("--model", "logreg")),
    Run("svm-egemaps", "egemaps", "clip", ("--model", "svm")),
    Run("logreg-compare", "compare", "clip", ("--model", "logreg")),
    Run("svm-compare", "compare", "clip", ("--model", "svm")),
    Run("lstm-egemaps", "egemaps", "fixed", ("--model", "lstm", "--d-model", "128", "--layers", "2")),
    Run("mater-egemaps", "egemaps", "fixed", ("--model", "mater", *COURSE_SIZE)),
    # MATER Table 1's ablations on the same windows: does the positional encoding change the result?
    Run("mater-egemaps-nope", "egemaps", "fixed", ("--model", "mater", "--no-pe", *COURSE_SIZE)),
    Run("mater-egemaps-nomhsa", "egemaps", "fixed", ("--model", "mater", "--no-mhsa", *COURSE_SIZE)),
    Run("mater-egemaps-nope-nomhsa", "egemaps", "fixed", ("--model", "mater", "--no-pe", "--no-mhsa", *COURSE_SIZE)),
    Run("mater-logmel-fixed", "logmel_patches", "fixed", ("--model", "mater", "--preset", "audio", *COURSE_SIZE),
        seeds=(0, 1)),
    Run("mater-logmel-voiced", "logmel_patches", "voiced", ("--model", "mater", "--preset", "audio", *COURSE_SIZE),
        seeds=(0, 1)),
    Run("mater-egemaps-voiced", "egemaps", "voiced", ("--model", "mater", *COURSE_SIZE)),
    # two audio views of each clip fused at the decision level, as MATER fuses audio and video (eq. 3)
    Run("mater-views", members=("mater-logmel-voiced", "mater-egemaps-voiced")),
    Run("mater-three-views", members=("mater-logmel-voiced", "mater-egemaps-voiced", "mater-egemaps")),
]
BY_NAME = {r.name: r for r in RUNS}
QUICK = ["--epochs", "2", "--d-model", "32", "--layers", "1", "--heads", "2", "--d-ff", "64"]


def _extract(data_dir: Path, runs: list[Run], workers: int | None, client=None) -> None:
    """Every store the runs read (each extracted once, reused when up to date), on Dask with a `client`."""
    for extractor, layout in dict.fromkeys((r.extractor, r.layout) for r in runs if not r.members):
        window, count = (None, None) if layout == "clip" else (0.5, 8)
        extract_mod.extract(data_dir, audio=extractor, video=None, window=window, count=count, workers=workers,
                            layout=layout, scheduler=client)


def _train_args(run: Run, quick: bool) -> list[str]:
    """The `mer train` settings of `run` (model, preset, sizes; with `quick`, the smoke test's)."""
    return ["--modalities", "a", *run.args, *(QUICK if quick and run.args[1] in ("mater", "lstm") else [])]


def _stale(run_dir: Path, run: Run, quick: bool) -> bool:
    """Whether `run_dir` holds a run trained with other settings or seeds than `run` asks for now (a preset
    or a default changed since, or --quick differs), by an older model revision or on other embeddings
    than its stores now hold (run_folder.outdated): its results would not be this row's."""
    if not (run_dir / "config.yaml").is_file():
        return False
    saved = run_folder.read_run_config(run_dir)
    return (trained_settings(saved["train"]) != trained_settings(config_from_flags(_train_args(run, quick)))
            or tuple(run_folder.recorded_seeds(saved)) != run.seeds or run_folder.outdated(run_dir))


def _train(data_dir: Path, run: Run, out: Path, folds: str, quick: bool, client=None) -> dict:
    """Run `mer train` for `run` in a child process (its tasks on `client`'s scheduler, if any); its wall
    time and peak resident memory (MB)."""
    command = [sys.executable, "-m", "mer_lib.cli", "train", str(data_dir), "--folds", folds, *run.store_args(),
               *_train_args(run, quick), "--seeds", ",".join(map(str, run.seeds)),
               *(["--scheduler", client.scheduler.address] if client is not None else []), "--out", str(out)]
    start = time.perf_counter()
    child = subprocess.Popen(command)
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:  # interrupted or terminated: the child ends with us (its finished folds are kept)
        child.terminate()
        child.wait()
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise MerError(f"{run.name}: `mer train` failed (exit {child.returncode}); rerun: {' '.join(command[2:])}")
    return {"train_seconds": round(time.perf_counter() - start), "peak_memory_mb": round(usage.ru_maxrss / 1024)}


def protocol(root: str | Path, out: str | Path, folds: str = "all", quick: bool = False,
             workers: int | None = None, only: list[str] | None = None, scheduler=None) -> pd.DataFrame:
    """Prepare, extract, train every run of RUNS (or those named in `only`) and write the table under `out`;
    on Dask `scheduler` (mer_lib.distributed) when given."""
    out = Path(out)
    chosen = set(RUNS if only is None else [BY_NAME[n] for n in only if n in BY_NAME])
    chosen |= {BY_NAME[m] for r in chosen for m in r.members}  # an ensemble needs its members
    runs = [r for r in RUNS if r in chosen]
    if not runs:
        raise MerError(f"no run named {', '.join(only or [])} (runs: {', '.join(r.name for r in RUNS)})")
    data_dir = out / "data"
    with distributed.connect(scheduler) as client:
        mf.prepare("ravdess", root, data_dir)
        _extract(data_dir, runs, workers, client)
        costs_path = out / "costs.json"
        costs = _read_costs(costs_path)
        for run in runs:
            run_dir = out / "runs" / run.name
            if run.members:  # cheap, and its members may have been retrained: always recombined
                ensemble.combine([out / "runs" / m for m in run.members], run_dir)
                costs[run.name] = {"train_seconds": sum(costs[m]["train_seconds"] for m in run.members),
                                   "peak_memory_mb": max(costs[m]["peak_memory_mb"] for m in run.members)}
            else:
                if _stale(run_dir, run, quick):
                    print(f"protocol: {run_dir} was trained with other settings, seeds, models or embeddings; "
                          f"training it again")
                    shutil.rmtree(run_dir)
                if run.name not in costs or not (run_dir / "metrics.json").is_file():
                    print(f"protocol: training {run.name}")
                    cost = _train(data_dir, run, run_dir, folds, quick, client)
                    # reread: another `mer protocol --only` on the same folder may have finished a run meanwhile
                    costs = _read_costs(costs_path) | {run.name: cost}
            artifacts.write_json(costs_path, costs)
    return write_table(out, runs, costs)


def _read_costs(path: Path) -> dict:
    """Each trained run's time and peak memory, as costs.json records them ({} before the first run)."""
    return artifacts.read_json(path) if path.is_file() else {}


def write_table(out: Path, runs: list[Run], costs: dict) -> pd.DataFrame:
    """protocol.csv and protocol.md under `out`: one row per run and the human raters."""
    from mer_lib import report

    rows = []
    for run in runs:
        metrics = artifacts.read_json(out / "runs" / run.name / "metrics.json")
        rows.append({"run": run.name, "features": run.features, "seeds": run.n_seeds,
                     "accuracy %": _pm(metrics["accuracy_mean"], metrics["accuracy_std"]),
                     "UAR %": _pm(metrics["uar_mean"], metrics["uar_std"]), "folds": len(metrics["per_fold"]),
                     **costs[run.name]})
    rows.append({"run": "human raters (Livingstone & Russo 2018)", "features": "audio only",
                 "accuracy %": f"{report.HUMAN['ravdess']['a']:.1f}"})
    table = pd.DataFrame(rows)
    artifacts.write_csv(out / "protocol.csv", table)
    artifacts.write_text(out / "protocol.md", artifacts.markdown_table(rows))  # rows: counts stay integers
    print(table.to_string(index=False))
    return table


def _pm(mean: float, std: float) -> str:
    """'mean +- std' in percent."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}"
