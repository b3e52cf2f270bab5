"""Flow ``defect-detection``: ingest -> quality -> label -> augment -> synth -> train -> evaluate -> report.

Wiring only: each stage is a task in ``tasks/`` that takes its config section and the previous stages' small
records (paths and summaries) and returns one. A stage that finds a problem with the user's data returns an
error instead of raising; the flow then still writes the report (with what was done so far) and ends Failed
with that one sentence.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.states import State

from flows.config import DefectConfig
from flows.lifecycle import begin_run, end_run
from tasks.augment.images import augment_images_task
from tasks.cache import StageResult
from tasks.evaluate.images import evaluate_images_task
from tasks.evaluate.synthetic_images import evaluate_synthetic_images_task
from tasks.ingest.images import ingest_images_task
from tasks.label.images import label_images_task
from tasks.quality.images import quality_images_task
from tasks.report.images import STAGES, report_images_task
from tasks.synth.images import synth_images_task
from tasks.train.images import train_images_task

FLOW_NAME = "defect-detection"


@flow(name=FLOW_NAME, validate_parameters=True)
def defect_detection(
    config: DefectConfig = DefectConfig(),
    refresh: list[str] | None = None,
    resume: bool = False,
) -> State:
    """Train and evaluate a defect classifier on inspection images; returns the run directory in the state."""
    start = time.perf_counter()
    run = begin_run(FLOW_NAME, config, refresh, STAGES, resume)
    ctx = run.ctx
    stages: dict[str, StageResult] = {}
    error: str | None = None
    try:
        stages["ingest"] = ingest_images_task(config.ingest, ctx)
        if not (error := stages["ingest"].error):
            stages["quality"] = quality_images_task(config.quality, stages["ingest"], ctx, config.runner)
        if not error and not (error := stages["quality"].error):
            stages["label"] = label_images_task(config.label, stages["ingest"], stages["quality"], ctx)
        if not error and not (error := stages["label"].error):
            stages["augment"] = augment_images_task(config.augment, stages["label"], config.train.image_size, ctx)
        if not error and config.synth.enabled:
            stages["synth"] = synth_images_task(config.synth, stages["label"], ctx)
            error = stages["synth"].error
        if not error and "augment" in stages:
            stages["train"] = train_images_task(
                config.train, stages["label"], stages["augment"], config.augment, ctx, stages.get("synth"), config.synth
            )
            error = stages["train"].error
        if not error:
            stages["evaluate"] = evaluate_images_task(config.evaluate, stages["label"], stages["train"], ctx)
            error = stages["evaluate"].error
        if not error and "synth" in stages:
            stages["evaluate-synthetic"] = evaluate_synthetic_images_task(
                config.synth,
                config.train,
                config.augment,
                config.evaluate,
                stages["label"],
                stages["augment"],
                stages["synth"],
                ctx,
            )
            error = stages["evaluate-synthetic"].error
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        report_images_task(config, ctx, stages, time.perf_counter() - start, error)
        end_run(run, error)
        raise
    metrics = report_images_task(config, ctx, stages, time.perf_counter() - start, error)
    return end_run(run, error or metrics.get("error"))
