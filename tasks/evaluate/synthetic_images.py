"""Does the GAN's data help the image classifier? Measured in the run, on the real test split, never assumed.

Four measurements, all reported under ``synthetic.*`` in metrics.json:

- **gain**: real-only vs real + synthetic training, paired by seed (same split, same augmentation, same recipe),
  over ``synth.seeds`` seeds; mean ± sd of the difference in test balanced accuracy. Every arm is a train-stage
  entry in the cache, so the arm with the run's seed and the headline recipe *is* the headline training, and a
  real-only arm reuses a training that an earlier run without synth already did;
- **TSTR** (train on synthetic, test on real; Esteban et al., 2017): the classifier trained on synthetic images
  only, validated and tested on real ones — how much class information the samples carry;
- **C2ST** and **copy rate** in the feature space of the real-only classifier (one that never saw a synthetic
  image, so it has not learned to tell them apart): see :mod:`tasks.synth.usefulness`;
- a Fréchet distance in the same feature space (vigil's features, not Inception's: not comparable to FIDs).

The comparison may use a cheaper recipe than the headline training (``synth.gain_epochs``,
``synth.gain_image_size``) so that ``2 x seeds`` trainings fit a 2-core budget; the report says which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import AugmentConfig, EvaluateConfig, SynthConfig, TrainConfig
from tasks.evaluate.images import evaluate_classifier
from tasks.image_io import load_image
from tasks.rundir import RunContext
from tasks.synth.usefulness import embedding_measures, paired_gain
from tasks.synthetic_samples import gan_training_rows, read_manifest, synthetic_rows
from tasks.train.images import load_model, synthetic_selection, train_arm


def embed_images(weights_path: Path, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Pre-logit features ``(N, F)`` of a trained vigil image model, preprocessed exactly as in training."""
    model, meta = load_model(weights_path)
    size, chans = int(meta["image_size"]), int(meta["in_chans"])
    mean = np.asarray(meta["normalization"]["mean"], dtype=np.float32)
    std = np.asarray(meta["normalization"]["std"], dtype=np.float32)
    feats = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            batch = np.stack([(load_image(p, size, chans) - mean) / std for p in paths[i : i + batch_size]])
            x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
            feats.append(model.forward_head(model.forward_features(x), pre_logits=True).float().numpy())
    return np.concatenate(feats)


def _scored(result: StageResult, table: pd.DataFrame, class_names: list[str], cfg: EvaluateConfig) -> dict:
    if result.error:
        raise StageError(result.error)
    predictions = pd.read_csv(result.dir / "predictions.csv", dtype={"sample_id": str})
    test, _, _ = evaluate_classifier(predictions, table, class_names, cfg)
    return test


@task(name="evaluate-synthetic", cache_policy=NO_CACHE)
def evaluate_synthetic_images_task(
    synth_cfg: SynthConfig,
    train_cfg: TrainConfig,
    augment_cfg: AugmentConfig,
    evaluate_cfg: EvaluateConfig,
    label: StageResult,
    augment: StageResult,
    synth: StageResult,
    ctx: RunContext,
) -> StageResult:
    """Run the comparison's arms (through the train cache), TSTR, C2ST and the copy check; writes synthetic.json."""
    logger = get_run_logger()
    key = stage_key(
        "evaluate", "synthetic", label.key, augment.key, synth.key, synth_cfg, train_cfg, evaluate_cfg, ctx.seed
    )

    def build(out: Path) -> dict:
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        table["sample_id"] = table["sample_id"].astype(str)
        class_names = label.summary["class_names"]
        rows, rows_key = synthetic_selection(synth, label, synth_cfg)
        manifest = read_manifest(synth.dir)
        real_train = gan_training_rows(table)
        all_rows = synthetic_rows(manifest, real_train["label"].to_numpy().astype(np.int64), "all", 1.0)

        arms: list[dict[str, Any]] = []

        def arm(cfg: TrainConfig, seed: int, name: str, **kw: Any) -> StageResult:
            logger.info("evaluate-synthetic: arm %s", name)
            result = train_arm(
                cfg, label, augment, augment_cfg, ctx, seed=seed, checkpoint_name=name, logger=logger, **kw
            )
            arms.append({"arm": name, "train_key": result.key, "cached": result.cached, "seconds": result.seconds})
            return result

        real_main = arm(train_cfg, ctx.seed, "real-only")
        real_only = _scored(real_main, table, class_names, evaluate_cfg)
        recipe = train_cfg.model_copy(
            update={
                "epochs": synth_cfg.gain_epochs or train_cfg.epochs,
                "image_size": synth_cfg.gain_image_size or train_cfg.image_size,
            }
        )

        def gain_arm(seed: int, with_synthetic: bool) -> float:
            if with_synthetic:
                result = arm(recipe, seed, f"gain-synth-{seed}", synthetic=rows, synthetic_key=rows_key)
            else:
                result = arm(recipe, seed, f"gain-real-{seed}")
            return _scored(result, table, class_names, evaluate_cfg)["balanced_accuracy"]

        gain = paired_gain(gain_arm, [ctx.seed + i for i in range(synth_cfg.seeds)])
        tstr = _scored(
            arm(
                recipe,
                ctx.seed,
                "tstr",
                synthetic=all_rows,
                synthetic_key={"key": synth.key, "classes": "all", "weight": 1.0},
                synthetic_only=True,
            ),
            table,
            class_names,
            evaluate_cfg,
        )
        logger.info("evaluate-synthetic: embedding real and synthetic images with the real-only model")
        weights = real_main.dir / "weights.pt"
        f_real = embed_images(weights, real_train["path"].tolist())
        f_synth = embed_images(weights, manifest["path"].tolist())
        result = {
            "tstr_balanced_accuracy": tstr["balanced_accuracy"],
            "tstr_accuracy": tstr["accuracy"],
            **gain,
            **embedding_measures(f_real, f_synth, ctx.seed),
            "feature_space": f"pre-logit features of the real-only {train_cfg.model} (not Inception)",
            "gain_recipe": {"epochs": recipe.epochs, "image_size": recipe.image_size, "model": recipe.model},
            "ratio": synth_cfg.ratio,
            "classes": synth_cfg.classes,
            "n_generated": int(len(manifest)),
            "n_added": int(len(rows)),
            "arms": arms,
            "real_only": real_only,
        }
        (out / "synthetic.json").write_text(json.dumps(result, indent=2))
        return {
            k: result[k] for k in ("tstr_balanced_accuracy", "gain_mean", "gain_sd", "c2st_accuracy", "nn_copy_rate")
        }

    result = run_stage(StageCache(ctx.cache_root), "evaluate", key, build, ctx.refreshes("evaluate"))
    if not result.error:
        logger.info(
            "evaluate-synthetic: %s", ", ".join(f"{k}={v:.4f}" for k, v in result.summary.items() if k != "seconds")
        )
    return result
