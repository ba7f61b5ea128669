"""A stage's independent jobs: at once in spawned worker processes, or in this process."""

from __future__ import annotations

import os

import pytest

from steps.stage import workers
from steps.stage.errors import StageError


def test_one_worker_is_this_process_running_each_job_when_submitted():
    ran = []
    with workers.pool(1) as pool:
        assert isinstance(pool, workers.InProcess)
        done = pool.submit(lambda x, y=0: ran.append(x) or x + y, 2, y=3)
        assert ran == [2]  # already run, before anyone waits
    assert done.result() == 5


def test_a_job_that_fails_in_this_process_raises_when_submitted():
    with workers.pool(1) as pool, pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0)


@pytest.mark.integration
def test_two_workers_run_jobs_in_other_processes():
    with workers.pool(2) as pool:
        jobs = [pool.submit(os.getpid) for _ in range(4)]
        pids = {job.result() for job in jobs}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


@pytest.mark.integration
def test_a_worker_that_dies_is_one_error_line():
    with pytest.raises(StageError) as died, workers.pool(2) as pool:
        pool.submit(os._exit, 1).result()
    assert str(died.value).startswith("a worker process died before its job was done")
    assert "\n" not in str(died.value)
