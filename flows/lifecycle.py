"""What every flow does around its stages: open the run directory, stop at the first failed stage, always write the
report, and end in a clear state.

Kept out of the flow files so each flow body reads like the design card — one ``run.stage(...)`` call per stage, in
order — with no error bookkeeping inline::

    with flow_run(FLOW_NAME, config, refresh, STAGES, resume, report=...) as run:
        ingest = run.stage("ingest", ingest_images_task, cfg=config.ingest)
        quality = run.stage("quality", quality_images_task, cfg=config.quality, ingest=ingest)
        ...
    return run.state

A stage that finds a problem with the user's data returns a record with ``error`` set instead of raising;
``run.stage`` then leaves the ``with`` block, the report is written with what was done so far, and the run ends
Failed with that one sentence. An exception (a bug, a cancellation) also gets its report, then propagates, so
Prefect records the crash with its traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from logging import Handler
from pathlib import Path
from typing import Any, Protocol

from prefect import runtime
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows.config import config_to_yaml
from flows.prefect_api import running_server
from tasks.cache import StageResult
from tasks.rundir import RunContext, attach_run_log, data_root, detach_run_log, open_run_dir


class ReportFn(Protocol):
    """A flow's report task with its own config already bound: writes metrics.json and report.html, returns the
    metrics (with ``error`` set when the report itself found the run unusable)."""

    def __call__(
        self, *, ctx: RunContext, stages: dict[str, StageResult], elapsed_s: float, error: str | None
    ) -> dict[str, Any]: ...


def expand_refresh(refresh: list[str] | None, stages: tuple[str, ...]) -> tuple[str, ...]:
    """``--refresh`` alone means every stage; refreshing a stage also refreshes every stage after it."""
    if refresh is None:
        return ()
    if not refresh or "all" in refresh:
        return ("all",)
    unknown = sorted(set(refresh) - set(stages))
    if unknown:
        raise ValueError(f"--refresh: unknown stage(s) {', '.join(unknown)}; stages are {', '.join(stages)}")
    first = min(stages.index(s) for s in refresh)
    return stages[first:]


class _StageFailed(Exception):
    """Raised by :meth:`FlowRun.stage` to leave the flow body at the first stage that returned an error."""


@dataclass
class FlowRun:
    """One flow run in progress: its context, the records of the stages done so far, and how it ended."""

    ctx: RunContext
    log_handler: Handler
    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, StageResult] = field(default_factory=dict)
    error: str | None = None
    state: State | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.ctx.run_dir)

    def stage(self, name: str, task_fn: Callable[..., StageResult], /, **kwargs: Any) -> StageResult:
        """Run one stage task with the run context and the given keyword arguments; keep its record under ``name``.

        A record with an error ends the flow body here (the report and the Failed state follow).
        """
        result = task_fn(ctx=self.ctx, **kwargs)
        self.stages[name] = result
        if result.error:
            self.error = result.error
            raise _StageFailed(result.error)
        return result

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


def begin_run(
    flow_name: str, config: BaseModel, refresh: list[str] | None, stages: tuple[str, ...], resume: bool
) -> FlowRun:
    """Create (or, for a named resumed run, reuse) the run directory, write config.yaml and start run.log."""
    run_name = runtime.flow_run.get_name() or "local"
    run_dir, resumed = open_run_dir(data_root(), flow_name, run_name, reuse=resume)
    (run_dir / "config.yaml").write_text(config_to_yaml(config))
    ctx = RunContext(
        flow=flow_name,
        data_root=str(data_root()),
        run_dir=str(run_dir),
        seed=config.seed,
        refresh=expand_refresh(refresh, stages),
        resumed=resumed,
        runs_url=(running_server(data_root()) or {}).get("runs_url"),
    )
    return FlowRun(ctx, attach_run_log(run_dir))


def end_run(run: FlowRun, error: str | None) -> State:
    """Failed with the one-sentence reason (no traceback for data problems), else Completed; both carry the dir."""
    detach_run_log(run.log_handler)
    if error:
        return Failed(message=error, data=str(run.run_dir))
    return Completed(message=str(run.run_dir), data=str(run.run_dir))


@contextmanager
def flow_run(
    flow_name: str,
    config: BaseModel,
    refresh: list[str] | None,
    stages: tuple[str, ...],
    resume: bool,
    report: ReportFn,
) -> Iterator[FlowRun]:
    """The frame around a flow body: the report is always written and ``run.state`` always set (see module doc)."""
    run = begin_run(flow_name, config, refresh, stages, resume)
    try:
        yield run
    except _StageFailed:
        pass  # run.error holds the stage's sentence; the report below says it
    except BaseException as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        report(ctx=run.ctx, stages=run.stages, elapsed_s=run.elapsed_s(), error=run.error)
        run.state = end_run(run, run.error)
        raise
    metrics = report(ctx=run.ctx, stages=run.stages, elapsed_s=run.elapsed_s(), error=run.error)
    run.state = end_run(run, run.error or metrics.get("error"))
