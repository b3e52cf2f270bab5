"""Choose the Prefect task runner that a flow run fans its per-file work out on (``runner`` config section).

A task runner is a *flow* option in Prefect 3, but vigil's flows take their whole configuration as one
parameter, so the runner can only be chosen once that parameter is known: at call time. The caller builds it
from ``config.runner`` and passes it through ``Flow.with_options``::

    from tasks.runner import task_runner

    flow_fn = defect_detection.with_options(task_runner=task_runner(config.runner))
    state = flow_fn(config=config, return_state=True)

Prefect duplicates the runner for each flow run, enters it when the run starts and exits it when the run ends,
so a temporary Dask ``LocalCluster`` lives exactly as long as the run. Stage tasks that the flow calls directly
keep running in the flow's own process; only work a task submits with ``.map()`` / ``.submit()`` (for example
:func:`tasks.quality.fanout.check_images`) goes to the runner. The Dask cluster is created lazily, on the first
submission, so choosing ``dask`` costs nothing for a run that submits nothing (for example a cached stage).
"""

from __future__ import annotations

import os

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.config import RunnerConfig

#: Worker processes of the temporary LocalCluster: one single-threaded process per core of a small machine.
#: Processes, not threads, because OpenCV decoding and numpy checks hold the GIL for part of their time.
LOCAL_CLUSTER_KWARGS: dict[str, object] = {"n_workers": 2, "threads_per_worker": 1, "processes": True}


def default_thread_workers() -> int:
    """Thread count for the local runner: ``concurrent.futures``' own default, ``min(32, cores + 4)``.

    Prefect's ``ThreadPoolTaskRunner()`` is unbounded unless ``PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS`` is
    set, which would start one thread per mapped file (2,624 for ELPV); a bound keeps memory and the Prefect
    API's load flat while still overlapping file I/O.
    """
    return min(32, (os.cpu_count() or 1) + 4)


def task_runner(cfg: RunnerConfig, *, max_workers: int | None = None) -> TaskRunner:
    """Build the task runner that ``cfg`` names.

    Args:
        cfg: ``kind="local"``: Prefect's ``ThreadPoolTaskRunner`` in the flow's process. ``kind="dask"``:
            ``prefect_dask.DaskTaskRunner``, connected to ``cfg.dask_address`` when set (an existing
            ``dask scheduler``; its workers must be able to import vigil and read the input paths), else a
            temporary ``LocalCluster`` of :data:`LOCAL_CLUSTER_KWARGS` that is closed when the flow run ends.
        max_workers: Threads of the local runner; ``None`` uses :func:`default_thread_workers`. Ignored for Dask.

    Returns:
        A fresh, not yet started task runner, for ``Flow.with_options(task_runner=...)``.
    """
    if cfg.kind == "local":
        return ThreadPoolTaskRunner(max_workers=max_workers or default_thread_workers())
    # imported here: prefect-dask pulls in distributed (~1 s), which local runs never need
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(cluster_kwargs=dict(LOCAL_CLUSTER_KWARGS))
