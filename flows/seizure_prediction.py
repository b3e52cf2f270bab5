"""Flow ``seizure-prediction``: ingest -> label -> augment -> synth -> train (detection, prediction) -> evaluate ->
explain -> compress -> report.

Wiring only, like ``defect-detection``. Detection and prediction are the flow's two tasks
(``task=detection|prediction|both``); prediction is skipped with a stated reason when the data cannot support it
(no leading seizure with SOP + SPH of recording before it), and detection still runs. The EEG GAN serves detection
only (tasks/synth/eeg.py says why prediction trains on real windows only).
"""

from __future__ import annotations

from functools import partial

from prefect import flow
from prefect.states import State

from flows.config import SeizureConfig
from flows.lifecycle import flow_run
from tasks.augment.eeg import augment_eeg_task
from tasks.compress.eeg import compress_eeg_task
from tasks.evaluate.eeg import evaluate_eeg_task
from tasks.explain.eeg import explain_eeg_task
from tasks.ingest.eeg import ingest_eeg_task
from tasks.label.eeg import label_eeg_task
from tasks.report.eeg import report_eeg_task
from tasks.synth.eeg import synth_eeg_task
from tasks.synth.usefulness_eeg import synth_usefulness_eeg_task
from tasks.train.eeg import train_detection_task, train_prediction_task

FLOW_NAME = "seizure-prediction"
#: The cached stages in order: ``--refresh STAGE`` recomputes that stage and every one after it (the synthetic-data
#: usefulness experiment trains arms, so it follows train and evaluate).
STAGES = ("ingest", "label", "augment", "synth", "train", "evaluate", "synth-usefulness", "explain", "compress")


@flow(name=FLOW_NAME, validate_parameters=True)
def seizure_prediction(
    config: SeizureConfig = SeizureConfig(),
    refresh: list[str] | None = None,
    resume: bool = False,
) -> State:
    """Detect and predict seizures in EEG recordings; returns the run directory in the state."""
    detect, predict = config.task in ("detection", "both"), config.task in ("prediction", "both")
    report = partial(report_eeg_task, cfg=config.report, profile=config.profile, seed=config.seed, task=config.task)
    with flow_run(FLOW_NAME, config, refresh, STAGES, resume, report) as run:
        ingest = run.stage("ingest", ingest_eeg_task, cfg=config.ingest, runner=config.runner)
        label = run.stage("label", label_eeg_task, cfg=config.label, ingest=ingest)
        augment = run.stage("augment", augment_eeg_task, cfg=config.augment, label=label, ingest=ingest)
        synth = detection = prediction = None
        if config.synth.enabled and detect:
            synth = run.stage(
                "synth", synth_eeg_task, cfg=config.synth, label=label, ingest=ingest, normalize=config.train.normalize
            )
        if detect:
            detection = run.stage(
                "train-detection",
                train_detection_task,
                cfg=config.train,
                label=label,
                ingest=ingest,
                augment=augment,
                synth=synth,
            )
        if predict and label.summary["prediction"]["feasible"]:
            prediction = run.stage(
                "train-prediction", train_prediction_task, cfg=config.train, label=label, ingest=ingest, augment=augment
            )
        evaluate = run.stage(
            "evaluate",
            evaluate_eeg_task,
            cfg=config.evaluate,
            ingest=ingest,
            label=label,
            train_detection=detection,
            train_prediction=prediction,
        )
        if synth is not None:
            run.stage(
                "synth-usefulness",
                synth_usefulness_eeg_task,
                cfg=config.synth,
                label=label,
                ingest=ingest,
                augment=augment,
                synth=synth,
                train=detection,
                evaluate=evaluate,
            )
        if detection is not None and config.explain.enabled:
            run.stage(
                "explain",
                explain_eeg_task,
                cfg=config.explain,
                ingest=ingest,
                train_detection=detection,
                evaluate=evaluate,
            )
        if config.compress.enabled:
            run.stage(
                "compress",
                compress_eeg_task,
                cfg=config.compress,
                ingest=ingest,
                label=label,
                evaluate=evaluate,
                train_detection=detection,
                train_prediction=prediction,
                filters=config.ingest.model_dump(include={"l_freq", "h_freq", "notch"}),
            )
    return run.state
