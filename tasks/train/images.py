"""The train stage for inspection images: fit the classifier on real (and, with synth on, synthetic) images.

A thin task over :func:`tasks.image_training.train_arm`, which the synth stage's usefulness experiment also uses,
so both train identically and share cache entries. Everything the stage needs from upstream comes from records:
the split table from the label stage, the augmentation pipeline's config from the augment stage, and which
synthetic rows to add (classes, loss weight) from the synth stage.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageResult
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
    """Fit the classifier (on real + synthetic images when the synth stage ran); cached, resumable.

    Args:
        cfg: The train section; its dump is the record's ``summary["recipe"]``.
        ctx: The run's context.
        label: The label stage's record.
        augment: The augment stage's record; the pipeline is rebuilt from its ``summary["config"]``.
        synth: The synth stage's record when synth is on; its ``summary["selection"]`` says which classes' samples
            are added and with what loss weight. ``None``: real images only.
    """
    if synth is None:
        return train_arm(cfg=cfg, ctx=ctx, label=label, augment=augment, seed=ctx.seed)
    rows, rows_key = synthetic_selection(synth, label)
    return train_arm(
        cfg=cfg, ctx=ctx, label=label, augment=augment, seed=ctx.seed, synthetic=rows, synthetic_key=rows_key
    )
