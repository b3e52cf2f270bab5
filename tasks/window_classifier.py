"""The EEG window classifier: balanced training sets, the seeded fit, scoring, and the cached detection training.

Both the train stage (:mod:`tasks.train.eeg`) and the synthetic-data experiment of the synth stage
(:mod:`tasks.synth.usefulness_eeg`) train window classifiers, so the fit lives here, on the ground floor, and
neither stage imports the other. Windows are read lazily from the ingest stage's memory-mapped signals
(:class:`tasks.eeg_windows.WindowDataset`); the sampler gives every window its own augmentation seed, so runs repeat
exactly for a seed. Seizure windows are rare, so each training set keeps every positive window and a seeded sample
of at most ``negatives_per_positive`` negatives per positive, and the loss is class-balanced on top.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from models.registry import create_model
from models.runtime import select_device
from models.training import FitConfig, FitResult, fit, predict_proba
from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import EegTrainConfig
from tasks.eeg_augmentation import EEGAugment, eeg_augment_from_record
from tasks.eeg_windows import ArrayWindows, WindowDataset, read_synthetic, read_windows, synthetic_selection
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
    """A fitted model, its fit history and the registry name and kwargs it was built with."""

    model: torch.nn.Module
    result: FitResult
    model_kwargs: dict[str, Any]
    normalize: str = "recording"
    notes: list[str] = field(default_factory=list)  # fallbacks taken, one sentence each


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
    normalize: str | None = None,
) -> EegFit:
    """Fit one registry EEG model on ``train`` windows (balanced), early-stopping on ``val`` when given.

    ``synthetic`` windows (already in the classifier's normalisation) are added to the balanced real windows, or
    replace them with ``synthetic_only`` (train on synthetic, test on real); augmentation applies to both.
    ``normalize`` overrides ``cfg.normalize`` (prediction uses ``cfg.normalize_prediction``). A ``val`` with one
    class cannot rank epochs, so early stopping is then off; the returned ``notes`` say so for the log and report.
    """
    device = select_device(cfg.device)
    name = model_name or cfg.model
    norm = normalize or cfg.normalize
    notes: list[str] = []
    train = balance(train, label_column, cfg.negatives_per_positive, seed)
    labels = train[label_column].to_numpy().astype(np.int64)
    weighted = synthetic is not None and synthetic.weight is not None
    base: Dataset = WindowDataset(
        train.assign(_w=1.0),
        signals_dir,
        window_samples,
        label_column=label_column,
        normalize=norm,
        weight_column="_w" if weighted else None,
        sfreq=sfreq,
    )
    if synthetic is not None:
        base = synthetic if synthetic_only else ConcatDataset([base, synthetic])
        labels = synthetic.y if synthetic_only else np.concatenate([labels, synthetic.y])
    train_loader = _loader(AugmentedWindows(base, augment), cfg, device, SeededSampler(len(base), seed))
    val_loader = None
    if val is not None and len(val) and val[label_column].nunique() == 2:
        val_set = WindowDataset(
            val, signals_dir, window_samples, label_column=label_column, normalize=norm, sfreq=sfreq
        )
        val_loader = _loader(val_set, cfg, device)
    elif val is not None:
        what = "no windows" if not len(val) else f"one class ({label_column}={int(val[label_column].iloc[0])})"
        notes.append(f"validation has {what}: early stopping was off (trained all {epochs or cfg.epochs} epochs)")
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
    return EegFit(model, result, {"name": name, **kwargs}, norm, notes)


def predict_windows(
    model: torch.nn.Module,
    windows: pd.DataFrame,
    signals_dir: Path,
    window_samples: int,
    cfg: EegTrainConfig,
    label_column: str,
    normalize: str | None = None,
    sfreq: float | None = None,
) -> np.ndarray:
    """Positive-class probability for every row of ``windows``, in order (``normalize`` overrides
    ``cfg.normalize``; ``"causal"`` needs ``sfreq``)."""
    if windows.empty:
        return np.zeros(0)
    device = select_device(cfg.device)
    frame = windows.assign(**{label_column: windows[label_column].clip(lower=0)})
    data = WindowDataset(
        frame,
        signals_dir,
        window_samples,
        label_column=label_column,
        normalize=normalize or cfg.normalize,
        sfreq=sfreq,
    )
    return predict_proba(model, _loader(data, cfg, device), device=device, amp=cfg.amp)[:, 1]


def model_record(
    fit_out: EegFit, task_name: str, ingest: StageResult, label: StageResult, cfg: EegTrainConfig
) -> dict[str, Any]:
    """What ``model.pt`` holds: weights plus everything needed to use them (docs/architecture.md)."""
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
        "normalize": fit_out.normalize,
    }


def embed_windows(weights_path: Path, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Pre-logit features ``(N, F)`` of a trained vigil EEG model for windows already in its normalisation.

    Args:
        weights_path: A ``weights.pt`` written by :func:`model_record` (architecture, kwargs and weights).
        x: Windows ``(N, C, T)`` (a memory map is fine: batches are copied).
        batch_size: Windows per forward pass.
    """
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


# --------------------------------------------------------------------------------------------- detection arm
def label_context(label: StageResult) -> tuple[pd.DataFrame, int, float]:
    """The label stage's windows, window length in samples and sampling rate in Hz."""
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


def detection_synthetic(synth: StageResult, label: StageResult, all_rows: bool = False) -> tuple[ArrayWindows, dict]:
    """The synth stage's windows an arm adds, and what identifies them in the arm's cache key.

    Args:
        synth: The synth stage's record; its summary says which ``classes`` the real + synthetic arm adds and
            the ``synthetic_weight`` of a synthetic window in the loss.
        label: The label stage's record (the detection training windows decide which class is the minority).
        all_rows: Every synthetic window, whatever ``classes`` says (train on synthetic, test on real).
    """
    array, manifest = read_synthetic(synth.dir)
    chosen = synth.summary["classes"]
    weight_value = float(synth.summary["synthetic_weight"])
    if all_rows:
        idx = np.arange(len(manifest))
    else:
        idx = synthetic_selection(manifest, chosen, read_windows(label.dir))
    weight = None if weight_value == 1.0 else weight_value
    windows = ArrayWindows(array[idx], manifest["label"].to_numpy()[idx], weight)
    key = {"key": synth.key, "classes": "all" if all_rows else chosen, "weight": weight_value}
    return windows, key


def _detection_models(cfg: EegTrainConfig) -> list[str]:
    """The primary detector first, then the ``compare`` models (each once)."""
    return [cfg.model, *[m for m in cfg.compare if m != cfg.model]]


def _save_detector(
    folder: Path, fitted: EegFit, scored: pd.DataFrame, score: np.ndarray, record: dict[str, Any]
) -> None:
    """``predictions.csv`` (val and test windows), ``weights.pt`` and ``history.json`` of one detector."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"window_id": scored["window_id"], "split": scored["split"], "score": score}).to_csv(
        folder / "predictions.csv", index=False
    )
    torch.save(record, folder / "weights.pt")
    (folder / "history.json").write_text(json.dumps(fitted.result.history, indent=2))


def detection_arm(
    cfg: EegTrainConfig,
    *,
    ctx: RunContext,
    ingest: StageResult,
    label: StageResult,
    augment: StageResult,
    seed: int,
    synthetic: ArrayWindows | None = None,
    synthetic_key: dict | None = None,
    synthetic_only: bool = False,
    checkpoint_name: str = "detection",
    logger: Any = None,
) -> StageResult:
    """Train the detector (and ``cfg.compare`` models) through the train stage's cache; score val and test windows.

    Shared by the train stage and the synthetic-data experiment of the synth stage, which trains its arms with it.
    Without synthetic windows the key is the plain detection training's, so the synthetic-data comparison's
    real-only arm reuses what a run without synth already trained. The augmentation is rebuilt from the augment
    stage's record; the summary keeps ``recipe`` (``cfg`` as a dict) so the experiment can train more arms of it.
    """
    log = logger or get_run_logger()
    parts: list = [label.key, cfg, augment.summary["config"], seed]
    if synthetic is not None:
        parts.append({"synthetic": synthetic_key, "synthetic_only": synthetic_only})
    key = stage_key("train-detection", *parts)

    def build(out: Path) -> dict:
        windows, n_samples, sfreq = label_context(label)
        signals = ingest.dir / "signals"
        # Windows that only graze a seizure are neither clearly ictal nor clearly not: left out of training.
        clean = windows[(windows["ictal"] == 1) | (windows["seizure_id"] == "")]
        train = clean[clean["split"] == "train"]
        val = clean[clean["split"] == "val"]
        scored = windows[windows["split"].isin(["val", "test"])]
        pipeline = eeg_augment_from_record(augment, sfreq)
        summary: dict = {"models": {}, "recipe": cfg.model_dump(mode="json")}
        for name in _detection_models(cfg):
            fitted = train_window_model(
                train,
                val,
                signals,
                n_samples,
                len(ingest.summary["channels"]),
                sfreq,
                "ictal",
                cfg,
                pipeline,
                seed,
                model_name=name,
                checkpoint_dir=Path(ctx.run_dir) / "checkpoints" / f"{checkpoint_name}-{name}",
                on_epoch_end=_epoch_logger(log, f"detection {name}"),
                synthetic=synthetic,
                synthetic_only=synthetic_only,
            )
            score = predict_windows(fitted.model, scored, signals, n_samples, cfg, "ictal", sfreq=sfreq)
            for note in fitted.notes:
                log.warning("train detection %s: %s", name, note)
            folder = out if name == cfg.model else out / "compare" / name
            _save_detector(folder, fitted, scored, score, model_record(fitted, "detection", ingest, label, cfg))
            summary["models"][name] = {
                "best_epoch": fitted.result.best_epoch,
                "epochs_run": fitted.result.epochs_run,
                "device": fitted.result.device,
                "n_train_windows": len(train),
                "n_train_synthetic": 0 if synthetic is None else len(synthetic),
                "fallbacks": fitted.notes,
            }
        return summary

    result = run_stage(StageCache(ctx.cache_root), "train", key, build, ctx.refreshes("train"))
    log.info("train detection: %s%s", result.summary.get("models"), " (cached)" if result.cached else "")
    return result
