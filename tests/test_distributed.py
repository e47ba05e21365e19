"""Extraction and the training grid on Dask: a local cluster of two worker processes gives the artifacts of
one process, survives a worker killed mid-task, and a rerun does only what is missing; bad flags are one line."""
from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest
import torch
from test_train import make_data_dir

from mer_lib import cli, distributed, grids
from mer_lib.data import manifest as mf
from mer_lib.errors import MerError
from mer_lib.features import extract, store

SMALL = {"epochs": 4, "d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "batch_size": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def client():
    """A local cluster of two single-threaded worker processes, shared by the tests of this module; this
    process's environment, which Dask's nanny changes while it starts workers, is as before after it."""
    environ = dict(os.environ)
    with distributed.connect("local:2") as connected:
        yield connected
    assert dict(os.environ) == environ


def _environ(name: str) -> str | None:
    return os.environ.get(name)


@pytest.fixture()
def one_thread():
    """Torch on one thread here, as in the workers, so that both compute the same floats."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _die_once(module: str, name: str, marker: str, after: int = 0) -> None:
    """In a worker: replace `module`.`name` so that, once this worker has made `after` calls, the first call
    of any worker (the `marker` file is the token) kills its process with SIGKILL. A restarted worker is a
    fresh process without the replacement."""
    import importlib

    target = importlib.import_module(module)
    real, calls = getattr(target, name), []
    setattr(target, f"_{name}_before_test", real)

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                os.kill(os.getpid(), signal.SIGKILL)
            except FileExistsError:
                pass
        return real(*args, **kwargs)

    setattr(target, name, dying)


def _restore(module: str, name: str) -> None:
    """In a worker: undo `_die_once` where it was done."""
    import importlib

    target = importlib.import_module(module)
    setattr(target, name, getattr(target, f"_{name}_before_test", getattr(target, name)))


def _worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def test_extraction_on_dask_is_the_one_process_store_and_survives_a_killed_worker(client, tmp_path, tone_clips,
                                                                                   one_thread):
    tone_clips(tmp_path / "raw", actors=(1, 2), emotions=(1, 3, 4), repetitions=(1, 2))
    for name in ("here", "dask"):
        mf.prepare("ravdess", tmp_path / "raw", tmp_path / name, quiet=True)
    extract.extract(tmp_path / "here", audio="logmel", video=None, window=0.5, count=2, workers=1)
    pids, marker = _worker_pids(client), tmp_path / "killed"
    client.run(_die_once, "mer_lib.features.extract", "embed_audio", str(marker), after=2)
    try:
        command = ["extract", str(tmp_path / "dask"), "--audio", "logmel", "--video", "none", "--window", "0.5",
                   "--windows", "2", "--scheduler", client.scheduler.address]
        assert cli.main(command) == 0
    finally:
        client.run(_restore, "mer_lib.features.extract", "embed_audio")
    assert marker.exists() and _worker_pids(client) != pids  # a worker died mid-clip and was replaced
    here, there = (store.load_store(tmp_path / name, "audio") for name in ("here", "dask"))
    assert here.ids == there.ids and len(here.ids) == 12 and not there.meta["failures"]
    assert np.array_equal(here.X, there.X) and np.array_equal(here.mask, there.mask)
    same = {k: v for k, v in here.meta.items() if k != "created"}
    assert same == {k: v for k, v in there.meta.items() if k != "created"}


def test_training_grid_on_dask_gives_the_local_artifacts_and_a_rerun_does_only_missing_folds(client, tmp_path,
                                                                                             one_thread):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    grid = [{"modalities": "a"}, {"modalities": "av", "pe": False}]
    here = grids.cross_validate_grid(data_dir, tmp_path / "here", grid, **SMALL)
    pids, marker = _worker_pids(client), tmp_path / "killed"
    client.run(_die_once, "mer_lib.train", "run_epoch", str(marker), after=2)  # mid-fold, after its checkpoints
    try:
        there = grids.cross_validate_grid(data_dir, tmp_path / "dask", grid, scheduler=client, **SMALL)
    finally:
        client.run(_restore, "mer_lib.train", "run_epoch")
    assert marker.exists() and _worker_pids(client) != pids
    assert list(here) == list(there) == ["mater-a", "mater-av-nope"]
    for name in here:
        for artifact in ("predictions.csv", "history.csv", "metrics.json", "config.yaml"):
            assert (here[name] / artifact).read_text() == (there[name] / artifact).read_text(), (name, artifact)
        assert sorted(p.name for p in (there[name] / "folds").iterdir()) == ["fold0.json", "fold1.json", "fold2.json"]

    # a lost fold (its worker gone with the client) is the only task of the rerun
    lost = there["mater-a"]
    (lost / "folds" / "fold1.json").unlink()
    (lost / "checkpoints" / "fold1.pt").unlink()
    kept = {p: p.stat().st_mtime_ns for name in there for p in (there[name] / "folds").iterdir()}
    grids.cross_validate_grid(data_dir, tmp_path / "dask", grid, scheduler=client, **SMALL)
    assert (lost / "folds" / "fold1.json").is_file()
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in kept.items())
    assert (lost / "predictions.csv").read_text() == (here["mater-a"] / "predictions.csv").read_text()


def test_mer_train_on_a_scheduler_with_seeds(client, tmp_path, one_thread):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=2)
    flags = ["--modalities", "a", "--epochs", "3", "--d-model", "16", "--heads", "2", "--layers", "1", "--d-ff", "32",
             "--device", "cpu", "--seeds", "0,1", "--folds", "0,2"]
    assert cli.main(["train", str(data_dir), *flags, "--out", str(tmp_path / "here")]) == 0
    assert cli.main(["train", str(data_dir), *flags, "--scheduler", client.scheduler.address,
                     "--out", str(tmp_path / "dask")]) == 0
    for artifact in ("predictions.csv", "predictions_seeds.csv", "history.csv", "metrics.json"):
        assert (tmp_path / "here" / artifact).read_text() == (tmp_path / "dask" / artifact).read_text(), artifact
    assert sorted(p.name for p in (tmp_path / "dask" / "checkpoints").iterdir()) == [
        "fold0-seed0.pt", "fold0-seed1.pt", "fold2-seed0.pt", "fold2-seed1.pt"]
    # one thread each, and not Dask's MALLOC_TRIM_THRESHOLD_ (training 1.7 times slower with it)
    assert set(client.run(_environ, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
    assert set(client.run(_environ, "OMP_NUM_THREADS").values()) == {"1"}


class _Scheduler:
    """A stand-in for a Client: the workers' resources as scheduler_info reports them."""

    def __init__(self, *resources):
        self.workers = {f"tcp://w{i}": {"resources": r} for i, r in enumerate(resources)}
        self.scheduler = type("rpc", (), {"address": "tcp://stand-in:8786"})()

    def scheduler_info(self):
        return {"workers": self.workers}


def _fail(reason: str) -> None:
    raise ValueError(reason)


def test_a_task_that_raises_raises_here(client):
    """Results are not fetched, but a task's exception still reaches the caller."""
    with pytest.raises(ValueError, match="task 1 failed"):
        list(distributed.run(client, _fail, [("task 1 failed",)]))


def _housekeeping() -> dict:
    import dask

    return {key: dask.config.get(key) for key in [*distributed.QUIET_LOOPS, "distributed.worker.profile.enabled"]}


def test_local_workers_run_without_the_profiler_and_with_quiet_event_loops(client):
    expected = {**distributed.QUIET_LOOPS, "distributed.worker.profile.enabled": False}
    assert list(client.run(_housekeeping).values()) == [expected, expected]  # both workers


def test_training_tasks_ask_for_a_gpu_as_their_device_says():
    mixed, cpus = _Scheduler({}, {"GPU": 1}), _Scheduler({}, {})
    assert distributed.device_resources(mixed, "cpu") is None
    assert distributed.device_resources(mixed, "auto") == {"GPU": 1} == distributed.device_resources(mixed, "cuda")
    assert distributed.device_resources(cpus, "auto") is None
    with pytest.raises(MerError, match="--device cuda needs GPU workers"):
        distributed.device_resources(cpus, "cuda")


def test_bad_scheduler_flags_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 1)
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=1)
    train_command = ["train", str(data_dir), "--out", str(tmp_path / "run")]
    cases = [(train_command + ["--cluster", "local:0"], "local:N with N >= 1"),
             (train_command + ["--cluster", "slurm:4"], "--cluster takes local:N"),
             (train_command + ["--cluster", "local:2", "--scheduler", "tcp://h:1"], "not allowed with"),
             (train_command + ["--scheduler", "tcp://127.0.0.1:9"], "cannot reach a Dask scheduler at tcp://127.0.0.1:9"),
             (["extract", str(data_dir), "--workers", "2", "--cluster", "local:2"],
              "--workers sets the local processes")]
    for command, message in cases:
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("mer: error:") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing written before the scheduler answered


def test_a_worker_with_other_weights_embeds_nothing_under_the_stores_settings():
    config = extract.with_extractor(extract.ExtractConfig("video", "fer_minixception", 0.5, 2))
    assert extract.get_extractor(config).weights_sha256 == config.weights_sha256
    elsewhere = dataclasses.replace(config, weights_sha256="0" * 64)  # what a worker with other weights sees
    with pytest.raises(MerError, match="weights here are not those the run started with"):
        extract.get_extractor(elsewhere)
