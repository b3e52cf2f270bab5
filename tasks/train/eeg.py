"""The train stage for EEG windows: detection on a recording split, prediction over leave-one-seizure-out folds.

Windows are read lazily from the ingest stage's memory-mapped signals (``tasks.eeg_windows.WindowDataset``); the
sampler gives every window its own augmentation seed, so runs repeat exactly for a seed. Seizure windows are rare,
so each training set keeps every positive window and a seeded sample of at most ``negatives_per_positive``
negatives per positive, and the loss is class-balanced on top.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from models.registry import create_model
from models.training import FitConfig, FitResult, fit, predict_proba, select_device
from tasks.augment.eeg import EEGAugment, build_eeg_augment_from_config
from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import EegAugmentConfig, EegSynthConfig, EegTrainConfig
from tasks.eeg_windows import (
    FOLD_UNUSED,
    ArrayWindows,
    WindowDataset,
    read_synthetic,
    read_windows,
    synthetic_selection,
)
from tasks.rundir import RunContext
from tasks.sampling import SeededSampler, class_weights, default_workers


class AugmentedWindows(Dataset):
    """Real (``WindowDataset``) or synthetic (``ArrayWindows``) windows, augmented with a per-item seed.

    The seed comes from ``SeededSampler``, so a run repeats exactly whatever the number of workers.
    """

    def __init__(self, base: Dataset, augment: EEGAugment | None) -> None:
        self.base = base
        self.augment = augment

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        x, *rest = self.base[index]
        if self.augment is not None:
            arr = self.augment(np.asarray(x, dtype=np.float32), np.random.default_rng(seed))
            x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        return (x, *rest)


def balance(windows: pd.DataFrame, label_column: str, ratio: float, seed: int) -> pd.DataFrame:
    """Keep every positive window and at most ``ratio`` negatives per positive, drawn with a seed."""
    pos = windows[windows[label_column] == 1]
    neg = windows[windows[label_column] == 0]
    n_neg = min(len(neg), max(1, int(round(ratio * max(len(pos), 1)))))
    if n_neg < len(neg):
        neg = neg.sample(n=n_neg, random_state=seed)
    return pd.concat([pos, neg]).sort_index()


@dataclass
class EegFit:
    model: torch.nn.Module
    result: FitResult
    model_kwargs: dict[str, Any]


def _loader(dataset: Dataset, cfg: EegTrainConfig, device: torch.device, sampler: Any = None) -> DataLoader:
    workers = default_workers(device, cfg.num_workers)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def train_window_model(
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    signals_dir: Path,
    window_samples: int,
    n_chans: int,
    sfreq: float,
    label_column: str,
    cfg: EegTrainConfig,
    augment: EEGAugment | None,
    seed: int,
    model_name: str | None = None,
    epochs: int | None = None,
    checkpoint_dir: Path | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    synthetic: ArrayWindows | None = None,
    synthetic_only: bool = False,
) -> EegFit:
    """Fit one registry EEG model on ``train`` windows (balanced), early-stopping on ``val`` when given.

    ``synthetic`` windows (already in the classifier's normalisation) are added to the balanced real windows, or
    replace them with ``synthetic_only`` (train on synthetic, test on real); augmentation applies to both.
    """
    device = select_device(cfg.device)
    name = model_name or cfg.model
    train = balance(train, label_column, cfg.negatives_per_positive, seed)
    labels = train[label_column].to_numpy().astype(np.int64)
    weighted = synthetic is not None and synthetic.weight is not None
    base: Dataset = WindowDataset(
        train.assign(_w=1.0),
        signals_dir,
        window_samples,
        label_column=label_column,
        normalize=cfg.normalize,
        weight_column="_w" if weighted else None,
    )
    if synthetic is not None:
        base = synthetic if synthetic_only else ConcatDataset([base, synthetic])
        labels = synthetic.y if synthetic_only else np.concatenate([labels, synthetic.y])
    train_loader = _loader(AugmentedWindows(base, augment), cfg, device, SeededSampler(len(base), seed))
    val_loader = None
    if val is not None and len(val) and val[label_column].nunique() == 2:
        val_set = WindowDataset(val, signals_dir, window_samples, label_column=label_column, normalize=cfg.normalize)
        val_loader = _loader(val_set, cfg, device)
    torch.manual_seed(seed)
    kwargs = {"n_chans": n_chans, "n_times": window_samples, "n_outputs": 2, "sfreq": sfreq, "drop_rate": cfg.drop_rate}
    model = create_model(name, **kwargs)
    fit_cfg = FitConfig(
        epochs=epochs or cfg.epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        schedule="onecycle",
        patience=cfg.patience if val_loader is not None else None,
        monitor="balanced_accuracy",
        amp=cfg.amp,
        device=str(device),
        seed=seed,
    )
    result = fit(
        model,
        train_loader,
        val_loader,
        fit_cfg,
        class_weights=class_weights(labels, 2),
        checkpoint_dir=checkpoint_dir,
        on_epoch_end=on_epoch_end,
    )
    return EegFit(model, result, {"name": name, **kwargs})


def predict_windows(
    model: torch.nn.Module,
    windows: pd.DataFrame,
    signals_dir: Path,
    window_samples: int,
    cfg: EegTrainConfig,
    label_column: str,
) -> np.ndarray:
    """Positive-class probability for every row of ``windows``, in order."""
    if windows.empty:
        return np.zeros(0)
    device = select_device(cfg.device)
    frame = windows.assign(**{label_column: windows[label_column].clip(lower=0)})
    data = WindowDataset(frame, signals_dir, window_samples, label_column=label_column, normalize=cfg.normalize)
    return predict_proba(model, _loader(data, cfg, device), device=device, amp=cfg.amp)[:, 1]


def model_record(
    fit_out: EegFit, task_name: str, ingest: StageResult, label: StageResult, cfg: EegTrainConfig
) -> dict[str, Any]:
    """What ``model.pt`` holds: weights plus everything needed to use them (ARCHITECTURE.md)."""
    kwargs = dict(fit_out.model_kwargs)
    name = kwargs.pop("name")
    return {
        "arch": name,
        "kwargs": kwargs,
        "state_dict": {k: v.detach().cpu() for k, v in fit_out.model.state_dict().items()},
        "best_epoch": fit_out.result.best_epoch,
        "task": task_name,
        "channels": ingest.summary["channels"],
        "sfreq": float(label.summary["sfreq"]),
        "window_s": label.summary["window_s"],
        "normalize": cfg.normalize,
    }


# --------------------------------------------------------------------------------------------- Prefect tasks
def _context(label: StageResult) -> tuple[pd.DataFrame, int, float]:
    windows = read_windows(label.dir)
    return windows, int(label.summary["window_samples"]), float(label.summary["sfreq"])


def _epoch_logger(logger: Any, what: str) -> Callable[[dict], None]:
    def log(row: dict) -> None:
        vb = row.get("val_balanced_accuracy")
        logger.info(
            "train %s: epoch %d loss %.4f%s (%.1f s)",
            what,
            row["epoch"],
            row["train_loss"],
            f" val_bacc {vb:.3f}" if vb is not None else "",
            row["seconds"],
        )

    return log


def detection_synthetic(
    synth: StageResult, label: StageResult, synth_cfg: EegSynthConfig, all_rows: bool = False
) -> tuple[ArrayWindows, dict]:
    """The synth stage's windows an arm adds (``synth.classes``, or every class), and what identifies them."""
    array, manifest = read_synthetic(synth.dir)
    chosen = synth_cfg.classes
    if all_rows:
        idx = np.arange(len(manifest))
    else:
        idx = synthetic_selection(manifest, chosen, read_windows(label.dir))
    weight = None if synth_cfg.synthetic_weight == 1.0 else synth_cfg.synthetic_weight
    windows = ArrayWindows(array[idx], manifest["label"].to_numpy()[idx], weight)
    key = {"key": synth.key, "classes": "all" if all_rows else chosen, "weight": synth_cfg.synthetic_weight}
    return windows, key


def detection_arm(
    cfg: EegTrainConfig,
    label: StageResult,
    ingest: StageResult,
    augment_cfg: EegAugmentConfig,
    ctx: RunContext,
    *,
    seed: int,
    synthetic: ArrayWindows | None = None,
    synthetic_key: dict | None = None,
    synthetic_only: bool = False,
    checkpoint_name: str = "detection",
    logger: Any = None,
) -> StageResult:
    """Train the detector (and ``cfg.compare`` models) through the stage cache; score val and test windows.

    Without synthetic windows the key is the plain detection training's, so the synthetic-data comparison's
    real-only arm reuses what a run without synth already trained.
    """
    log = logger or get_run_logger()
    parts: list = [label.key, cfg, augment_cfg, seed]
    if synthetic is not None:
        parts.append({"synthetic": synthetic_key, "synthetic_only": synthetic_only})
    key = stage_key("train-detection", *parts)

    def build(out: Path) -> dict:
        windows, n_samples, sfreq = _context(label)
        signals = ingest.dir / "signals"
        n_chans = len(ingest.summary["channels"])
        # Windows that only graze a seizure are neither clearly ictal nor clearly not: left out of training.
        clean = windows[(windows["ictal"] == 1) | (windows["seizure_id"] == "")]
        train = clean[clean["split"] == "train"]
        val = clean[clean["split"] == "val"]
        scored = windows[windows["split"].isin(["val", "test"])]
        augment = build_eeg_augment_from_config(augment_cfg, sfreq)
        summary: dict = {"models": {}}
        for name in [cfg.model, *[m for m in cfg.compare if m != cfg.model]]:
            ckpt = Path(ctx.run_dir) / "checkpoints" / f"{checkpoint_name}-{name}"
            fitted = train_window_model(
                train,
                val,
                signals,
                n_samples,
                n_chans,
                sfreq,
                "ictal",
                cfg,
                augment,
                seed,
                model_name=name,
                checkpoint_dir=ckpt,
                on_epoch_end=_epoch_logger(log, f"detection {name}"),
                synthetic=synthetic,
                synthetic_only=synthetic_only,
            )
            score = predict_windows(fitted.model, scored, signals, n_samples, cfg, "ictal")
            folder = out if name == cfg.model else out / "compare" / name
            folder.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"window_id": scored["window_id"], "split": scored["split"], "score": score}).to_csv(
                folder / "predictions.csv", index=False
            )
            record = model_record(fitted, "detection", ingest, label, cfg)
            torch.save(record, folder / "weights.pt")
            (folder / "history.json").write_text(json.dumps(fitted.result.history, indent=2))
            summary["models"][name] = {
                "best_epoch": fitted.result.best_epoch,
                "epochs_run": fitted.result.epochs_run,
                "device": fitted.result.device,
                "n_train_windows": len(train),
                "n_train_synthetic": 0 if synthetic is None else len(synthetic),
            }
        return summary

    result = run_stage(StageCache(ctx.cache_root), "train", key, build, ctx.refreshes("train"))
    log.info("train detection: %s%s", result.summary.get("models"), " (cached)" if result.cached else "")
    return result


