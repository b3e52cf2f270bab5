"""The train stage for inspection images: decode once, augment on the fly, fit a registry model.

Images are decoded and resized once into one uint16 array (16-bit keeps 12/16-bit sensors' precision); the
Dataset and sampler live here, in an importable module, because served Prefect runs cannot pickle classes defined
in a flow's entry file (PREFECT_NOTES.md). The sampler hands each index its own augmentation seed derived from
(seed, epoch, position), so a run is reproducible whatever the number of DataLoader workers.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models.registry import create_model
from models.training import FitConfig, FitResult, fit, predict_proba, select_device
from tasks.augment.images import apply, build_pipeline
from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import AugmentConfig, SynthConfig, TrainConfig
from tasks.image_io import load_image
from tasks.rundir import RunContext
from tasks.sampling import SeededSampler, class_weights, default_workers
from tasks.synthetic_samples import gan_training_rows, read_manifest, synthetic_rows


def decode_images(paths: list[str], size: int, channels: int, array_path: Path) -> np.ndarray:
    """All images as one memory-mapped uint16 array (N, size, size, channels) at ``array_path``."""
    arr = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint16, shape=(len(paths), size, size, channels))
    for i, path in enumerate(paths):
        arr[i] = np.round(load_image(path, size, channels) * 65535.0).astype(np.uint16)
    arr.flush()
    return np.load(array_path, mmap_mode="r")


class ImageArrayDataset(Dataset):
    """Rows of the decoded array, optionally augmented, normalised, as ``(x (C, H, W), y, weight)``."""

    def __init__(
        self,
        array: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray,
        mean: list[float],
        std: list[float],
        transform: A.Compose | None = None,
    ) -> None:
        self.array = array
        self.labels = labels.astype(np.int64)
        self.weights = weights.astype(np.float32)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int, float]:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        image = self.array[index].astype(np.float32) / 65535.0
        if self.transform is not None:
            image = apply(self.transform, image, seed)
        image = (image - self.mean) / self.std
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return x, int(self.labels[index]), float(self.weights[index])


def channel_stats(array: np.ndarray, max_images: int = 2048) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of the training images (a strided subset bounds the cost on large sets)."""
    step = max(1, math.ceil(len(array) / max_images))
    sample = np.asarray(array[::step], dtype=np.float32) / 65535.0
    mean = sample.mean(axis=(0, 1, 2))
    std = np.maximum(sample.std(axis=(0, 1, 2)), 1e-3)
    return [float(m) for m in mean], [float(s) for s in std]


@dataclass
class TrainOutput:
    weights_path: Path
    predictions_path: Path
    history: list[dict]
    fit: FitResult
    n_parameters: int


