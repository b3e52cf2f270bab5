"""Does the EEG GAN's data help seizure detection? Measured in the run on the real test recordings.

The same four measurements as for images (:mod:`tasks.synth.usefulness_images`): the paired real-only vs
real + synthetic gain over seeds (test window balanced accuracy, threshold chosen on the validation recordings),
train-on-synthetic / test-on-real, and a classifier two-sample test, copy rate and Fréchet distance in the
feature space of the real-only detector. Every arm is a detection training in the train stage's cache, so the arm
with the run's seed and recipe is the headline training and a real-only arm reuses earlier runs.

The experiment belongs to the synth stage (it judges the synth stage's output) but runs after training and
evaluation: it takes the headline recipe from the detection training's record, the window step from the label
stage's record and the scoring settings from the evaluate stage's record, and trains and scores its arms through the
ground floor (:mod:`tasks.window_classifier`, :mod:`tasks.detection_scoring`), never through the train or evaluate
stage modules.
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
from tasks.config import EegSynthConfig, EegTrainConfig
from tasks.detection_scoring import evaluate_detection
from tasks.eeg_windows import detection_training_windows, load_windows, read_synthetic, read_windows
from tasks.rundir import RunContext
from tasks.synth.usefulness import embedding_measures, paired_gain
from tasks.window_classifier import detection_arm, detection_synthetic, embed_windows

#: Real windows embedded for the C2ST / copy check (a seeded sample; enough for stable nearest neighbours).
MAX_EMBED_WINDOWS = 2000
#: The measurements the stage record's summary carries (synthetic.json has them all).
SUMMARY_KEYS = ("tstr_balanced_accuracy", "gain_mean", "gain_sd", "c2st_accuracy", "nn_copy_rate")


@dataclass
class _Arms:
    """Trains the experiment's detection arms through the train-stage cache and scores each on the test recordings
    the way the evaluate stage scores the headline detector."""

    ctx: RunContext
    ingest: StageResult
    label: StageResult
    augment: StageResult
    scoring: dict[str, Any]
    logger: logging.Logger
    done: list[dict[str, Any]] = field(default_factory=list)
    windows: pd.DataFrame = field(init=False)
    recordings: pd.DataFrame = field(init=False)
    seizures: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        dtype = {"recording_id": str, "patient": str}
        self.windows = read_windows(self.label.dir)
        self.recordings = pd.read_csv(self.ingest.dir / "recordings.csv", dtype=dtype)
        self.seizures = pd.read_csv(self.ingest.dir / "seizures.csv", dtype=dtype)

    def train(self, cfg: EegTrainConfig, seed: int, name: str, **kw: Any) -> StageResult:
        self.logger.info("synth-usefulness: arm %s", name)
        result = detection_arm(
            cfg,
            ctx=self.ctx,
            ingest=self.ingest,
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
        """Window and event metrics of a trained arm on the test recordings, threshold chosen on validation."""
        if result.error:
            raise StageError(result.error)
        report, _ = evaluate_detection(
            self.windows,
            pd.read_csv(result.dir / "predictions.csv"),
            self.seizures,
            self.recordings,
            float(self.label.summary["window_s"]),
            float(self.label.summary["step_s"]),
            self.scoring["detection_threshold_metric"],
            int(self.scoring["detection_smooth_windows"]),
        )
        report.pop("by_patient", None)
        return report


def _features(
    arms: _Arms, headline: EegTrainConfig, synth: StageResult, weights: Path, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of a seeded sample of the real detection training windows and of every synthetic window, by the
    real-only detector ``weights``; also the synthetic array (for its size)."""
    pool = detection_training_windows(arms.windows)
    if len(pool) > MAX_EMBED_WINDOWS:
        pool = pool.sample(n=MAX_EMBED_WINDOWS, random_state=seed).sort_index()
    n_samples = int(arms.label.summary["window_samples"])
    real_x = load_windows(pool, arms.ingest.dir / "signals", n_samples, headline.normalize)
    synth_x, _ = read_synthetic(synth.dir)
    return embed_windows(weights, real_x), embed_windows(weights, np.asarray(synth_x)), synth_x


