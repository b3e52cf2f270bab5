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
Prefect records the crash with its traceback; a full disk is not a bug and ends Failed with one sentence naming the
folder. A run that may not start (an unusable run name, or resuming a run made with another config) is refused
before it touches any run directory: it ends Failed with that sentence and writes nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from logging import Handler
from pathlib import Path
from typing import Any, Protocol

import yaml
from prefect import runtime
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, ValidationError

from flows.config import config_to_yaml
from flows.prefect_api import running_server
from tasks.cache import DiskFullError, StageResult, disk_full_message, is_disk_full
from tasks.rundir import (
    RunContext,
    attach_run_log,
    data_root,
    detach_run_log,
    find_run_dir,
    open_run_dir,
    run_name_problem,
)


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


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_difference(run_dir: Path, config: BaseModel) -> str | None:
    """What differs between ``config`` and the one in ``run_dir/config.yaml`` (dotted keys), or None when equal.

    The saved YAML is read back into the flow's own config model, so a default added to the model since that run
    is filled in the same way on both sides.
    """
    try:
        saved = type(config).model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    except FileNotFoundError:
        return "it has no config.yaml"
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        return f"its config.yaml is not a valid config of this flow ({type(exc).__name__})"
    old, new = _flat(saved.model_dump(mode="json")), _flat(config.model_dump(mode="json"))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if not keys:
        return None
    if "ingest.path" in keys:
        return f"it was made with another data set ({old.get('ingest.path') or 'the default data set'})"
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    return f"it was made with another config ({', '.join(keys[:4])}{more} differ)"


def resume_problem(root: Path, flow_name: str, run_name: str, config: BaseModel) -> str | None:
    """Why a run named ``run_name`` may not start with ``resume`` (as ``vigil run --name`` does), or None.

    The name must be usable as it is (``tasks.rundir.run_name_problem``). An existing run of ``flow_name`` with
    exactly that name is resumed only when its resolved config equals ``config``: the same profile, data path,
    seed and every section value, as saved in its ``config.yaml``. Resuming continues that run's checkpoints and
    rewrites its report, so with any other setting it would replace a finished run by the results of another one.
    The ``vigil`` command checks this before it starts a Prefect server; :func:`begin_run` checks it again for
    runs started elsewhere (a deployment, the UI).
    """
    if problem := run_name_problem(run_name):
        return problem
    existing = find_run_dir(root, flow_name, run_name)
    if existing is None or (difference := config_difference(existing, config)) is None:
        return None
    return (
        f"run name {run_name!r} is taken by {existing}, and {difference}; choose another run name, "
        f"or resume that run with its own config (--config {existing / 'config.yaml'})"
    )


#: Prefix of the note a crashed flow adds to its exception: the run directory, which then holds the report.
RUN_DIR_NOTE = "vigil run directory: "


def run_dir_of(result: object) -> Path | None:
    """The run directory a flow returned: its state's result, or the note on the exception a crashed run raised."""
    if isinstance(result, BaseException):
        notes = [n for n in getattr(result, "__notes__", []) if n.startswith(RUN_DIR_NOTE)]
        return Path(notes[-1][len(RUN_DIR_NOTE) :]) if notes else None
    return Path(str(result)) if result else None


class _StageFailed(Exception):
    """Raised by :meth:`FlowRun.stage` to leave the flow body at the first stage that returned an error."""


