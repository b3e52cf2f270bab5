"""Flow ``sweep``: one run of a flow per configuration × seed, each a subflow run sharing the stage cache.

Wiring only: the grid and configs come from ``flows/commands/sweep.py``, the summary from
``flows/commands/sweep_report.py``. Because every run keys
its stages on content, a grid over ``train.*`` recomputes only train and what follows; ingest to augment are
reused from the first run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import State
from pydantic import BaseModel

from flows.commands.sweep_report import SELECT_KEY, sweep_rows, write_sweep
from flows.defect_detection import defect_detection
from flows.lifecycle import run_dir_of
from flows.seizure_prediction import seizure_prediction

FLOWS = {"defect": defect_detection, "eeg": seizure_prediction}


@flow(name="sweep", validate_parameters=False)
def sweep(
    flow_key: str,
    configs: list[BaseModel],
    points: list[dict[str, Any]],
    seeds: list[int],
    out_dir: str,
    command: str,
) -> list[str | None]:
    """Run ``FLOWS[flow_key]`` once per config (grid points × seeds, in that order), then write ``sweep.csv``,
    ``sweep.html`` and the summary table artifact into ``out_dir``; returns each run's directory (None: none).

    A run that fails does not stop the sweep: its row in ``sweep.csv`` says so.
    """
    logger = get_run_logger()
    run_dirs: list[str | None] = []
    for i, config in enumerate(configs, 1):
        logger.info("sweep: run %d/%d (seed %s)", i, len(configs), config.seed)
        state: State = FLOWS[flow_key](config=config, return_state=True)
        finished = state.is_completed() or state.is_failed()
        run_dir = run_dir_of(state.result(raise_on_failure=False)) if finished else None
        run_dirs.append(str(run_dir) if run_dir else None)
    rows = sweep_rows(points, seeds, run_dirs)
    table = write_sweep(Path(out_dir), flow_key, rows, points, SELECT_KEY[flow_key], command)
    create_table_artifact(table=table, key=f"sweep-{flow_key}", description=f"vigil sweep: {out_dir}")
    return run_dirs