def _measure_usefulness(
    arms: _Arms, cfg: EegSynthConfig, headline: EegTrainConfig, synth: StageResult, seed: int
) -> dict[str, Any]:
    """Every measurement of the module docstring, as ``synthetic.json`` holds them."""
    added, added_key = detection_synthetic(synth, arms.label)
    every, every_key = detection_synthetic(synth, arms.label, all_rows=True)
    real_main = arms.train(headline, seed, "real-only")
    real_only = arms.score(real_main)
    recipe = headline.model_copy(update={"epochs": cfg.gain_epochs or headline.epochs})

    def gain_arm(arm_seed: int, with_synthetic: bool) -> float:
        if with_synthetic:
            result = arms.train(recipe, arm_seed, f"gain-synth-{arm_seed}", synthetic=added, synthetic_key=added_key)
        else:
            result = arms.train(recipe, arm_seed, f"gain-real-{arm_seed}")
        return arms.score(result)["window"]["balanced_accuracy"]

    gain = paired_gain(gain_arm, [seed + i for i in range(cfg.seeds)])
    tstr = arms.score(arms.train(recipe, seed, "tstr", synthetic=every, synthetic_key=every_key, synthetic_only=True))
    arms.logger.info("synth-usefulness: embedding real and synthetic windows with the real-only detector")
    f_real, f_synth, synth_x = _features(arms, headline, synth, real_main.dir / "weights.pt", seed)
    return {
        "task": "detection",
        "score": "test window balanced accuracy (threshold chosen on the validation recordings)",
        "tstr_balanced_accuracy": tstr["window"]["balanced_accuracy"],
        **gain,
        **embedding_measures(f_real, f_synth, seed),
        "feature_space": f"pre-logit features of the real-only {headline.model} detector (not a public model)",
        "gain_recipe": {"epochs": recipe.epochs, "model": recipe.model},
        "ratio": cfg.ratio,
        "classes": cfg.classes,
        "n_generated": int(len(synth_x)),
        "n_added": int(len(added)),
        "arms": arms.done,
        "real_only": {"detection": real_only},
    }


@task(name="synth-usefulness", cache_policy=NO_CACHE)
def synth_usefulness_eeg_task(
    *,
    cfg: EegSynthConfig,
    ctx: RunContext,
    ingest: StageResult,
    label: StageResult,
    augment: StageResult,
    synth: StageResult,
    train: StageResult,
    evaluate: StageResult,
) -> StageResult:
    """Run the detection arms (through the train cache), TSTR, C2ST and the copy check; writes synthetic.json.

    Args:
        cfg: The synth section (seeds, gain epochs, ratio, classes).
        ctx: The run's context; the entry is cached as ``synth-usefulness`` and refreshed with that stage name.
        ingest: The ingest stage's record (signals, recordings and seizures tables).
        label: The label stage's record (windows; ``window_s``, ``step_s``, ``window_samples``).
        augment: The augment stage's record (the arms' augmentation pipeline).
        synth: The synth stage's record (its windows; ``classes`` and ``synthetic_weight``).
        train: The detection training's record (``train-detection``): its ``summary["recipe"]`` is the headline
            recipe of the arms.
        evaluate: The evaluate stage's record: ``detection_threshold_metric`` and ``detection_smooth_windows`` of
            its summary score every arm.
    """
    logger = get_run_logger()
    headline = EegTrainConfig.model_validate(train.summary["recipe"])
    scoring = {k: evaluate.summary[k] for k in ("detection_threshold_metric", "detection_smooth_windows")}
    key = stage_key("synth-usefulness", label.key, augment.key, synth.key, cfg, headline, scoring, ctx.seed)

    def build(out: Path) -> dict:
        arms = _Arms(ctx, ingest, label, augment, scoring, logger)
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
