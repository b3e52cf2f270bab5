"""The augment stage's grid, and the pipeline it saves: reproducible per seed and serialisable."""

from __future__ import annotations

import numpy as np

from tasks.augment.images import augmentation_grid
from tasks.config import AugmentConfig
from tasks.image_augmentation import apply, build_pipeline, pipeline_to_json


def test_augment_is_reproducible_per_seed_and_serialisable() -> None:
    pipe = build_pipeline(AugmentConfig(affine=1.0, noise=1.0), seed=0)
    img = np.random.default_rng(0).random((32, 32, 1), dtype=np.float32)
    a, b, c = apply(pipe, img, 7), apply(pipe, img, 7), apply(pipe, img, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == img.shape and a.min() >= 0 and a.max() <= 1
    assert "Affine" in pipeline_to_json(pipe)
    grid = augmentation_grid(pipe, [img, img], seed=0, n_variants=3)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 36, 4 * 36, 1)
