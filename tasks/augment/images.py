"""The augment stage for inspection images: build the pipeline, save it with the run, draw a grid for the report.

The pipeline itself (:mod:`tasks.image_augmentation`) is applied on the fly while training; this stage records
the config it was built from in its summary, so the train stage rebuilds exactly the same pipeline from this
stage's record.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import AugmentConfig
from tasks.image_augmentation import apply, build_pipeline, pipeline_to_json
from tasks.image_io import load_image
from tasks.rundir import RunContext


def augmentation_grid(pipeline: A.Compose, images: list[np.ndarray], seed: int, n_variants: int = 4) -> np.ndarray:
    """A uint8 grid: one row per source image, the original first, then ``n_variants`` augmented copies."""
    rows = []
    for i, image in enumerate(images):
        tiles = [image] + [apply(pipeline, image, seed * 1_000_003 + i * 101 + k) for k in range(n_variants)]
        tiles = [np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=1.0) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    return (grid * 255).round().astype(np.uint8)


def save_pipeline(pipeline: A.Compose, path: Path) -> None:
    path.write_text(pipeline_to_json(pipeline))


@task(name="augment", cache_policy=NO_CACHE)
def augment_images_task(*, cfg: AugmentConfig, ctx: RunContext, label: StageResult, image_size: int) -> StageResult:
    """Build and save the pipeline, and draw a grid of augmented training images for the report.

    Args:
        cfg: The augment section.
        ctx: The run's context (seed, cache, refreshes).
        label: The label stage's record (its ``splits.csv`` gives the grid's training images).
        image_size: The train stage's input side in pixels (``train.image_size``), passed by the flow because the
            grid shows images as the model will see them: resized to this size before augmenting. Part of the
            model-input contract, so it is also part of this stage's cache key.

    Returns:
        The stage record; its summary's ``config`` is ``cfg`` as a JSON dict (read back by
        :func:`tasks.image_augmentation.recorded_config`).
    """
    key = stage_key("augment", cfg, ctx.seed, label.key, image_size)

    def build(out: Path) -> dict:
        pipeline = build_pipeline(cfg, ctx.seed)
        save_pipeline(pipeline, out / "augment.json")
        table = pd.read_csv(label.dir / "splits.csv")
        train = table[table["split"] == "train"]
        rng = np.random.default_rng(ctx.seed)
        picks = []
        for _, group in train.groupby("label"):
            picks.extend(rng.choice(group.index.to_numpy(), size=min(len(group), 2), replace=False).tolist())
        picks = picks[: cfg.grid_samples]
        images = [load_image(table.at[i, "path"], image_size, 1) for i in picks]
        grid = augmentation_grid(pipeline, images, ctx.seed)
        cv2.imwrite(str(out / "augment_grid.png"), grid)
        names = [str(table.at[i, "class_name"]) for i in picks]
        return {
            "transforms": [type(t).__name__ for t in pipeline.transforms],
            "grid_rows": names,
            "config": cfg.model_dump(mode="json"),
        }

    result = run_stage(StageCache(ctx.cache_root), "augment", key, build, ctx.refreshes("augment"))
    get_run_logger().info("augment: %s", ", ".join(result.summary["transforms"]))
    return result
