"""The train stage for EEG windows: detection on a recording split, prediction over leave-one-seizure-out folds.

The fit itself (balanced training sets, seeded augmentation, scoring) is the ground floor's
:mod:`tasks.window_classifier`, shared with the synthetic-data experiment of the synth stage; the augmentation is
rebuilt from the augment stage's record, and the synthetic windows (which classes, at which loss weight) from the
synth stage's record, so this stage reads no other stage's config section.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import EegTrainConfig
from tasks.eeg_augmentation import EEGAugment, eeg_augment_from_record
from tasks.eeg_windows import FOLD_UNUSED
from tasks.rundir import RunContext
from tasks.window_classifier import (
    detection_arm,
    detection_synthetic,
    label_context,
    model_record,
    predict_windows,
    train_window_model,
)


@task(name="train-detection", cache_policy=NO_CACHE)
def train_detection_task(
    *,
    cfg: EegTrainConfig,
    ctx: RunContext,
    ingest: StageResult,
    label: StageResult,
    augment: StageResult,
    synth: StageResult | None = None,
) -> StageResult:
    """Train the detector on the training recordings (plus synthetic windows when the synth stage ran)."""
    records = {"ctx": ctx, "ingest": ingest, "label": label, "augment": augment}
    if synth is None:
        return detection_arm(cfg, **records, seed=ctx.seed)
    windows, key = detection_synthetic(synth, label)
    return detection_arm(cfg, **records, seed=ctx.seed, synthetic=windows, synthetic_key=key)


def _fold_parts(windows: pd.DataFrame, folds: list[int], i: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training windows (labelled, outside the test and validation folds), validation fold and test fold of the
    i-th fold. With fewer than 3 folds there is no fold to spare for validation: the training fold itself then
    serves as validation (early stopping off, threshold chosen on training data; the fold's summary says so)."""
    k = folds[i]
    labelled = windows[windows["pred_label"] >= 0]
    test = windows[windows["fold"] == k]
    if len(folds) >= 3:
        val_fold = folds[(i + 1) % len(folds)]
        val = windows[windows["fold"] == val_fold]
        train = labelled[~labelled["fold"].isin([k, val_fold])]
    else:
        train = labelled[labelled["fold"] != k]
        val = windows[windows["fold"].isin([f for f in folds if f != k])]
    return train, val, test


def cross_validate_prediction(
    windows: pd.DataFrame,
    signals_dir: Path,
    window_samples: int,
    n_chans: int,
    sfreq: float,
    cfg: EegTrainConfig,
    augment: EEGAugment,
    seed: int,
    checkpoints: Path,
    on_fold_end: Callable[[int, int, int, int], None] | None = None,
) -> tuple[pd.DataFrame, list[int], list[str]]:
    """Leave-one-seizure-out scores of whole recordings: per test fold ``k``, train on the labelled windows of the
    other folds with the next fold held out, then score **every** window of fold ``k``'s recordings
    (``role="test"``) and of the held-out fold's (``role="val"``, for early stopping on its labelled windows and
    for the fold's threshold, which the evaluation chooses on the smoothed stream of those recordings).

    Args:
        windows: Every window with a fold (:func:`tasks.label.splits.prediction_folds`), labelled or not.
        signals_dir: The ingest stage's ``signals`` folder.
        window_samples: Samples per window.
        n_chans: Channels per window.
        sfreq: Sampling rate in Hz.
        cfg: The train section (``normalize_prediction`` is the normalisation).
        augment: The augmentation pipeline.
        seed: Fold ``k`` trains with ``seed + k``.
        checkpoints: Folder of the per-fold checkpoint folders.
        on_fold_end: Called with ``(i, n_folds, k, best_epoch)`` after the i-th fold (1-based).

    Returns:
        ``window_id, fold, role, score`` rows, every fold's best epoch in fold order, and the fallbacks taken
        (one sentence each).
    """
    folds = sorted(int(f) for f in windows["fold"].unique() if f >= 0)
    rows = []
    best_epochs = []
    notes: list[str] = []
    if len(folds) < 3:
        notes.append(
            f"only {len(folds)} prediction folds: no fold left for validation, so each fold's threshold was chosen "
            "on its training fold and early stopping was off"
        )
    for i, k in enumerate(folds):
        train, val, test = _fold_parts(windows, folds, i)
        val_labelled = val[val["pred_label"] >= 0] if len(folds) >= 3 else None
        if val_labelled is not None and val_labelled["pred_label"].nunique() < 2:
            notes.append(f"fold {k}: its validation fold has one class; early stopping was off")
        fitted = train_window_model(
            train,
            val_labelled,
            signals_dir,
            window_samples,
            n_chans,
            sfreq,
            "pred_label",
            cfg,
            augment,
            seed + k,
            checkpoint_dir=checkpoints / f"prediction-fold{k}",
            normalize=cfg.normalize_prediction,
        )
        best_epochs.append(fitted.result.best_epoch)
        for role, part in (("test", test), ("val", val)):
            score = predict_windows(
                fitted.model, part, signals_dir, window_samples, cfg, "pred_label", cfg.normalize_prediction, sfreq
            )
            rows.append(pd.DataFrame({"window_id": part["window_id"], "fold": k, "role": role, "score": score}))
        if on_fold_end is not None:
            on_fold_end(i + 1, len(folds), k, fitted.result.best_epoch)
    return pd.concat(rows), best_epochs, notes


