"""Independent CPU-bound jobs of one stage run at once in worker processes, or in this process.

Spawned, not forked: a stage process has MLflow's threads (and may hold their locks), which a
fork would copy mid-state. A spawned worker imports what its job needs once (about 3 CPU-s for
the train stage's modules), so a pool pays off for jobs of tens of seconds, not for small data.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from steps.stage.errors import StageError


class InProcess(Executor):
    """An Executor that runs each job at once, in this process, when it is submitted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return done


@contextmanager
def pool(workers: int) -> Iterator[Executor]:
    """`workers` spawned processes (jobs and their results must pickle), or this process (1).
    A worker that dies (killed, out of memory) is a StageError saying so, in one line."""
    if workers <= 1:
        yield InProcess()
        return
    try:
        with ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        ) as started:
            yield started
    except BrokenProcessPool:
        raise StageError(
            f"a worker process died before its job was done (killed, or out of memory with"
            f" {workers} jobs at once): free memory or CPUs and run the stage again"
        ) from None
