"""The albumentations pipeline for inspection images: built from an ``AugmentConfig``, applied with explicit seeds.

Only label-preserving transforms: a crack stays a crack under flips, 90-degree turns, a few degrees of rotation,
small shifts/zooms, exposure changes, blur and sensor noise. The augment stage builds and saves the pipeline; the
train stage and the synth stage's usefulness experiment rebuild the identical pipeline from the augment stage's
record (:func:`recorded_config`), so they never read the augment section of the flow config. Randomness is
reseeded per sample by the training sampler (:func:`apply`), so a run is reproducible whatever the number of
DataLoader workers.
"""

from __future__ import annotations

import json

import albumentations as A
import numpy as np

from tasks.cache import StageResult
from tasks.config import AugmentConfig


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
    """The pipeline in albumentations' own serialisation (``A.from_dict`` reads it back), saved with each run."""
    return json.dumps(A.to_dict(pipeline), indent=2, default=str)


def apply(pipeline: A.Compose, image: np.ndarray, seed: int) -> np.ndarray:
    """Apply with an explicit per-sample seed; clip back to [0, 1] (brightness/noise may overshoot)."""
    pipeline.set_random_seed(seed)
    out = pipeline(image=image)["image"]
    if out.ndim == 2:
        out = out[:, :, None]
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def recorded_config(augment: StageResult) -> AugmentConfig:
    """The augment section that the augment stage built its pipeline from (its record's ``summary["config"]``).

    ``build_pipeline(recorded_config(augment), seed)`` gives the same transforms and, for the same seeds, the same
    augmented pixels as the augment stage's own pipeline; the train stage's cache key covers it through
    ``augment.key``.

    Raises:
        ValueError: If the record carries no config (it was not made by ``augment_images_task``).
    """
    config = augment.summary.get("config")
    if config is None:
        raise ValueError(
            f"augment record {augment.key or '(no key)'} has no 'config' in its summary, so its pipeline cannot "
            "be rebuilt; pass the record that augment_images_task returned"
        )
    return AugmentConfig.model_validate(config)
