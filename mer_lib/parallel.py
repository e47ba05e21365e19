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

`produced` runs one generator in a worker process of the same kind and hands its items back as they
come (the timeline follows a recording's faces that way, beside its audio and models). `signals_deferred`
holds Ctrl-C back while C code calls into Python, where an exception would be dropped.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from mer_lib.errors import MerError, check_number

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


@contextlib.contextmanager
def signals_deferred(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the block runs and deliver them after it, to their usual handlers.

    For C code that calls back into Python (openSMILE's sink): an exception raised in a ctypes callback is
    printed and dropped, so a Ctrl-C whose KeyboardInterrupt landed there was lost, and the window's features
    with it. Only the main thread runs signal handlers; elsewhere, and where a handler was installed outside
    Python, the block runs unchanged.
    """
    previous = {signum: signal.getsignal(signum) for signum in signums}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield
        return
    caught = []
    for signum in signums:
        signal.signal(signum, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


PRODUCED_CHUNK = 32  # items a `produced` worker sends at once (one pickle and pipe write each)


def _produce(parent: int, make: Callable[..., Iterable], args: tuple, send) -> None:
    """A `produced` worker: the items of `make(*args)` sent in lists of PRODUCED_CHUNK, then None; a failure is
    sent after the items before it, as its one-line reason (a str). The pipe holds little, so the worker waits
    while its consumer is behind."""
    _start_worker(parent, None)
    chunk = []
    try:
        for item in make(*args):
            chunk.append(item)
            if len(chunk) == PRODUCED_CHUNK:
                send.send(chunk)
                chunk = []
        send.send(chunk)
        send.send(None)
    except Exception as err:  # noqa: BLE001 (raised by the consumer, in one line)
        send.send(chunk)
        send.send(str(err) if isinstance(err, MerError) else f"{type(err).__name__}: {err}")
    finally:
        send.close()


@contextlib.contextmanager
def produced(make: Callable[..., Iterable], *args) -> Iterator[Iterator]:
    """The items of the generator `make(*args)`, produced in a worker process of their own while the block
    consumes them.

    The worker starts on entry, before the caller starts threads of its own (a process forked while
    another thread holds a library's lock could wait for it forever), and is terminated on exit if it
    still runs (Ctrl-C, an error, a consumer that left early). Its failures are raised by the iterator
    as MerError. On Linux the worker is forked (it starts in milliseconds, with the modules already
    loaded); elsewhere it is spawned, and `make` and `args` must be picklable.
    """
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(target=_produce, args=(os.getpid(), make, args, send), daemon=True)
    worker.start()
    send.close()
    try:
        yield _received(receive, worker, make.__name__)
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join()
        receive.close()


def _received(receive, worker, name: str) -> Iterator:
    """The items a `produced` worker sends, until its end; its failure, or its death, as MerError."""
    while True:
        try:
            chunk = receive.recv()
        except EOFError:
            worker.join()
            raise MerError(f"the worker process producing {name} ended without a word "
                           f"(exit code {worker.exitcode})") from None
        if chunk is None:
            return
        if isinstance(chunk, str):
            raise MerError(chunk)
        yield from chunk