@task(name="train-prediction", cache_policy=NO_CACHE)
def train_prediction_task(
    *, cfg: EegTrainConfig, ctx: RunContext, ingest: StageResult, label: StageResult, augment: StageResult
) -> StageResult:
    """Leave-one-seizure-out: per fold, train on the other folds (one held out for early stopping and the
    threshold), score the fold's windows; then train the deployed model on all labelled windows for the median
    of the folds' best epochs."""
    logger = get_run_logger()
    key = stage_key("train-prediction", label.key, cfg, augment.summary["config"], ctx.seed)

    def log_fold(i: int, n: int, k: int, best_epoch: int) -> None:
        logger.info("train prediction: fold %d/%d (seizure fold %d) done, best epoch %d", i, n, k, best_epoch)

    def build(out: Path) -> dict:
        windows, n_samples, sfreq = label_context(label)
        signals = ingest.dir / "signals"
        n_chans = len(ingest.summary["channels"])
        scored = windows[windows["fold"] != FOLD_UNUSED]
        usable = scored[scored["pred_label"] >= 0]
        n_folds = int(scored["fold"].nunique())
        if n_folds < 2:
            raise StageError(
                f"prediction has {n_folds} fold of whole recordings: the qualifying seizures share their recordings, "
                "and leave-one-seizure-out needs two folds; add recordings or set label.scheme=lopo"
            )
        pipeline = eeg_augment_from_record(augment, sfreq)
        checkpoints = Path(ctx.run_dir) / "checkpoints"
        fold_predictions, best_epochs, notes = cross_validate_prediction(
            scored, signals, n_samples, n_chans, sfreq, cfg, pipeline, ctx.seed, checkpoints, log_fold
        )
        for note in notes:
            logger.warning("train prediction: %s", note)
        fold_predictions.to_csv(out / "fold_predictions.csv", index=False)
        epochs = max(1, int(np.median(best_epochs)))
        final = train_window_model(
            usable,
            None,
            signals,
            n_samples,
            n_chans,
            sfreq,
            "pred_label",
            cfg,
            pipeline,
            ctx.seed,
            epochs=epochs,
            checkpoint_dir=checkpoints / "prediction-final",
            normalize=cfg.normalize_prediction,
        )
        torch.save(model_record(final, "prediction", ingest, label, cfg), out / "weights.pt")
        return {
            "n_folds": len(best_epochs),
            "final_epochs": epochs,
            "fold_best_epochs": best_epochs,
            "device": final.result.device,
            "normalize": cfg.normalize_prediction,
            "fallbacks": notes,
        }

    result = run_stage(StageCache(ctx.cache_root), "train", key, build, ctx.refreshes("train"))
    logger.info("train prediction: %s%s", result.summary, " (cached)" if result.cached else "")
    return result
