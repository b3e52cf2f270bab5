"""What every flow does before its first stage and after its last: open the run directory, end in a clear state.

Kept out of the flow files so each flow body reads like the design card: its stages, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from logging import Handler
from pathlib import Path

from prefect import runtime
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows.config import config_to_yaml
from flows.server import running_server
from tasks.rundir import RunContext, attach_run_log, data_root, detach_run_log, open_run_dir


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


@dataclass
class RunStart:
    ctx: RunContext
    log_handler: Handler

    @property
    def run_dir(self) -> Path:
        return Path(self.ctx.run_dir)


def begin_run(
    flow_name: str, config: BaseModel, refresh: list[str] | None, stages: tuple[str, ...], resume: bool
) -> RunStart:
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
    return RunStart(ctx, attach_run_log(run_dir))


def end_run(start: RunStart, error: str | None) -> State:
    """Failed with the one-sentence reason (no traceback for data problems), else Completed; both carry the dir."""
    detach_run_log(start.log_handler)
    if error:
        return Failed(message=error, data=str(start.run_dir))
    return Completed(message=str(start.run_dir), data=str(start.run_dir))
