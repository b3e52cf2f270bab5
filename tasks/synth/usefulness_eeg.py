"""Does the EEG GAN's data help seizure detection? Measured in the run on the real test recordings.

The same four measurements as for images (:mod:`tasks.synth.usefulness_images`): the paired real-only vs
real + synthetic gain over seeds (test window balanced accuracy, threshold chosen on the validation recordings),
train-on-synthetic / test-on-real, and a classifier two-sample test, copy rate and Fréchet distance in the
feature space of the real-only detector. The GAN makes equal numbers of ictal and interictal windows while real
training windows are a few per cent ictal, so the C2ST draws the same number per class on both sides and is read
beside a real-vs-real reference (validation vs training recordings); the copy check runs again on the signals.
Every arm is a detection training in the train stage's cache, so the arm with the run's seed and recipe is the
headline training and a real-only arm reuses earlier runs.

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
from tasks.synth.usefulness import paired_gain, synthetic_measures
from tasks.window_classifier import detection_arm, detection_synthetic, embed_windows

#: Real windows embedded for the C2ST / copy check (a seeded sample; enough for stable nearest neighbours).
MAX_EMBED_WINDOWS = 2000
#: The measurements the stage record's summary carries (synthetic.json has them all).
SUMMARY_KEYS = ("tstr_balanced_accuracy", "gain_mean", "gain_sd", "c2st_accuracy", "c2st_reference", "nn_copy_rate")


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


def _sample(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """At most ``MAX_EMBED_WINDOWS`` rows, a seeded sample in table order."""
    if len(frame) <= MAX_EMBED_WINDOWS:
        return frame
    return frame.sample(n=MAX_EMBED_WINDOWS, random_state=seed).sort_index()


def _distribution_measures(
    arms: _Arms, headline: EegTrainConfig, synth: StageResult, weights: Path, seed: int
) -> tuple[dict[str, Any], int]:
    """C2ST with its real-vs-real reference, copy checks in feature and signal space, Fréchet distance; and the
    number of synthetic windows.

    Real windows: a seeded sample of the detection training windows (the GAN's pool) and of the validation
    recordings' clean windows (the reference), embedded by the real-only detector ``weights``; the C2ST compares
    each class with the same number of windows on both sides (:func:`tasks.synth.usefulness.c2st_with_reference`).
    """
    train = _sample(detection_training_windows(arms.windows), seed)
    val_all = arms.windows[arms.windows["split"] == "val"]
    val = _sample(val_all[(val_all["ictal"] == 1) | (val_all["seizure_id"].astype(str) == "")], seed)
    n_samples = int(arms.label.summary["window_samples"])
    signals = arms.ingest.dir / "signals"
    real_x = load_windows(train, signals, n_samples, headline.normalize)
    val_x = load_windows(val, signals, n_samples, headline.normalize) if len(val) else None
    synth_x, manifest = read_synthetic(synth.dir)
    synth_x = np.asarray(synth_x)
    f_train, f_synth = embed_windows(weights, real_x), embed_windows(weights, synth_x)
    f_val = embed_windows(weights, val_x) if val_x is not None else np.zeros((0, f_train.shape[1]))
    measures = synthetic_measures(
        (f_train, train["ictal"].to_numpy().astype(np.int64)),
        (f_val, val["ictal"].to_numpy().astype(np.int64)),
        (f_synth, manifest["label"].to_numpy().astype(np.int64)),
        (real_x.reshape(len(real_x), -1), synth_x.reshape(len(synth_x), -1)),
        ("interictal", "ictal"),
        seed,
    )
    return measures, int(len(synth_x))


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
    measures, n_generated = _distribution_measures(arms, headline, synth, real_main.dir / "weights.pt", seed)
    return {
        "task": "detection",
        "score": "test window balanced accuracy (threshold chosen on the validation recordings)",
        "tstr_balanced_accuracy": tstr["window"]["balanced_accuracy"],
        **gain,
        **measures,
        "feature_space": f"pre-logit features of the real-only {headline.model} detector (not a public model)",
        "gain_recipe": {"epochs": recipe.epochs, "model": recipe.model},
        "ratio": cfg.ratio,
        "classes": cfg.classes,
        "n_generated": n_generated,
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
