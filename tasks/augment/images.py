"""The albumentations pipeline for inspection images, built from the config and saved with the run.

Only label-preserving transforms: a crack stays a crack under flips, 90-degree turns, a few degrees of rotation,
small shifts/zooms, exposure changes, blur and sensor noise. Randomness is reseeded per sample by the training
sampler, so a run is reproducible whatever the number of DataLoader workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import AugmentConfig
from tasks.image_io import load_image
from tasks.rundir import RunContext


def build_pipeline(cfg: AugmentConfig, seed: int = 0) -> A.Compose:
    """Float32 images in [0, 1], (H, W, C) in and out."""
    transforms: list[A.BasicTransform] = [
        A.HorizontalFlip(p=cfg.hflip),
        A.VerticalFlip(p=cfg.vflip),
        A.RandomRotate90(p=cfg.rot90),
        A.Affine(
            rotate=(-cfg.rotate_deg, cfg.rotate_deg),
            scale=(1 - cfg.scale, 1 + cfg.scale),
            translate_percent=(-cfg.translate, cfg.translate),
            border_mode=0,
            fill=0,
            p=cfg.affine,
        ),
        A.RandomBrightnessContrast(
            brightness_limit=cfg.brightness, contrast_limit=cfg.contrast, p=cfg.brightness_contrast
        ),
        A.GaussianBlur(blur_limit=(3, 5), p=cfg.blur),
        A.GaussNoise(std_range=(0.01, 0.04), p=cfg.noise),
    ]
    return A.Compose(transforms, seed=seed)


def pipeline_to_json(pipeline: A.Compose) -> str:
    return json.dumps(A.to_dict(pipeline), indent=2, default=str)


def apply(pipeline: A.Compose, image: np.ndarray, seed: int) -> np.ndarray:
    """Apply with an explicit per-sample seed; clip back to [0, 1] (brightness/noise may overshoot)."""
    pipeline.set_random_seed(seed)
    out = pipeline(image=image)["image"]
    if out.ndim == 2:
        out = out[:, :, None]
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


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
def augment_images_task(cfg: AugmentConfig, label: StageResult, image_size: int, ctx: RunContext) -> StageResult:
    """Build and save the pipeline, and draw a grid of augmented training images for the report."""
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
        return {"transforms": [type(t).__name__ for t in pipeline.transforms], "grid_rows": names}

    result = run_stage(StageCache(ctx.cache_root), "augment", key, build, ctx.refreshes("augment"))
    get_run_logger().info("augment: %s", ", ".join(result.summary["transforms"]))
    return result