@task(name="train-detection", cache_policy=NO_CACHE)
def train_detection_task(
    cfg: EegTrainConfig,
    label: StageResult,
    ingest: StageResult,
    augment_cfg: EegAugmentConfig,
    ctx: RunContext,
    synth: StageResult | None = None,
    synth_cfg: EegSynthConfig | None = None,
) -> StageResult:
    """Train the detector on the training recordings (plus synthetic windows when the synth stage ran)."""
    if synth is None or synth_cfg is None:
        return detection_arm(cfg, label, ingest, augment_cfg, ctx, seed=ctx.seed)
    windows, key = detection_synthetic(synth, label, synth_cfg)
    return detection_arm(cfg, label, ingest, augment_cfg, ctx, seed=ctx.seed, synthetic=windows, synthetic_key=key)


@task(name="train-prediction", cache_policy=NO_CACHE)
def train_prediction_task(
    cfg: EegTrainConfig, label: StageResult, ingest: StageResult, augment_cfg: EegAugmentConfig, ctx: RunContext
) -> StageResult:
    """Leave-one-seizure-out: per fold, train on the other folds (one held out for early stopping and the
    threshold), score the fold's windows; then train the deployed model on all labelled windows."""
    logger = get_run_logger()
    key = stage_key("train-prediction", label.key, cfg, augment_cfg, ctx.seed)

    def build(out: Path) -> dict:
        windows, n_samples, sfreq = _context(label)
        signals = ingest.dir / "signals"
        n_chans = len(ingest.summary["channels"])
        usable = windows[(windows["pred_label"] >= 0) & (windows["fold"] != FOLD_UNUSED)]
        folds = sorted(int(f) for f in usable["fold"].unique() if f >= 0)
        augment = build_eeg_augment_from_config(augment_cfg, sfreq)
        rows = []
        best_epochs = []
        for i, k in enumerate(folds):
            val_fold = folds[(i + 1) % len(folds)]
            test = usable[usable["fold"] == k]
            val = usable[usable["fold"] == val_fold]
            train = usable[~usable["fold"].isin([k, val_fold])]
            fitted = train_window_model(
                train,
                val,
                signals,
                n_samples,
                n_chans,
                sfreq,
                "pred_label",
                cfg,
                augment,
                ctx.seed + k,
                checkpoint_dir=Path(ctx.run_dir) / "checkpoints" / f"prediction-fold{k}",
            )
            best_epochs.append(fitted.result.best_epoch)
            for role, part in (("test", test), ("val", val)):
                score = predict_windows(fitted.model, part, signals, n_samples, cfg, "pred_label")
                rows.append(pd.DataFrame({"window_id": part["window_id"], "fold": k, "role": role, "score": score}))
            logger.info(
                "train prediction: fold %d/%d (seizure fold %d) done, best epoch %d",
                i + 1,
                len(folds),
                k,
                fitted.result.best_epoch,
            )
        pd.concat(rows).to_csv(out / "fold_predictions.csv", index=False)
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
            augment,
            ctx.seed,
            epochs=epochs,
            checkpoint_dir=Path(ctx.run_dir) / "checkpoints" / "prediction-final",
        )
        record = model_record(final, "prediction", ingest, label, cfg)
        torch.save(record, out / "weights.pt")
        return {
            "n_folds": len(folds),
            "final_epochs": epochs,
            "fold_best_epochs": best_epochs,
            "device": final.result.device,
        }

    result = run_stage(StageCache(ctx.cache_root), "train", key, build, ctx.refreshes("train"))
    logger.info("train prediction: %s%s", result.summary, " (cached)" if result.cached else "")
    return result
