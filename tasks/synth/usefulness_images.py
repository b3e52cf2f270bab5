"""Does the GAN's data help the image classifier? Measured in the run, on the real test split, never assumed.

Four measurements, all reported under ``synthetic.*`` in metrics.json:

- **gain**: real-only vs real + synthetic training, paired by seed (same split, same augmentation, same recipe),
  over ``synth.seeds`` seeds; mean ± sd of the difference in test balanced accuracy, and a paired bootstrap
  interval over the test images (``gain_ci95``: the only spread left when the arms do not depend on the seed).
  Every arm is a train-stage entry in the cache, so the arm with the run's seed and the headline recipe *is* the
  headline training, and a real-only arm reuses a training that an earlier run without synth already did;
- **TSTR** (train on synthetic, test on real; Esteban et al., 2017): the classifier trained on synthetic images
  only, validated and tested on real ones — how much class information the samples carry;
- **C2ST** and **copy rate** in the feature space of the real-only classifier (one that never saw a synthetic
  image, so it has not learned to tell them apart): see :mod:`tasks.synth.usefulness`. That classifier was
  trained on the very images the GAN learned from, so the C2ST is printed beside a real-vs-real reference
  (validation vs train images, same class mix, same size); the copy check runs again on the pixels;
- a Fréchet distance in the same feature space (vigil's features, not Inception's: not comparable to FIDs).

The comparison may use a cheaper recipe than the headline training (``synth.gain_epochs``,
``synth.gain_image_size``, ``synth.gain_model``) so that ``2 x seeds`` trainings fit a 2-core budget; the report says
which. ``synth.real_only_headline=false`` skips the real-only copy of the headline training (``real_only`` is then
null) and embeds with the comparison's real-only arm of the run's seed instead.

The experiment belongs to the synth stage (it judges the synth stage's output) but runs after training and
evaluation: it takes the headline recipe from the train stage's record and the threshold metric from the evaluate
stage's record, and trains its arms through the ground floor (:mod:`tasks.image_training`), never through the
train or evaluate stage modules.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import SynthConfig, TrainConfig
from tasks.image_classifier import embed_images
from tasks.image_io import load_image
from tasks.image_scoring import evaluate_classifier
from tasks.image_training import chosen_arm, synthetic_selection, train_arm
from tasks.metrics import predicted_labels
from tasks.rundir import RunContext
from tasks.synth.usefulness import ArmScore, paired_gain, synthetic_measures
from tasks.synthetic_samples import gan_training_rows, read_manifest, synthetic_rows

#: The measurements the stage record's summary carries (synthetic.json has them all).
SUMMARY_KEYS = ("tstr_balanced_accuracy", "gain_mean", "gain_sd", "c2st_accuracy", "c2st_reference", "nn_copy_rate")


def gain_recipe(headline: TrainConfig, cfg: SynthConfig) -> TrainConfig:
    """The recipe of the comparison's arms: the headline one, with ``synth.gain_epochs`` / ``gain_image_size``, and
    ``synth.gain_model`` in place of the headline model (its ``model_kwargs`` and ``init_from`` dropped: they were
    the headline model's, and starting weights of one architecture do not fit another)."""
    update: dict[str, Any] = {
        "epochs": cfg.gain_epochs or headline.epochs,
        "image_size": cfg.gain_image_size or headline.image_size,
    }
    if cfg.gain_model and cfg.gain_model != headline.model:
        update |= {"model": cfg.gain_model, "model_kwargs": {}, "init_from": None}
    return TrainConfig.model_validate({**headline.model_dump(), **update})


@dataclass
class _Arms:
    """Trains the experiment's arms through the train-stage cache and scores each on the real test split."""

    ctx: RunContext
    label: StageResult
    augment: StageResult
    table: pd.DataFrame
    threshold_metric: str
    logger: logging.Logger
    done: list[dict[str, Any]] = field(default_factory=list)

    def train(self, cfg: TrainConfig, seed: int, name: str, **kw: Any) -> StageResult:
        self.logger.info("synth-usefulness: arm %s", name)
        result = train_arm(
            cfg=cfg,
            ctx=self.ctx,
            label=self.label,
            augment=self.augment,
            seed=seed,
            checkpoint_name=name,
            logger=self.logger,
            **kw,
        )
        self.done.append({"arm": name, "train_key": result.key, "cached": result.cached, "seconds": result.seconds})
        return result

    def score(self, result: StageResult) -> dict[str, Any]:
        """Test metrics of a trained arm, its threshold chosen on validation like the headline model's."""
        return self._scored(result)[0]

    def arm_score(self, result: StageResult) -> ArmScore:
        """Test balanced accuracy of an arm with its per-image labels and decisions (sorted by sample id, so every
        arm lists the test images in one order) for the gain's paired bootstrap."""
        test, rows = self._scored(result)
        rows = rows.sort_values("sample_id", kind="stable")
        proba = rows[[c for c in rows.columns if c.startswith("prob_")]].to_numpy()
        y_pred = predicted_labels(proba[:, 1] if proba.shape[1] == 2 else proba, test["threshold"])
        return ArmScore(float(test["balanced_accuracy"]), rows["label"].to_numpy().astype(np.int64), y_pred)

    def _scored(self, result: StageResult) -> tuple[dict[str, Any], pd.DataFrame]:
        """(test metrics, the arm's test prediction rows)."""
        if result.error:
            raise StageError(result.error)
        predictions = pd.read_csv(result.dir / "predictions.csv", dtype={"sample_id": str})
        class_names = self.label.summary["class_names"]
        test, _, _ = evaluate_classifier(
            predictions, self.table, class_names, threshold_metric=self.threshold_metric, worst_k=0
        )
        return test, predictions[predictions["split"] == "test"]


def _pixels(paths: list[str], size: int, channels: int) -> np.ndarray:
    """Images as flat ``(N, size * size * channels)`` rows in [0, 1]: the copy check's pixel space."""
    return np.stack([load_image(p, size, channels).reshape(-1) for p in paths]).astype(np.float32)


def _distribution_measures(
    arms: _Arms, weights: Path, real_train: pd.DataFrame, manifest: pd.DataFrame, synth: StageResult, seed: int
) -> dict[str, Any]:
    """C2ST with its real-vs-real reference, copy checks in feature and pixel space, Fréchet distance.

    The embedder (the real-only classifier) was trained on ``real_train``, so the C2ST against those images is
    read beside the same test of validation vs train images (:func:`tasks.synth.usefulness.c2st_with_reference`).
    """
    real_val = arms.table[(arms.table["split"] == "val") & ~arms.table["synthetic"].astype(str).isin(("True", "1"))]
    f_train = embed_images(weights, real_train["path"].tolist())
    f_val = embed_images(weights, real_val["path"].tolist()) if len(real_val) else np.zeros((0, f_train.shape[1]))
    f_synth = embed_images(weights, manifest["path"].tolist())
    size = int(synth.summary.get("image_size") or 32)
    channels = 1 if "grey" not in arms.table or arms.table["grey"].astype(str).isin(("True", "1")).all() else 3
    raw = (_pixels(real_train["path"].tolist(), size, channels), _pixels(manifest["path"].tolist(), size, channels))
    labels = {name: frame["label"].to_numpy().astype(np.int64) for name, frame in
              (("train", real_train), ("val", real_val), ("synth", manifest))}  # fmt: skip
    return synthetic_measures(
        (f_train, labels["train"]),
        (f_val, labels["val"]),
        (f_synth, labels["synth"]),
        raw,
        arms.label.summary["class_names"],
        seed,
    )


def _measure_usefulness(
    arms: _Arms, cfg: SynthConfig, headline: TrainConfig, synth: StageResult, seed: int
) -> dict[str, Any]:
    """Every measurement of the module docstring, as ``synthetic.json`` holds them."""
    rows, rows_key = synthetic_selection(synth, arms.label)
    manifest = read_manifest(synth.dir)
    real_train = gan_training_rows(arms.table)
    all_rows = synthetic_rows(manifest, real_train["label"].to_numpy().astype(np.int64), "all", 1.0)

    real_main = arms.train(headline, seed, "real-only") if cfg.real_only_headline else None
    real_only = arms.score(real_main) if real_main is not None else None
    recipe = gain_recipe(headline, cfg)
    real_arms: dict[int, StageResult] = {}

    def gain_arm(arm_seed: int, with_synthetic: bool) -> ArmScore:
        if with_synthetic:
            result = arms.train(recipe, arm_seed, f"gain-synth-{arm_seed}", synthetic=rows, synthetic_key=rows_key)
        else:
            result = real_arms[arm_seed] = arms.train(recipe, arm_seed, f"gain-real-{arm_seed}")
        return arms.arm_score(result)

    gain = paired_gain(gain_arm, [seed + i for i in range(cfg.seeds)])
    tstr_key = {"key": synth.key, "classes": "all", "weight": 1.0}
    tstr = arms.score(arms.train(recipe, seed, "tstr", synthetic=all_rows, synthetic_key=tstr_key, synthetic_only=True))
    # The embedder never saw a synthetic image: the real-only headline model, or else the comparison's own
    # real-only arm of the run's seed.
    embedder, embedder_recipe = (real_main, headline) if real_main is not None else (real_arms[seed], recipe)
    arms.logger.info(
        "synth-usefulness: embedding real and synthetic images with the real-only %s",
        embedder_recipe.model,
    )
    measures = _distribution_measures(arms, embedder.dir / "weights.pt", real_train, manifest, synth, seed)
    return {
        "tstr_balanced_accuracy": tstr["balanced_accuracy"],
        "tstr_accuracy": tstr["accuracy"],
        **gain,
        **measures,
        "feature_space": f"pre-logit features of the real-only {embedder_recipe.model} at "
        f"{embedder_recipe.image_size} px (not Inception)",
        "gain_recipe": {"epochs": recipe.epochs, "image_size": recipe.image_size, "model": recipe.model},
        "ratio": cfg.ratio,
        "classes": cfg.classes,
        "n_generated": int(len(manifest)),
        "n_added": int(len(rows)),
        "arms": arms.done,
        "real_only": real_only,
    }


def chosen_recipe(train: StageResult, evaluate: StageResult) -> dict[str, Any]:
    """The train recipe of the candidate the evaluate stage chose on validation; the train record's own recipe
    when it lists no candidates."""
    return chosen_arm(train, (evaluate.summary.get("selection") or {}).get("model"))[0]["recipe"]


@task(name="synth-usefulness", cache_policy=NO_CACHE)
def synth_usefulness_images_task(
    *,
    cfg: SynthConfig,
    ctx: RunContext,
    label: StageResult,
    augment: StageResult,
    synth: StageResult,
    train: StageResult,
    evaluate: StageResult,
) -> StageResult:
    """Run the comparison's arms (through the train cache), TSTR, C2ST and the copy check; writes synthetic.json.

    Args:
        cfg: The synth section (seeds, gain recipe, ratio, classes).
        ctx: The run's context; the entry is cached as ``synth-usefulness`` and refreshed with that stage name.
        label: The label stage's record (split table, class names).
        augment: The augment stage's record (the arms' augmentation pipeline).
        synth: The synth stage's record (its samples and ``selection``).
        train: The train stage's record: the recipe of the candidate chosen on validation (or the only one) is
            the headline recipe of the arms.
        evaluate: The evaluate stage's record: its ``summary["threshold_metric"]`` scores every arm, its
            ``summary["selection"]`` names the chosen candidate.
    """
    logger = get_run_logger()
    headline = TrainConfig.model_validate(chosen_recipe(train, evaluate))
    threshold_metric = evaluate.summary["threshold_metric"]
    key = stage_key("synth-usefulness", label.key, augment.key, synth.key, cfg, headline, threshold_metric, ctx.seed)

    def build(out: Path) -> dict:
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        table["sample_id"] = table["sample_id"].astype(str)
        arms = _Arms(ctx, label, augment, table, threshold_metric, logger)
        result = _measure_usefulness(arms, cfg, headline, synth, ctx.seed)
        (out / "synthetic.json").write_text(json.dumps(result, indent=2))
        return {k: result[k] for k in SUMMARY_KEYS}

    stage = "synth-usefulness"
    result = run_stage(StageCache(ctx.cache_root), stage, key, build, ctx.refreshes(stage))
    if not result.error:
        logger.info(
            "synth-usefulness: %s", ", ".join(f"{k}={v:.4f}" for k, v in result.summary.items() if k != "seconds")
        )
    return result
