"""Work beyond one process pool: clips and (configuration, fold, seed) tasks on Dask (`dask.distributed`).

`mer extract`, `mer train`, `mer protocol` and the training grids take a *scheduler*:

- None (the default): everything runs in this process or its local process pool (mer_lib.parallel), as
  before; Dask is not even imported.
- ``"local:N"``: a local cluster of N worker processes of one thread each, started for the call and
  stopped with it. On a machine with k GPUs, worker i sees GPU i mod k alone (CUDA_VISIBLE_DEVICES) and
  offers the worker resource GPU=1.
- any other text: the address of a running scheduler (``tcp://host:8786``). Its workers must see the
  data folder, the run folders and ``$MER_CACHE`` at the same paths (a shared filesystem): tasks read
  media and stores there and write their results there.
- a `distributed.Client`, which is used as it is and left open.

Every task writes its own result atomically (a clip's embeddings, a fold's checkpoints and results), so
Dask's own recovery is all the fault tolerance needed: when a worker dies, the scheduler gives its
running task to another worker and nothing finished is lost; after a lost client, a rerun skips what
is on disk. A task that takes three workers down with it (say, out of memory) ends the run with an error.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mer_lib.errors import MerError

LOCAL = re.compile(r"local:(.*)")
CONNECT_TIMEOUT_S = 10  # an unreachable scheduler is an error after this long, not a hang


def check(scheduler: Any) -> None:
    """MerError unless `scheduler` is None, a Client, an address, or "local:N" with N >= 1."""
    if scheduler is None or not isinstance(scheduler, str):
        return
    local = LOCAL.fullmatch(scheduler)
    if local and not (local[1].isdigit() and int(local[1]) >= 1):
        raise MerError(f"a local cluster is local:N with N >= 1 worker processes, got {scheduler!r}")
    if not scheduler.strip():
        raise MerError("the scheduler address is empty (give e.g. tcp://host:8786, or --cluster local:N)")


def describe(scheduler: Any) -> str:
    """Where the work of `scheduler` (not None) runs, for messages."""
    if isinstance(scheduler, str):
        local = LOCAL.fullmatch(scheduler)
        return f"a local Dask cluster of {local[1]} workers" if local else f"the Dask scheduler at {scheduler}"
    return f"the Dask scheduler at {scheduler.scheduler.address}"


@contextlib.contextmanager
def connect(scheduler: Any) -> Iterator[Any]:
    """A Client of `scheduler` for the block (None when it is None: work stays local), closed after it.

    A local cluster is stopped with the block; a Client given is yielded as it is and left open.
    """
    check(scheduler)
    if scheduler is None or not isinstance(scheduler, str):
        yield scheduler
        return
    local = LOCAL.fullmatch(scheduler)
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(_local_cluster(int(local[1]))) if local else scheduler
        yield stack.enter_context(_client(address))


def _client(address: Any):
    """A Client of the scheduler at `address` (or of a cluster object); MerError when it cannot be reached in time."""
    from distributed import Client

    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise MerError(f"cannot reach a Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s "
                       f"({type(err).__name__}); start one (dask scheduler) or use --cluster local:N") from None


# Dask's defaults: a tick every 20 ms (it warns of a blocked event loop), system monitor every 0.5 s (the
# dashboard's plots), worker memory checked every 0.1 s (pause, spill or restart near the memory limit).
QUIET_LOOPS = {"distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "5s",
               "distributed.worker.memory.monitor-interval": "1s"}


@contextlib.contextmanager
def _local_cluster(n_workers: int) -> Iterator[Any]:
    """A cluster of `n_workers` single-threaded worker processes on this machine for the block, each pinned to
    one GPU (round robin) with the resource GPU=1 where torch sees GPUs; no dashboard. The workers load
    this module at start (`dask_setup`).

    Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which made training 1.7 times slower
    here (an explicit threshold turns off glibc's adaptive mmap threshold); it is left unset. Dask's
    statistical profiler, which samples each worker's stack every 10 ms for the dashboard (off here), is
    off too: it took about 2 % of a core per worker, from the other workers' share of the cores. The
    event loops' housekeeping wakes less often (`QUIET_LOOPS`): every process ticked 50 times a second and
    each worker measured its memory 10 times a second, each time taking the GIL from the task's thread;
    two workers extracting 32 face-video clips took 5.9 s instead of 6.5 on average (five pairs of runs,
    alternated; one worker: no change). The nanny also sets its workers' variables (OMP_NUM_THREADS=1...)
    in this process, so the environment is restored after.
    """
    import logging

    import dask
    import torch
    from distributed import Nanny, Scheduler, SpecCluster

    gpus = torch.cuda.device_count()
    host = "127.0.0.1"
    def options(i: int) -> dict:
        """Worker i's options: one thread, and on a GPU machine a GPU of its own (round robin)."""
        gpu = {"resources": {"GPU": 1}, "env": {"CUDA_VISIBLE_DEVICES": str(i % gpus)}} if gpus else {}
        return {"host": host, "nthreads": 1, "silence_logs": logging.WARNING, "preload": [__name__], **gpu}

    workers = {i: {"cls": Nanny, "options": options(i)} for i in range(n_workers)}
    scheduler = {"cls": Scheduler, "options": {"host": host, "dashboard": False, "dashboard_address": ":0"}}
    environ = dict(os.environ)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                              "distributed.worker.profile.enabled": False, **QUIET_LOOPS}), \
                SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARNING,
                            name=f"local:{n_workers}") as cluster:
            yield cluster
    finally:
        os.environ.clear()
        os.environ.update(environ)


