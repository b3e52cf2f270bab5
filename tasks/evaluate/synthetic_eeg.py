"""Does the EEG GAN's data help seizure detection? Measured in the run on the real test recordings.

The same four measurements as for images (:mod:`tasks.evaluate.synthetic_images`): the paired real-only vs
real + synthetic gain over seeds (test window balanced accuracy, threshold chosen on the validation recordings),
train-on-synthetic / test-on-real, and a classifier two-sample test, copy rate and Fréchet distance in the
feature space of the real-only detector. Every arm is a detection training in the stage cache, so the arm with
the run's seed and recipe is the headline training and a real-only arm reuses earlier runs.
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

from models.registry import create_model
from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import EegAugmentConfig, EegEvaluateConfig, EegLabelConfig, EegSynthConfig, EegTrainConfig
from tasks.eeg_windows import detection_training_windows, load_windows, read_synthetic, read_windows
from tasks.evaluate.eeg import evaluate_detection
from tasks.rundir import RunContext
from tasks.synth.usefulness import embedding_measures, paired_gain
from tasks.train.eeg import detection_arm, detection_synthetic

#: Real windows embedded for the C2ST / copy check (a seeded sample; enough for stable nearest neighbours).
MAX_EMBED_WINDOWS = 2000


def embed_windows(weights_path: Path, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Pre-logit features ``(N, F)`` of a trained vigil EEG model for windows already in its normalisation."""
    record = torch.load(weights_path, map_location="cpu", weights_only=True)
    model = create_model(record["arch"], **record["kwargs"])
    model.load_state_dict(record["state_dict"])
    model.eval()
    feats = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.array(x[i : i + batch_size], dtype=np.float32))  # a writable copy
            feats.append(model.forward_head(model.forward_features(batch), pre_logits=True).float().numpy())
    return np.concatenate(feats)


@task(name="evaluate-synthetic", cache_policy=NO_CACHE)
def evaluate_synthetic_eeg_task(
    synth_cfg: EegSynthConfig,
    train_cfg: EegTrainConfig,
    augment_cfg: EegAugmentConfig,
    label_cfg: EegLabelConfig,
    evaluate_cfg: EegEvaluateConfig,
    label: StageResult,
    ingest: StageResult,
    synth: StageResult,
    ctx: RunContext,
) -> StageResult:
    """Run the detection arms (through the train cache), TSTR, C2ST and the copy check; writes synthetic.json."""
    logger = get_run_logger()
    key = stage_key(
        "evaluate", "synthetic", label.key, synth.key, synth_cfg, train_cfg, augment_cfg, evaluate_cfg, ctx.seed
    )

    def build(out: Path) -> dict:
        windows = read_windows(label.dir)
        recordings = pd.read_csv(ingest.dir / "recordings.csv", dtype={"recording_id": str, "patient": str})
        seizures = pd.read_csv(ingest.dir / "seizures.csv", dtype={"recording_id": str, "patient": str})

        def score(result: StageResult) -> dict[str, Any]:
            if result.error:
                raise StageError(result.error)
            report, _ = evaluate_detection(
                windows,
                pd.read_csv(result.dir / "predictions.csv"),
                seizures,
                recordings,
                label_cfg.window_s,
                label_cfg.step_s,
                evaluate_cfg.detection_threshold_metric,
                evaluate_cfg.detection_smooth_windows,
            )
            report.pop("by_patient", None)
            return report

        arms: list[dict[str, Any]] = []

        def arm(cfg: EegTrainConfig, seed: int, name: str, **kw: Any) -> StageResult:
            logger.info("evaluate-synthetic: arm %s", name)
            result = detection_arm(
                cfg, label, ingest, augment_cfg, ctx, seed=seed, checkpoint_name=name, logger=logger, **kw
            )
            arms.append({"arm": name, "train_key": result.key, "cached": result.cached, "seconds": result.seconds})
            return result

        added, added_key = detection_synthetic(synth, label, synth_cfg)
        every, every_key = detection_synthetic(synth, label, synth_cfg, all_rows=True)
        real_main = arm(train_cfg, ctx.seed, "real-only")
        real_only = score(real_main)
        recipe = train_cfg.model_copy(update={"epochs": synth_cfg.gain_epochs or train_cfg.epochs})

        def gain_arm(seed: int, with_synthetic: bool) -> float:
            if with_synthetic:
                result = arm(recipe, seed, f"gain-synth-{seed}", synthetic=added, synthetic_key=added_key)
            else:
                result = arm(recipe, seed, f"gain-real-{seed}")
            return score(result)["window"]["balanced_accuracy"]

        gain = paired_gain(gain_arm, [ctx.seed + i for i in range(synth_cfg.seeds)])
        tstr = score(arm(recipe, ctx.seed, "tstr", synthetic=every, synthetic_key=every_key, synthetic_only=True))
        logger.info("evaluate-synthetic: embedding real and synthetic windows with the real-only detector")
        pool = detection_training_windows(windows)
        if len(pool) > MAX_EMBED_WINDOWS:
            pool = pool.sample(n=MAX_EMBED_WINDOWS, random_state=ctx.seed).sort_index()
        real_x = load_windows(pool, ingest.dir / "signals", int(label.summary["window_samples"]), train_cfg.normalize)
        synth_x, _ = read_synthetic(synth.dir)
        weights = real_main.dir / "weights.pt"
        f_real = embed_windows(weights, real_x)
        f_synth = embed_windows(weights, np.asarray(synth_x))
        result = {
            "task": "detection",
            "score": "test window balanced accuracy (threshold chosen on the validation recordings)",
            "tstr_balanced_accuracy": tstr["window"]["balanced_accuracy"],
            **gain,
            **embedding_measures(f_real, f_synth, ctx.seed),
            "feature_space": f"pre-logit features of the real-only {train_cfg.model} detector (not a public model)",
            "gain_recipe": {"epochs": recipe.epochs, "model": recipe.model},
            "ratio": synth_cfg.ratio,
            "classes": synth_cfg.classes,
            "n_generated": int(len(synth_x)),
            "n_added": int(len(added)),
            "arms": arms,
            "real_only": {"detection": real_only},
        }
        (out / "synthetic.json").write_text(json.dumps(result, indent=2))
        keys = ("tstr_balanced_accuracy", "gain_mean", "gain_sd", "c2st_accuracy", "nn_copy_rate")
        return {k: result[k] for k in keys}

    result = run_stage(StageCache(ctx.cache_root), "evaluate", key, build, ctx.refreshes("evaluate"))
    if not result.error:
        logger.info(
            "evaluate-synthetic: %s", ", ".join(f"{k}={v:.4f}" for k, v in result.summary.items() if k != "seconds")
        )
    return result