def train_classifier(
    table: pd.DataFrame,
    class_names: list[str],
    cfg: TrainConfig,
    transform: A.Compose,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path | None,
    on_epoch_end: Callable[[dict], None] | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
) -> TrainOutput:
    """Fit ``cfg.model`` on the train split with early stopping on val; write weights and val/test predictions.

    ``table`` is the label stage's split table (SPLIT_COLUMNS). Outputs go to ``out_dir``: ``images.npy`` is not
    kept (it is cheap to rebuild), ``weights.pt`` and ``predictions.csv`` are.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    grey = bool(table["grey"].all()) if "grey" in table else True
    channels = 1 if grey else 3
    array = decode_images(table["path"].tolist(), cfg.image_size, channels, out_dir / "images.npy")
    split = table["split"].to_numpy()
    labels = table["label"].to_numpy().astype(np.int64)
    weights = table["weight"].to_numpy().astype(np.float32)
    idx = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    train_array = array[idx["train"]]
    mean, std = channel_stats(train_array)

    def dataset(part: str, augment: bool) -> ImageArrayDataset:
        return ImageArrayDataset(
            array[idx[part]], labels[idx[part]], weights[idx[part]], mean, std, transform if augment else None
        )

    device = select_device(cfg.device)
    workers = default_workers(device, cfg.num_workers)
    loader_kw = {
        "batch_size": cfg.batch_size,
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,
    }
    train_loader = DataLoader(
        dataset("train", True), sampler=SeededSampler(len(idx["train"]), seed), drop_last=False, **loader_kw
    )
    val_loader = DataLoader(dataset("val", False), shuffle=False, **loader_kw)
    test_loader = DataLoader(dataset("test", False), shuffle=False, **loader_kw)

    torch.manual_seed(seed)
    model_kwargs = {
        **cfg.model_kwargs,
        "in_chans": channels,
        "num_classes": len(class_names),
        "drop_rate": cfg.drop_rate,
    }
    model = create_model(cfg.model, **model_kwargs)
    fit_cfg = FitConfig(
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        patience=cfg.patience,
        monitor=cfg.monitor,
        amp=cfg.amp,
        amp_cpu=cfg.amp_cpu,
        device=str(device),
        label_smoothing=cfg.label_smoothing,
        seed=seed,
    )
    cw = class_weights(labels[idx["train"]], len(class_names)) if cfg.class_balanced else None
    result = fit(
        model,
        train_loader,
        val_loader,
        fit_cfg,
        class_weights=cw,
        checkpoint_dir=checkpoint_dir,
        on_epoch_end=on_epoch_end,
        on_batch_end=on_batch_end,
    )
    rows = []
    for part, loader in (("val", val_loader), ("test", test_loader)):
        proba = predict_proba(model, loader, device=device, amp=cfg.amp, amp_cpu=cfg.amp_cpu)
        for j, i in enumerate(idx[part]):
            rows.append(
                {"sample_id": table["sample_id"].iat[i], "split": part, "label": int(labels[i])}
                | {f"prob_{k}": float(proba[j, k]) for k in range(proba.shape[1])}
            )
    predictions_path = out_dir / "predictions.csv"
    pd.DataFrame(rows).to_csv(predictions_path, index=False)
    weights_path = out_dir / "weights.pt"
    torch.save(
        {
            "arch": cfg.model,
            "kwargs": model_kwargs,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "class_names": list(class_names),
            "in_chans": channels,
            "image_size": cfg.image_size,
            "normalization": {"mean": mean, "std": std, "scale": "pixel / dtype max (255 or 65535)"},
            "preprocess": "decode with OpenCV (BGR->RGB), resize to image_size x image_size with INTER_AREA",
            "seed": seed,
            "best_epoch": result.best_epoch,
        },
        weights_path,
    )
    (out_dir / "images.npy").unlink(missing_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    return TrainOutput(weights_path, predictions_path, result.history, result, n_params)


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from a vigil ``model.pt`` (safe ``weights_only`` load) and return it with its metadata."""
    meta = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(meta["arch"], **meta["kwargs"])
    model.load_state_dict(meta["state_dict"])
    model.eval()
    return model, meta


