"""Flow ``defect-detection``: ingest -> quality -> label -> augment -> synth -> train -> evaluate -> explain ->
compress -> report.

Wiring only: each stage is a task in ``tasks/<stage>/`` that takes its own config section and the records of the
stages it builds on (paths and small summaries), and returns its own record. ``flows/lifecycle.py`` supplies the
frame: the first stage that reports a problem with the user's data ends the body, the report is always written,
and the run ends Completed or Failed with that one sentence (docs/architecture.md, "Flows").
"""

from __future__ import annotations

from functools import partial

from prefect import flow
from prefect.states import State

from flows.config import DefectConfig
from flows.lifecycle import flow_run
from tasks.augment.images import augment_images_task
from tasks.compress.images import compress_images_task
from tasks.evaluate.images import evaluate_images_task
from tasks.explain.images import explain_images_task
from tasks.ingest.images import ingest_images_task
from tasks.label.images import label_images_task
from tasks.quality.images import quality_images_task
from tasks.report.images import report_images_task
from tasks.synth.images import synth_images_task
from tasks.synth.usefulness_images import synth_usefulness_images_task
from tasks.train.images import train_images_task

FLOW_NAME = "defect-detection"
#: The cached stages in order: ``--refresh STAGE`` recomputes that stage and every one after it (the synthetic-data
#: usefulness experiment trains arms, so it follows train and evaluate).
STAGES = (
    "ingest",
    "quality",
    "label",
    "augment",
    "synth",
    "train",
    "evaluate",
    "synth-usefulness",
    "explain",
    "compress",
)


@flow(name=FLOW_NAME, validate_parameters=True)
def defect_detection(
    config: DefectConfig = DefectConfig(),
    refresh: list[str] | None = None,
    resume: bool = False,
) -> State:
    """Train and evaluate a defect classifier on inspection images; returns the run directory in the state."""
    report = partial(report_images_task, cfg=config.report, profile=config.profile, seed=config.seed)
    with flow_run(FLOW_NAME, config, refresh, STAGES, resume, report) as run:
        ingest = run.stage("ingest", ingest_images_task, cfg=config.ingest)
        quality = run.stage("quality", quality_images_task, cfg=config.quality, ingest=ingest, runner=config.runner)
        label = run.stage("label", label_images_task, cfg=config.label, ingest=ingest, quality=quality)
        augment = run.stage(
            "augment", augment_images_task, cfg=config.augment, label=label, image_size=config.train.image_size
        )
        synth = run.stage("synth", synth_images_task, cfg=config.synth, label=label) if config.synth.enabled else None
        train = run.stage("train", train_images_task, cfg=config.train, label=label, augment=augment, synth=synth)
        evaluate = run.stage("evaluate", evaluate_images_task, cfg=config.evaluate, label=label, train=train)
        if synth is not None:
            run.stage(
                "synth-usefulness",
                synth_usefulness_images_task,
                cfg=config.synth,
                label=label,
                augment=augment,
                synth=synth,
                train=train,
                evaluate=evaluate,
            )
        if config.explain.enabled:
            run.stage("explain", explain_images_task, cfg=config.explain, label=label, train=train, evaluate=evaluate)
        if config.compress.enabled:
            run.stage(
                "compress", compress_images_task, cfg=config.compress, label=label, train=train, evaluate=evaluate
            )
    return run.state