@dataclass
class FlowRun:
    """One flow run in progress: its context, the records of the stages done so far, and how it ended."""

    ctx: RunContext
    log_handler: Handler | None  # None for a refused run, which never opened its run directory
    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, StageResult] = field(default_factory=dict)
    error: str | None = None
    state: State | None = None
    refused: bool = False
    current: str | None = None  # the stage running now, for the sentence of an interrupted run

    @property
    def run_dir(self) -> Path:
        return Path(self.ctx.run_dir)

    def stage(self, name: str, task_fn: Callable[..., StageResult], /, **kwargs: Any) -> StageResult:
        """Run one stage task with the run context and the given keyword arguments; keep its record under ``name``.

        A record with an error ends the flow body here (the report and the Failed state follow); a refused run
        ends it at its first stage, before any task runs.
        """
        if self.refused:
            raise _StageFailed(self.error)
        self.current = name
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
    """Create (or, for a named resumed run, reuse) the run directory, write config.yaml and start run.log.

    A run whose name is unusable, or that would resume a run made with another config (:func:`resume_problem`), is
    refused: the returned run has ``refused`` set and its one-sentence ``error``, and no folder is touched.
    """
    root = data_root()
    run_name = runtime.flow_run.get_name() or "local"
    refusal = resume_problem(root, flow_name, run_name, config) if resume else None
    run_dir, resumed = Path(), False
    if refusal is None:
        try:
            run_dir, resumed = open_run_dir(root, flow_name, run_name, reuse=resume)
            tmp = run_dir / f".config.yaml.{os.getpid()}.tmp"  # a rerun must never find half a config.yaml
            tmp.write_text(config_to_yaml(config))
            os.replace(tmp, run_dir / "config.yaml")
        except ValueError as exc:  # a name with no usable character (a UI-given name; the CLI refuses it earlier)
            refusal = str(exc)
        except OSError as exc:
            if not is_disk_full(exc, root):
                raise
            refusal = disk_full_message(root / "runs" / flow_name)
            if run_dir != Path() and not resumed:  # the folder this run just made holds nothing worth keeping
                shutil.rmtree(run_dir, ignore_errors=True)
            elif run_dir != Path():
                (run_dir / f".config.yaml.{os.getpid()}.tmp").unlink(missing_ok=True)
    ctx = RunContext(
        flow=flow_name,
        data_root=str(root),
        run_dir=str(run_dir) if refusal is None else "",
        seed=config.seed,
        refresh=expand_refresh(refresh, stages),
        resumed=resumed,
        runs_url=(running_server(root) or {}).get("runs_url"),
    )
    if refusal is not None:
        return FlowRun(ctx, None, error=refusal, refused=True)
    return FlowRun(ctx, attach_run_log(run_dir))


def end_run(run: FlowRun, error: str | None) -> State:
    """Failed with the one-sentence reason (no traceback for data problems), else Completed; both carry the dir
    (a refused run has none)."""
    if run.log_handler is not None:
        detach_run_log(run.log_handler)
    if error:
        return Failed(message=error, data=None if run.refused else str(run.run_dir))
    return Completed(message=str(run.run_dir), data=str(run.run_dir))


def _disk_full_sentence(exc: BaseException, folder: Path) -> str | None:
    """The one sentence for an exception that means a full disk under ``folder``, else None."""
    if isinstance(exc, DiskFullError):
        return str(exc)
    if not is_disk_full(exc, folder):
        return None
    filename = getattr(exc, "filename", None)
    return disk_full_message(Path(filename).parent if filename else folder)


def _crash_sentence(exc: BaseException, run: FlowRun) -> str:
    """The report's error for an exception: a signal (Prefect's ``TerminationSignal``, Ctrl-C) says what stopped the
    run and how to go on; anything else is named with its message."""
    signum = getattr(exc, "signal", getattr(exc, "signum", None))
    if isinstance(signum, int) or isinstance(exc, KeyboardInterrupt):
        name = signal.Signals(signum).name if isinstance(signum, int) else "SIGINT"
        where = f" during {run.current}" if run.current else ""
        return (
            f"stopped by {name}{where} (cancelled or killed); rerun with the same --name to go on from what was "
            "done (finished stages are cached, training resumes from its checkpoint)"
        )
    if api_lost(exc):
        where = f" during {run.current}" if run.current else ""
        return (
            f"the Prefect API stopped answering{where} ({type(exc).__name__}: {exc}); start it again (`vigil server`, "
            "or unset PREFECT_API_URL) and rerun with the same --name to go on from what was done"
        )
    return f"{type(exc).__name__}: {exc}"


def api_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a refused or dropped connection to the Prefect API."""
    import httpx

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _write_report(run: FlowRun, report: ReportFn) -> str | None:
    """Write the report; return the run's error, or the report's own (a full disk, a run found unusable)."""
    try:
        metrics = report(ctx=run.ctx, stages=run.stages, elapsed_s=run.elapsed_s(), error=run.error)
    except Exception as exc:
        if (sentence := _disk_full_sentence(exc, run.run_dir)) is None:
            raise
        return run.error or sentence
    return run.error or metrics.get("error")


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
        pass  # run.error holds the stage's sentence (or the refusal); the report below says it
    except BaseException as exc:
        sentence = None if run.refused else _disk_full_sentence(exc, run.run_dir)
        if sentence is None:
            run.error = _crash_sentence(exc, run)
            if not run.refused:
                report(ctx=run.ctx, stages=run.stages, elapsed_s=run.elapsed_s(), error=run.error)
            run.state = end_run(run, run.error)
            if not run.refused:  # the CLI still prints where the report of the crashed run is
                exc.add_note(f"{RUN_DIR_NOTE}{run.run_dir}")
            raise
        run.error = sentence
    run.state = end_run(run, run.error if run.refused else _write_report(run, report))
