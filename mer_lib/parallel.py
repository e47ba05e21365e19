"""Worker processes that end with the command that started them.

`mer extract`, `mer data prepare` and `mer data synth` spread clips over a pool of processes, and each
finished clip is written at once by the caller, so an interrupted run keeps its finished work. The
workers must never outlive the run (each may hold a model and a decoded clip, about 1 GB):

- `process_pool` is a ProcessPoolExecutor that, when its block is left by an exception (Ctrl-C's
  KeyboardInterrupt included), terminates the running workers and drops the clips not yet started.
  The standard executor's exit would wait for every submitted clip instead.
- Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the parent stops them (no
  traceback from every worker). On Linux each worker also asks the kernel for SIGTERM when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``), which covers a parent killed with SIGKILL.
- The `mer` command turns SIGTERM (``kill PID``, ``timeout``) into a KeyboardInterrupt in the parent
  (mer_lib.cli), so a terminated run unwinds exactly as an interrupted one.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

from mer_lib.errors import check_number

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def check_workers(workers: int | None) -> None:
    """MerError unless `workers` is None (all cores) or a positive integer."""
    if workers is not None:
        check_number("workers", workers, integer=True, low=1)


def worker_count(workers: int | None, jobs: int) -> int:
    """How many processes to start for `jobs` items: `workers` (None: every core), at most one per job."""
    check_workers(workers)
    return max(1, min(workers or os.cpu_count() or 1, jobs))


def _die_with_parent(parent: int) -> None:
    """Linux: have the kernel send this process SIGTERM when its parent dies; exit if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(1)


def _start_worker(parent: int, initializer: Callable[[], None] | None) -> None:
    """Pool initializer: leave Ctrl-C to the parent, end on SIGTERM and with the parent, then `initializer`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the parent's handler
    _die_with_parent(parent)
    if initializer is not None:
        initializer()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now and cancel the work not started (finished work is the caller's)."""
    processes = list((pool._processes or {}).values())  # no public handle on the workers before Python 3.14
    for process in processes:
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for process in processes:
        process.join()


@contextlib.contextmanager
def process_pool(workers: int, initializer: Callable[[], None] | None = None) -> Iterator[ProcessPoolExecutor]:
    """A ProcessPoolExecutor of `workers` processes whose workers end with the block on any exception.

    Leaving the block normally waits for the submitted work, as the standard executor does.
    """
    pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(os.getpid(), initializer))
    try:
        yield pool
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
