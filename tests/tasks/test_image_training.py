"""Training runs as train-stage cache entries: the recipe a record carries trains (and finds) the same entry."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tasks.image_training as training
from models.training import FitResult
from tasks.cache import StageResult
from tasks.config import AugmentConfig, TrainConfig
from tasks.image_augmentation import build_pipeline, pipeline_to_json
from tasks.image_classifier import TrainOutput
from tasks.rundir import RunContext


def _splits(tmp_path: Path) -> StageResult:
    """A label record: 3 train rows of class 0, 1 of class 1, and val/test rows."""
    rows = [
        {"sample_id": f"s{i}", "path": f"/x/{i}.png", "label": label, "split": split, "weight": 1.0}
        | {"stratum": "", "group": "", "synthetic": False, "class_name": ["good", "crack"][label], "grey": True}
        for i, (label, split) in enumerate([(0, "train")] * 3 + [(1, "train"), (0, "val"), (1, "val"), (1, "test")])
    ]
    folder = tmp_path / "label"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "splits.csv", index=False)
    summary = {"class_names": ["good", "crack"]}
    return StageResult(stage="label", key="L", path=str(folder), cached=False, seconds=0.0, summary=summary)


def _synth(tmp_path: Path, selection: dict | None) -> StageResult:
    folder = tmp_path / "synth"
    folder.mkdir()
    manifest = pd.DataFrame(
        {"sample_id": ["a", "b", "c"], "path": ["images/a.png", "images/b.png", "images/c.png"], "label": [0, 1, 1]}
        | {"class_name": ["good", "crack", "crack"], "split": "train", "stratum": "", "group": "synthetic"}
        | {"synthetic": True}
    )
    manifest.to_csv(folder / "manifest.csv", index=False)
    summary = {"n_generated": 3} | ({"selection": selection} if selection else {})
    return StageResult(stage="synth", key="S", path=str(folder), cached=False, seconds=0.0, summary=summary)


def test_synthetic_selection_follows_the_synth_record(tmp_path: Path) -> None:
    label = _splits(tmp_path)
    rows, key = training.synthetic_selection(_synth(tmp_path, {"classes": "minority", "synthetic_weight": 0.25}), label)
    assert list(rows["sample_id"]) == ["b", "c"] and (rows["weight"] == 0.25).all() and rows["synthetic"].all()
    assert rows["path"].iloc[0] == str(tmp_path / "synth" / "images" / "b.png")
    assert key == {"key": "S", "classes": "minority", "weight": 0.25}


def test_synthetic_selection_needs_the_selection(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="selection.*synth_images_task"):
        training.synthetic_selection(_synth(tmp_path, None), _splits(tmp_path))


def test_the_recorded_recipe_finds_the_same_train_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The usefulness experiment trains its real-only arm from the train record's recipe: that must be a cache
    hit on the train stage's own entry, trained with the augment record's pipeline and the arm's seed."""
    fits: list[dict] = []

    def fake_train(table, class_names, cfg, transform, seed, out, checkpoint_dir, **kw) -> TrainOutput:
        fits.append({"transform": pipeline_to_json(transform), "seed": seed, "n": len(table)})
        fit = FitResult(history=[], best_epoch=1, best_metric=0.5, epochs_run=1, resumed_from_epoch=None,
                        stopped_early=False, device="cpu")  # fmt: skip
        return TrainOutput(out / "weights.pt", out / "predictions.csv", [], fit, 10)

    class NoProgress:
        def __init__(self, *args) -> None:
            self.on_epoch_end = self.on_batch_end = lambda *a: None

        def close(self) -> None:
            pass

    monkeypatch.setattr(training, "train_classifier", fake_train)
    monkeypatch.setattr(training, "_Progress", NoProgress)
    aug_cfg = AugmentConfig(noise=0.9, rotate_deg=5.0)
    summary = json.loads(json.dumps({"config": aug_cfg.model_dump(mode="json")}))
    augment = StageResult(stage="augment", key="A", path="/x", cached=True, seconds=0.0, summary=summary)
    label = _splits(tmp_path)
    ctx = RunContext(flow="t", data_root=str(tmp_path / "data"), run_dir=str(tmp_path / "run"), seed=3)
    cfg = TrainConfig(model="resnet_tiny", image_size=48, epochs=2, model_kwargs={"stem_stride": 2}, threads=1)
    log = logging.getLogger("test")

    first = training.train_arm(cfg=cfg, ctx=ctx, label=label, augment=augment, seed=3, logger=log)
    assert not first.error and not first.cached
    recipe = TrainConfig.model_validate(json.loads(json.dumps(first.summary["recipe"])))
    assert recipe == cfg
    again = training.train_arm(cfg=recipe, ctx=ctx, label=label, augment=augment, seed=3, logger=log)
    assert again.cached and again.key == first.key and len(fits) == 1
    assert fits[0] == {"transform": pipeline_to_json(build_pipeline(aug_cfg, 3)), "seed": 3, "n": 7}
    assert first.summary["n_train_real"] == 4 and first.summary["n_train_synthetic"] == 0

    rows, rows_key = training.synthetic_selection(_synth(tmp_path, {"classes": "all", "synthetic_weight": 1.0}), label)
    with_synth = training.train_arm(
        cfg=cfg, ctx=ctx, label=label, augment=augment, seed=3, synthetic=rows, synthetic_key=rows_key, logger=log
    )
    assert with_synth.key != first.key and with_synth.summary["n_train_synthetic"] == 3
    assert np.array_equal(pd.read_csv(with_synth.dir / "splits.csv")["synthetic"].to_numpy()[-3:], [True] * 3)
