"""The image augmentation pipeline: the train stage rebuilds it from the augment stage's record, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.cache import StageResult
from tasks.config import AugmentConfig
from tasks.image_augmentation import apply, build_pipeline, pipeline_to_json, recorded_config


def _record(cfg: AugmentConfig) -> StageResult:
    """An augment record as a cache hit returns it: the summary went through JSON on disk."""
    summary = json.loads(json.dumps({"transforms": [], "config": cfg.model_dump(mode="json")}))
    return StageResult(stage="augment", key="k", path="/x", cached=True, seconds=0.0, summary=summary)


def test_pipeline_rebuilt_from_the_augment_record_is_bit_identical() -> None:
    cfg = AugmentConfig(affine=1.0, noise=0.7, blur=0.6, rotate_deg=7.5, scale=0.1, translate=0.05, brightness=0.2)
    rebuilt = recorded_config(_record(cfg))
    assert rebuilt == cfg
    rng = np.random.default_rng(0)
    images = [rng.random((32, 32, 1), dtype=np.float32), rng.random((24, 24, 3), dtype=np.float32)]
    for pipeline_seed in (0, 5):
        original, again = build_pipeline(cfg, pipeline_seed), build_pipeline(rebuilt, pipeline_seed)
        assert pipeline_to_json(original) == pipeline_to_json(again)
        for sample_seed in range(25):
            for image in images:
                assert np.array_equal(apply(original, image, sample_seed), apply(again, image, sample_seed))


def test_augment_record_without_config_names_the_task() -> None:
    record = StageResult(stage="augment", key="abc", path="/x", cached=False, seconds=0.0, summary={})
    with pytest.raises(ValueError, match="abc.*augment_images_task"):
        recorded_config(record)
