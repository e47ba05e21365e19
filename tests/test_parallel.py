"""mer_lib.parallel's `produced`: a generator run in a worker process, its items handed back as they come."""
import multiprocessing
import os
import signal
import threading

import pytest

from mer_lib import parallel
from mer_lib.errors import MerError


def count(n: int, fail: int | None = None, error: type = MerError):
    """0 .. n-1, failing with `error` before `fail`."""
    for i in range(n):
        if i == fail:
            raise error(f"broken at {i}")
        yield i


def die(n: int):
    yield from range(n)
    os._exit(3)


def test_produced_gives_the_worker_s_items_in_order():
    with parallel.produced(count, 3 * parallel.PRODUCED_CHUNK + 5) as produced:  # several chunks and a partial one
        items = list(produced)
    assert items == list(range(3 * parallel.PRODUCED_CHUNK + 5))
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("error, message", [(MerError, "^broken at 40$"), (ValueError, "^ValueError: broken at 40$")])
def test_produced_raises_the_worker_s_failure_after_the_items_before_it(error, message):
    got = []
    with pytest.raises(MerError, match=message), parallel.produced(count, 100, 40, error) as items:
        for item in items:
            got.append(item)
    assert got == list(range(40))


def test_produced_says_when_the_worker_died():
    with pytest.raises(MerError, match=r"producing die ended without a word \(exit code 3\)"):
        with parallel.produced(die, 5) as items:
            list(items)


def test_leaving_produced_early_ends_the_worker():
    with parallel.produced(count, 10**9) as items:
        assert len(multiprocessing.active_children()) == 1  # started on entry, before the first item
        assert next(items) == 0
    assert multiprocessing.active_children() == []


def test_produced_in_a_spawned_worker(monkeypatch):
    """Where processes are spawned (macOS, Windows) the worker imports what it runs afresh: the same items."""
    monkeypatch.setattr(parallel.sys, "platform", "darwin")
    with parallel.produced(count, 40) as items:
        assert list(items) == list(range(40))


def test_signals_deferred_delivers_ctrl_c_after_the_block():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with parallel.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # Python would run the handler here
            reached.append(True)
    assert reached == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    done = []  # elsewhere than the main thread the block runs unchanged (signal.signal would refuse)
    worker = threading.Thread(target=lambda: done.append(parallel.signals_deferred().__enter__() is None))
    worker.start()
    worker.join()
    assert done == [True]