class _Progress:
    """Training progress for people: a Prefect progress artifact, a terminal bar, and a log line per epoch."""

    def __init__(self, epochs: int, logger: logging.Logger) -> None:
        self.epochs = epochs
        self.logger = logger
        self.artifact_id = create_progress_artifact(progress=0.0, key=None, description=f"training: 0/{epochs} epochs")
        self.bar: tqdm | None = None
        self.epoch = 0

    def on_batch_end(self, batch: int, n_batches: int) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=n_batches,
                desc=f"epoch {self.epoch + 1}/{self.epochs}",
                file=sys.stderr,
                leave=False,
                mininterval=1.0,
                disable=None,
            )
        self.bar.update(1)

    def on_epoch_end(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.epoch = int(row["epoch"])
        self.logger.info(
            "train: epoch %d/%d loss %.4f val_loss %.4f val_bacc %.3f (%.1f s, %.0f img/s)",
            self.epoch,
            self.epochs,
            row["train_loss"],
            row["val_loss"],
            row["val_balanced_accuracy"],
            row["seconds"],
            row.get("images_per_s", 0.0),
        )
        update_progress_artifact(
            self.artifact_id,
            progress=100.0 * self.epoch / self.epochs,
            description=f"training: {self.epoch}/{self.epochs} epochs, val balanced accuracy "
            f"{row['val_balanced_accuracy']:.3f}",
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        update_progress_artifact(self.artifact_id, progress=100.0, description="training finished")


def compose_table(label_table: pd.DataFrame, synthetic: pd.DataFrame | None, synthetic_only: bool) -> pd.DataFrame:
    """The training table of one arm: the real split table, plus synthetic train rows, or with them instead.

    ``synthetic_only`` replaces the real train rows (train-on-synthetic, test-on-real); validation and test rows
    are always the real ones, so every arm is scored on the same real images.
    """
    if synthetic is None or synthetic.empty:
        if synthetic_only:
            raise StageError("train: a synthetic-only arm needs synthetic samples; the synth stage wrote none")
        return label_table
    rows = synthetic.copy()
    if "grey" in label_table:
        rows["grey"] = bool(label_table["grey"].all())
    base = label_table[label_table["split"] != "train"] if synthetic_only else label_table
    return pd.concat([base, rows[[c for c in rows.columns if c in label_table.columns]]], ignore_index=True)


def train_arm(
    cfg: TrainConfig,
    label: StageResult,
    augment: StageResult,
    augment_cfg: AugmentConfig,
    ctx: RunContext,
    *,
    seed: int,
    synthetic: pd.DataFrame | None = None,
    synthetic_key: dict | None = None,
    synthetic_only: bool = False,
    checkpoint_name: str | None = None,
    logger: logging.Logger | None = None,
) -> StageResult:
    """Fit one classifier through the stage cache: the flow's model, or one arm of the synthetic-data comparison.

    Without synthetic rows the key is exactly the plain train stage's, so the comparison's real-only arm reuses a
    training that an earlier run without synth (or another arm with the same seed and recipe) already did.
    ``synthetic_key`` identifies the synthetic rows (synth stage key and how they were selected).
    """
    log = logger or get_run_logger()
    parts: list = [label.key, augment.key, cfg, seed]
    if synthetic is not None:
        parts.append({"synthetic": synthetic_key, "synthetic_only": synthetic_only})
    key = stage_key("train", *parts)

    def build(out: Path) -> dict:
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        table = compose_table(table, synthetic, synthetic_only)
        class_names = label.summary["class_names"]
        progress = _Progress(cfg.epochs, log)
        checkpoint_dir = Path(ctx.run_dir) / "checkpoints"
        if checkpoint_name:
            checkpoint_dir = checkpoint_dir / checkpoint_name
        try:
            output = train_classifier(
                table,
                class_names,
                cfg,
                build_pipeline(augment_cfg, seed),
                seed,
                out,
                checkpoint_dir,
                on_epoch_end=progress.on_epoch_end,
                on_batch_end=progress.on_batch_end,
            )
        finally:
            progress.close()
        (out / "history.json").write_text(json.dumps(output.history, indent=2))
        if synthetic is not None:
            table.to_csv(out / "splits.csv", index=False)  # the run's splits.csv then lists the synthetic rows
        fit = output.fit
        if fit.resumed_from_epoch is not None:
            log.info("train: resumed from the checkpoint of epoch %d", fit.resumed_from_epoch)
        split = table["split"]
        synth_mask = table["synthetic"].astype(str).str.lower().isin(("true", "1"))
        return {
            "model": cfg.model,
            "device": fit.device,
            "best_epoch": fit.best_epoch,
            "epochs_run": fit.epochs_run,
            "stopped_early": fit.stopped_early,
            "resumed_from_epoch": fit.resumed_from_epoch,
            "n_parameters": output.n_parameters,
            "n_train_real": int(((split == "train") & ~synth_mask).sum()),
            "n_train_synthetic": int(((split == "train") & synth_mask).sum()),
            "seed": seed,
        }

    result = run_stage(StageCache(ctx.cache_root), "train", key, build, ctx.refreshes("train"))
    if not result.error:
        s = result.summary
        log.info(
            "train: %s on %s, best epoch %s of %s%s",
            s["model"],
            s["device"],
            s["best_epoch"],
            s["epochs_run"],
            " (cached)" if result.cached else "",
        )
    return result


@task(name="train", cache_policy=NO_CACHE)
def train_images_task(
    cfg: TrainConfig,
    label: StageResult,
    augment: StageResult,
    augment_cfg: AugmentConfig,
    ctx: RunContext,
    synth: StageResult | None = None,
    synth_cfg: SynthConfig | None = None,
) -> StageResult:
    """Fit the classifier (on real + synthetic images when the synth stage ran); cached, resumable."""
    if synth is None or synth_cfg is None:
        return train_arm(cfg, label, augment, augment_cfg, ctx, seed=ctx.seed)
    rows, rows_key = synthetic_selection(synth, label, synth_cfg)
    return train_arm(cfg, label, augment, augment_cfg, ctx, seed=ctx.seed, synthetic=rows, synthetic_key=rows_key)


def synthetic_selection(synth: StageResult, label: StageResult, synth_cfg: SynthConfig) -> tuple[pd.DataFrame, dict]:
    """The synth stage's rows that the real + synthetic arm adds (``synth.classes``), and what identifies them."""
    manifest = read_manifest(synth.dir)
    table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
    real_train = gan_training_rows(table)["label"].to_numpy().astype(np.int64)
    rows = synthetic_rows(manifest, real_train, synth_cfg.classes, synth_cfg.synthetic_weight)
    return rows, {"key": synth.key, "classes": synth_cfg.classes, "weight": synth_cfg.synthetic_weight}
