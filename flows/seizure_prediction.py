"""Flow ``seizure-prediction``: ingest -> label -> augment -> synth -> train (detection, prediction) -> evaluate ->
report.

Wiring only, like ``defect-detection``: stages hand each other paths and small records. Detection and prediction
are the flow's two tasks (``task=detection|prediction|both``); prediction is skipped with a stated reason when the
data cannot support it (no leading seizure with SOP + SPH of recording before it), and detection still runs.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.states import State

from flows.config import SeizureConfig
from flows.lifecycle import begin_run, end_run
from tasks.augment.eeg import augment_eeg_task
from tasks.cache import StageResult
from tasks.evaluate.eeg import evaluate_eeg_task
from tasks.evaluate.synthetic_eeg import evaluate_synthetic_eeg_task
from tasks.ingest.eeg import ingest_eeg_task
from tasks.label.eeg import label_eeg_task
from tasks.report.eeg import report_eeg_task
from tasks.synth.eeg import synth_eeg_task
from tasks.train.eeg import train_detection_task, train_prediction_task

FLOW_NAME = "seizure-prediction"
STAGES = ("ingest", "label", "augment", "synth", "train", "evaluate")


@flow(name=FLOW_NAME, validate_parameters=True)
def seizure_prediction(
    config: SeizureConfig = SeizureConfig(),
    refresh: list[str] | None = None,
    resume: bool = False,
) -> State:
    """Detect and predict seizures in EEG recordings; returns the run directory in the state."""
    start = time.perf_counter()
    run = begin_run(FLOW_NAME, config, refresh, STAGES, resume)
    ctx = run.ctx
    stages: dict[str, StageResult] = {}
    error: str | None = None
    try:
        stages["ingest"] = ingest_eeg_task(config.ingest, ctx, config.runner)
        if not (error := stages["ingest"].error):
            stages["label"] = label_eeg_task(config.label, stages["ingest"], ctx)
            error = stages["label"].error
        if not error:
            stages["augment"] = augment_eeg_task(config.augment, stages["label"], stages["ingest"], ctx)
            detection = prediction = None
            # the EEG GAN serves detection (see tasks/synth/eeg.py for why prediction trains on real windows only)
            if config.synth.enabled and config.task in ("detection", "both"):
                stages["synth"] = synth_eeg_task(config.synth, config.train, stages["label"], stages["ingest"], ctx)
                error = stages["synth"].error
        if not error and "augment" in stages:
            if config.task in ("detection", "both"):
                detection = stages["train-detection"] = train_detection_task(
                    config.train,
                    stages["label"],
                    stages["ingest"],
                    config.augment,
                    ctx,
                    stages.get("synth"),
                    config.synth,
                )
            if config.task in ("prediction", "both") and stages["label"].summary["prediction"]["feasible"]:
                prediction = stages["train-prediction"] = train_prediction_task(
                    config.train, stages["label"], stages["ingest"], config.augment, ctx
                )
            stages["evaluate"] = evaluate_eeg_task(
                config.evaluate, config.label, stages["ingest"], stages["label"], detection, prediction, ctx
            )
            error = stages["evaluate"].error
        if not error and "synth" in stages:
            stages["evaluate-synthetic"] = evaluate_synthetic_eeg_task(
                config.synth,
                config.train,
                config.augment,
                config.label,
                config.evaluate,
                stages["label"],
                stages["ingest"],
                stages["synth"],
                ctx,
            )
            error = stages["evaluate-synthetic"].error
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        report_eeg_task(config, ctx, stages, time.perf_counter() - start, error)
        end_run(run, error)
        raise
    metrics = report_eeg_task(config, ctx, stages, time.perf_counter() - start, error)
    return end_run(run, error or metrics.get("error"))