def dask_setup(worker) -> None:
    """Start of a local cluster's worker: ignore Ctrl-C, which reaches the whole process group; the command
    handles it and stops the cluster (as mer_lib.parallel's workers do, with no traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def offers_gpus(client) -> bool:
    """Whether some worker of `client`'s scheduler offers the resource GPU."""
    return any("GPU" in worker.get("resources", {}) for worker in client.scheduler_info()["workers"].values())


def device_resources(client, device: str) -> dict | None:
    """The worker resources a training task on `device` asks for, so that mixed CPU and GPU workers place it.

    "cpu" asks for none; "auto" for GPU=1 when some worker offers it (else it runs anywhere and uses a
    GPU where its worker has one); "cuda" always, and it is an error when no worker offers a GPU (the
    tasks would wait forever).
    """
    if device == "cpu" or (device == "auto" and not offers_gpus(client)):
        return None
    if device != "auto" and not offers_gpus(client):
        raise MerError(f"--device {device} needs GPU workers, and no worker of the scheduler at "
                       f"{client.scheduler.address} offers the resource GPU (start them with --resources GPU=1)")
    return {"GPU": 1}


def run(client, fn: Callable, jobs: Sequence[tuple], resources: Sequence[dict | None] | None = None) -> Iterator[int]:
    """Run fn(*args) for every args of `jobs`; yield each job's position when it is done.

    Without a client the jobs run here, in order. With one, each is a Dask task (asking for its
    `resources`), yielded as they finish; a worker lost mid-task costs that task only (Dask runs it
    again elsewhere). An exception in a task is raised here, and leaving early cancels what is left.
    The tasks' return values are not fetched (the tasks write their results themselves): that would
    cost a round trip to the worker per task.
    """
    if client is None:
        for position, args in enumerate(jobs):
            fn(*args)
            yield position
        return
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    resources = resources or [None] * len(jobs)
    futures = {client.submit(fn, *args, pure=False, resources=needs): position
               for position, (args, needs) in enumerate(zip(jobs, resources))}
    try:
        for future in as_completed(futures, loop=client.loop):
            try:
                if future.status != "finished":  # erred or cancelled: raise its exception here
                    future.result()
            except KilledWorker as err:
                raise MerError(f"a task took down every worker that ran it (out of memory?): {err}") from None
            yield futures[future]
    finally:
        client.cancel(list(futures))
