"""Flow ``defect-detection``: ingest -> quality -> label -> augment -> train -> evaluate -> report.

Wiring only: each stage is a task in ``tasks/`` that takes its config section and the previous stages' small
records (paths and summaries) and returns one. A stage that finds a problem with the user's data returns an
error instead of raising; the flow then still writes the report (with what was done so far) and ends Failed
with that one sentence.
"""

from __future__ import annotations

import time

from prefect import flow, runtime
from prefect.states import Completed, Failed, State

from flows.config import DefectConfig, config_to_yaml
from tasks.augment.images import augment_images_task
from tasks.cache import StageResult
from tasks.evaluate.images import evaluate_images_task
from tasks.ingest.images import ingest_images_task
from tasks.label.images import label_images_task
from tasks.quality.images import quality_images_task
from tasks.report.images import STAGES, report_images_task
from tasks.rundir import RunContext, attach_run_log, data_root, detach_run_log, open_run_dir
from tasks.train.images import train_images_task

FLOW_NAME = "defect-detection"


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


@flow(name=FLOW_NAME, validate_parameters=True)
def defect_detection(
    config: DefectConfig = DefectConfig(),
    refresh: list[str] | None = None,
    resume: bool = False,
) -> State:
    """Train and evaluate a defect classifier on inspection images; returns the run directory in the state."""
    start = time.perf_counter()
    run_name = runtime.flow_run.get_name() or "local"
    run_dir, resumed = open_run_dir(data_root(), FLOW_NAME, run_name, reuse=resume)
    (run_dir / "config.yaml").write_text(config_to_yaml(config))
    ctx = RunContext(
        flow=FLOW_NAME,
        data_root=str(data_root()),
        run_dir=str(run_dir),
        seed=config.seed,
        refresh=expand_refresh(refresh, STAGES),
        resumed=resumed,
    )
    handler = attach_run_log(run_dir)
    stages: dict[str, StageResult] = {}
    error: str | None = None
    try:
        stages["ingest"] = ingest_images_task(config.ingest, ctx)
        if not (error := stages["ingest"].error):
            stages["quality"] = quality_images_task(config.quality, stages["ingest"], ctx)
        if not error and not (error := stages["quality"].error):
            stages["label"] = label_images_task(config.label, stages["ingest"], stages["quality"], ctx)
        if not error and not (error := stages["label"].error):
            stages["augment"] = augment_images_task(config.augment, stages["label"], config.train.image_size, ctx)
            stages["train"] = train_images_task(config.train, stages["label"], stages["augment"], config.augment, ctx)
            error = stages["train"].error
        if not error:
            stages["evaluate"] = evaluate_images_task(config.evaluate, stages["label"], stages["train"], ctx)
            error = stages["evaluate"].error
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        report_images_task(config, ctx, stages, time.perf_counter() - start, error)
        detach_run_log(handler)
        raise
    report_images_task(config, ctx, stages, time.perf_counter() - start, error)
    detach_run_log(handler)
    if error:
        return Failed(message=error, data=str(run_dir))
    return Completed(message=str(run_dir), data=str(run_dir))
