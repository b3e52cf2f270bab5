"""The train stage for inspection images: fit the classifier on real (and, with synth on, synthetic) images.

A thin task over :func:`tasks.image_training.train_arm`, which the synth stage's usefulness experiment also uses,
so both train identically and share cache entries. Everything the stage needs from upstream comes from records:
the split table from the label stage, the augmentation pipeline's config from the augment stage, and which
synthetic rows to add (classes, loss weight) from the synth stage.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageResult, stage_key
from tasks.config import TrainConfig
from tasks.image_training import synthetic_selection, train_arm
from tasks.rundir import RunContext


@task(name="train", cache_policy=NO_CACHE)
def train_images_task(
    *,
    cfg: TrainConfig,
    ctx: RunContext,
    label: StageResult,
    augment: StageResult,
    synth: StageResult | None = None,
) -> StageResult:
    """Fit every candidate model (on real + synthetic images when the synth stage ran); cached, resumable.

    Each candidate is its own train-stage cache entry (:func:`tasks.image_training.train_arm` with the
    candidate's recipe), so adding a candidate never retrains the others. The evaluate stage chooses among them on
    validation.

    Args:
        cfg: The train section; ``candidate_names()`` says what to train, ``candidate_recipe(name)`` how.
        ctx: The run's context.
        label: The label stage's record.
        augment: The augment stage's record; the pipeline is rebuilt from its ``summary["config"]``.
        synth: The synth stage's record when synth is on; its ``summary["selection"]`` says which classes' samples
            are added and with what loss weight. ``None``: real images only.

    Returns:
        The first candidate's record, whose summary also lists every candidate under ``candidates`` (name ->
        ``key``, ``path``, ``recipe`` and its fit facts) with the ``select_metric``; with several candidates its key
        hashes all of theirs. The first failing candidate's record when one fails.
    """
    rows, rows_key = synthetic_selection(synth, label) if synth is not None else (None, None)
    results: dict[str, StageResult] = {}
    for name in cfg.candidate_names():
        result = train_arm(
            cfg=cfg.candidate_recipe(name),
            ctx=ctx,
            label=label,
            augment=augment,
            seed=ctx.seed,
            synthetic=rows,
            synthetic_key=rows_key,
            checkpoint_name=name if len(cfg.candidate_names()) > 1 else None,
        )
        if result.error:
            return result
        results[name] = result
    return candidates_record(results, cfg.select_metric)


def candidates_record(results: dict[str, StageResult], select_metric: str) -> StageResult:
    """One train record for the evaluate stage: the first candidate's, listing all of them (see the task)."""
    first = next(iter(results.values()))
    listing = {name: {"key": r.key, "path": r.path, **r.summary} for name, r in results.items()}
    key = first.key if len(results) == 1 else stage_key("train", *(r.key for r in results.values()))
    return first.model_copy(
        update={
            "key": key,
            "cached": all(r.cached for r in results.values()),
            "seconds": sum(r.seconds for r in results.values()),
            "summary": {**first.summary, "candidates": listing, "select_metric": select_metric},
        }
    )
