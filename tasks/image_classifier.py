"""The image classifier's fit and load: decode once, augment on the fly, fit a registry model, read it back.

Pure of the pipeline's machinery (no Prefect, no stage cache): the train stage and the synth stage's usefulness
experiment both fit through :func:`train_classifier` (via :mod:`tasks.image_training`), so every arm of that
experiment is trained exactly like the headline model.

Images are decoded and resized once into one uint16 array (16-bit keeps 12/16-bit sensors' precision); the
Dataset lives here, in an importable module, because served Prefect runs cannot pickle classes defined in a
flow's entry file. The sampler hands each index its own augmentation seed derived from (seed, epoch, position),
so a run is reproducible whatever the number of DataLoader workers.

With ``geometry=tile`` a file becomes several rows of that array (:func:`tasks.image_io.tile_grid`), each a training
sample with its image's label and weight (the weak, multiple-instance label); splits stay per file, so the tiles of
one image never cross splits, and val/test predictions are one row per image (:func:`tasks.image_io.aggregate_tiles`).
Early stopping watches the validation tiles under their image's label.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from models.efficientnet import load_pretrained
from models.layers import KernelHead
from models.registry import create_model
from models.runtime import select_device
from models.training import FitConfig, FitResult, fit, predict_proba
from tasks.config import TrainConfig
from tasks.image_augmentation import apply
from tasks.image_features import (
    embed,
    fit_linear_probe,
    fit_svm_probe,
    fold_into_head,
    head_spec,
    linear_probe_summary,
    split_candidate,
    svm_head,
    svm_probe_summary,
)
from tasks.image_io import aggregate_tiles, load_image, load_views
from tasks.pretrained import pretrained_models, pretrained_weights_path
from tasks.sampling import SeededSampler, class_weights, default_workers
from tasks.starting_weights import apply_starting_weights


def decode_images(paths: list[str], size: int, channels: int, array_path: Path, geometry: str = "pad") -> np.ndarray:
    """All images as one memory-mapped uint16 array (N, size, size, channels) at ``array_path``."""
    arr = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint16, shape=(len(paths), size, size, channels))
    # A memmap written on a full disk dies of SIGBUS, with no message: reserve the blocks now, so a full disk is an
    # OSError (ENOSPC) that the stage reports naming the folder.
    with open(array_path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.path.getsize(array_path))
    for i, path in enumerate(paths):
        arr[i] = np.round(load_image(path, size, channels, geometry) * 65535.0).astype(np.uint16)
    arr.flush()
    return np.load(array_path, mmap_mode="r")


def decode_tiles(
    paths: list[str], size: int, channels: int, array_path: Path, tile_px: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Every file's tiles (:func:`tasks.image_io.load_tiles`) as one memory-mapped uint16 array
    ``(n_tiles, size, size, channels)`` at ``array_path``, a file's tiles consecutive, and the tiles per file ``(N,)``.

    The count per file is known only once it is decoded, so the tiles are appended to a raw file (a full disk is an
    ``OSError`` from ``write``, not a memory-map SIGBUS) that is mapped once complete.
    """
    counts = np.zeros(len(paths), dtype=np.int64)
    with open(array_path, "wb") as handle:
        for i, path in enumerate(paths):
            tiles = load_views(path, size, channels, "tile", tile_px)
            handle.write(np.round(tiles * 65535.0).astype(np.uint16).tobytes())
            counts[i] = len(tiles)
    shape = (int(counts.sum()), size, size, channels)
    if shape[0] == 0:
        return np.zeros(shape, dtype=np.uint16), counts
    return np.memmap(array_path, dtype=np.uint16, mode="r", shape=shape), counts


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
    """What :func:`train_classifier` leaves behind: the files it wrote and the fit's history and facts."""

    weights_path: Path
    predictions_path: Path
    history: list[dict]
    fit: FitResult
    n_parameters: int


@dataclass
class _Splits:
    """The decoded images (or tiles) of one training table and how they divide into train/val/test."""

    array: np.ndarray  # (T, size, size, C) uint16, memory-mapped: T = N images, or their tiles
    labels: np.ndarray  # (T,) int64, a tile's is its image's
    weights: np.ndarray  # (T,) float32
    idx: dict[str, np.ndarray]  # split name -> array row positions (a file's tiles consecutive)
    channels: int
    mean: list[float]
    std: list[float]
    owner: np.ndarray  # (T,) the table row each array row comes from (arange(N) without tiles)
    counts: np.ndarray  # (N,) array rows per table row (all 1 without tiles)
    image_labels: np.ndarray  # (N,) int64
    image_idx: dict[str, np.ndarray]  # split name -> table row positions

    def dataset(self, part: str, transform: A.Compose | None) -> ImageArrayDataset:
        i = self.idx[part]
        return ImageArrayDataset(self.array[i], self.labels[i], self.weights[i], self.mean, self.std, transform)


def _decode_splits(
    table: pd.DataFrame, image_size: int, array_path: Path, geometry: str, tile_px: int | None = None
) -> _Splits:
    """Decode every row once (grey unless the quality stage saw colour; with ``geometry=tile`` into its tiles, each
    with the row's split, label and weight) and take channel stats on the train rows."""
    grey = bool(table["grey"].all()) if "grey" in table else True
    channels = 1 if grey else 3
    paths = table["path"].tolist()
    if geometry == "tile":
        array, counts = decode_tiles(paths, image_size, channels, array_path, tile_px)
    else:
        array, counts = decode_images(paths, image_size, channels, array_path, geometry), np.ones(len(paths), int)
    owner = np.repeat(np.arange(len(table)), counts)
    table_split = table["split"].to_numpy()
    split = table_split[owner]
    image_labels = table["label"].to_numpy().astype(np.int64)
    labels = image_labels[owner]
    weights = table["weight"].to_numpy().astype(np.float32)[owner]
    parts = ("train", "val", "test")
    idx = {s: np.flatnonzero(split == s) for s in parts}
    image_idx = {s: np.flatnonzero(table_split == s) for s in parts}
    mean, std = channel_stats(array[idx["train"]])
    return _Splits(array, labels, weights, idx, channels, mean, std, owner, counts, image_labels, image_idx)


def _loaders(
    data: _Splits, cfg: TrainConfig, transform: A.Compose, seed: int, device: torch.device
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (augmented, seeded sampler), val and test loaders (in table order, not augmented)."""
    workers = default_workers(device, cfg.num_workers)
    loader_kw = {
        "batch_size": cfg.batch_size,
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,
    }
    train_loader = DataLoader(
        data.dataset("train", transform),
        sampler=SeededSampler(len(data.idx["train"]), seed),
        drop_last=False,
        **loader_kw,
    )
    val_loader = DataLoader(data.dataset("val", None), shuffle=False, **loader_kw)
    test_loader = DataLoader(data.dataset("test", None), shuffle=False, **loader_kw)
    return train_loader, val_loader, test_loader


def _recorded_normalization(path: Path, data: _Splits) -> tuple[list[float], list[float]]:
    """The normalisation a vigil ``model.pt`` was trained with (its weights expect it), when its channels match."""
    meta = torch.load(path, map_location="cpu", weights_only=True)
    norm = meta.get("normalization") or {}
    if len(norm.get("mean", [])) == data.channels:
        return list(norm["mean"]), list(norm["std"])
    return data.mean, data.std


def start_from_pretrained(model: torch.nn.Module, cfg: TrainConfig) -> bool:
    """Load the shipped ImageNet weights into ``model``'s backbone when it has some and ``cfg.pretrained`` is on.

    The classifier head stays freshly initialised (the task's classes are not ImageNet's). The caller then
    normalises inputs the way the weights expect (``model.pretrained_cfg``), not with the data's channel statistics.
    """
    arch = split_candidate(cfg.model)[0]
    if not cfg.pretrained or arch not in pretrained_models():
        return False
    load_pretrained(model, pretrained_weights_path(arch))
    return True


def _fit_probe(
    model: torch.nn.Module, data: _Splits, cfg: TrainConfig, seed: int, device: torch.device, kind: str
) -> FitResult:
    """Frozen backbone features of the (un-augmented) train images, a cross-validated logistic regression
    (``kind="linear"``) or SVM (``"svm"``) set as ``model``'s head (:mod:`tasks.image_features`). One "epoch" in
    the history, with the CV score. With tiles the head is fitted on tile features under their image's label, the
    cross-validation folds kept per image (``groups``) so a tile never validates its own image's twin."""
    start = time.perf_counter()
    train = data.dataset("train", None)
    features = embed(model, train, cfg.batch_size)
    idx = data.idx["train"]
    args = (features, data.labels[idx], data.weights[idx])
    groups = data.owner[idx] if cfg.geometry == "tile" else None
    n_classes = model.head.fc.out_features
    if kind == "svm":
        pipe, params, platt, cv_score = fit_svm_probe(
            *args, class_balanced=cfg.class_balanced, seed=seed, groups=groups
        )
        model.head.fc = svm_head(pipe, platt, features.shape[1], n_classes)
        summary = svm_probe_summary(params, cv_score)
    else:
        search, cv_score = fit_linear_probe(*args, class_balanced=cfg.class_balanced, seed=seed, groups=groups)
        fold_into_head(search, model.head.fc, n_classes)
        summary = linear_probe_summary(search, cv_score)
    row = {"epoch": 1, "lr": None, "train_loss": None, "val_loss": None, "val_accuracy": None}
    row |= {"val_balanced_accuracy": None, "seconds": time.perf_counter() - start, "images_per_s": None}
    return FitResult([row | summary], 1, cv_score, 1, None, False, str(device))


def _fit_config(cfg: TrainConfig, device: torch.device, seed: int) -> FitConfig:
    """The fit loop's settings that the train section means."""
    return FitConfig(
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
        channels_last=cfg.channels_last,
        backbone_lr_scale=cfg.backbone_lr_scale,
        freeze_epochs=min(cfg.freeze_epochs, cfg.epochs - 1),
        threads=cfg.threads,
    )


def _prediction_rows(
    model: torch.nn.Module,
    loaders: dict[str, DataLoader],
    data: _Splits,
    sample_ids: pd.Series,
    cfg: TrainConfig,
    device: torch.device,
) -> pd.DataFrame:
    """Class probabilities of every val and test image: ``sample_id, split, label, prob_0 .. prob_{C-1}``, one row
    per image (with tiles, its most defective tile's: :func:`tasks.image_io.aggregate_tiles`)."""
    rows = []
    for part, loader in loaders.items():
        proba = predict_proba(model, loader, device=device, amp=cfg.amp, amp_cpu=cfg.amp_cpu)
        images = data.image_idx[part]
        proba = aggregate_tiles(proba, data.counts[images])
        for j, i in enumerate(images):
            rows.append(
                {"sample_id": sample_ids.iat[i], "split": part, "label": int(data.image_labels[i])}
                | {f"prob_{k}": float(proba[j, k]) for k in range(proba.shape[1])}
            )
    return pd.DataFrame(rows)


def _preprocess_text(cfg: TrainConfig) -> str:
    """How a file becomes model inputs, in words, for ``model.pt`` and the ONNX metadata's ``resize``."""
    if cfg.geometry == "tile":
        tile = f"{cfg.tile_px} px" if cfg.tile_px else "the short side"
        return (
            f"decode with OpenCV (BGR->RGB), cut into overlapping square tiles of {tile} (tasks.image_io.tile_grid), "
            "each resized to image_size x image_size; an image scores as its most defective tile "
            "(tasks.image_io.aggregate_tiles)"
        )
    return (
        f"decode with OpenCV (BGR->RGB), fit to image_size x image_size by {cfg.geometry!r} (tasks.image_io.fit_square)"
    )


def _save_weights(
    path: Path,
    model: torch.nn.Module,
    model_kwargs: dict[str, Any],
    class_names: list[str],
    data: _Splits,
    cfg: TrainConfig,
    seed: int,
    best_epoch: int,
) -> None:
    """``weights.pt``: everything :func:`load_model` and a deployment need to preprocess and decide the same way.

    ``arch`` is the registry model (a ``+linear`` candidate is its backbone with a fitted head), ``candidate`` the
    train candidate's name, ``pretrained`` the shipped weights it started from (None: from scratch).
    """
    arch = split_candidate(cfg.model)[0]
    torch.save(
        {
            "arch": arch,
            "kwargs": model_kwargs,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "head": head_spec(model.head.fc) if hasattr(model, "head") else None,
            "class_names": list(class_names),
            "in_chans": data.channels,
            "image_size": cfg.image_size,
            "geometry": cfg.geometry,
            "tile_px": cfg.tile_px,
            "normalization": {"mean": data.mean, "std": data.std, "scale": "pixel / dtype max (255 or 65535)"},
            "pretrained": arch if cfg.pretrained and not cfg.init_from and arch in pretrained_models() else None,
            "init_from": cfg.init_from,
            "candidate": cfg.model,
            "preprocess": _preprocess_text(cfg),
            "seed": seed,
            "best_epoch": best_epoch,
        },
        path,
    )


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
    kept (it is cheap to rebuild), ``weights.pt`` and ``predictions.csv`` are. ``cfg.threads`` sets torch's CPU
    threads for the fit only; the previous count is restored afterwards, even when the fit fails.
    """
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train_classifier(
            table, class_names, cfg, transform, seed, out_dir, checkpoint_dir, on_epoch_end, on_batch_end
        )
    finally:
        if cfg.threads:
            torch.set_num_threads(previous_threads)


def _train_classifier(
    table: pd.DataFrame,
    class_names: list[str],
    cfg: TrainConfig,
    transform: A.Compose,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path | None,
    on_epoch_end: Callable[[dict], None] | None,
    on_batch_end: Callable[[int, int], None] | None,
) -> TrainOutput:
    data = _decode_splits(table, cfg.image_size, out_dir / "images.npy", cfg.geometry, cfg.tile_px)
    device = select_device(cfg.device)
    torch.manual_seed(seed)
    model_kwargs = {
        **cfg.model_kwargs,
        "in_chans": data.channels,
        "num_classes": len(class_names),
        "drop_rate": cfg.drop_rate,
    }
    arch, probe = split_candidate(cfg.model)
    model = create_model(arch, **model_kwargs)
    if cfg.init_from:
        if apply_starting_weights(model, cfg.init_from) == "model.pt":
            data.mean, data.std = _recorded_normalization(Path(cfg.init_from), data)
    elif start_from_pretrained(model, cfg):
        data.mean, data.std = list(model.pretrained_cfg["mean"]), list(model.pretrained_cfg["std"])
    if probe and not (cfg.init_from or (cfg.pretrained and arch in pretrained_models())):
        raise ValueError(
            f"train candidate {cfg.model!r}: a {probe} probe needs a backbone with shipped ImageNet weights "
            f"({', '.join(pretrained_models())}) and train.pretrained=true"
        )
    train_loader, val_loader, test_loader = _loaders(data, cfg, transform, seed, device)
    if probe:
        result = _fit_probe(model, data, cfg, seed, device, probe)
    else:
        cw = class_weights(data.labels[data.idx["train"]], len(class_names)) if cfg.class_balanced else None
        result = fit(
            model,
            train_loader,
            val_loader,
            _fit_config(cfg, device, seed),
            class_weights=cw,
            checkpoint_dir=checkpoint_dir,
            on_epoch_end=on_epoch_end,
            on_batch_end=on_batch_end,
        )
    predictions = _prediction_rows(
        model, {"val": val_loader, "test": test_loader}, data, table["sample_id"], cfg, device
    )
    predictions_path = out_dir / "predictions.csv"
    predictions.to_csv(predictions_path, index=False)
    weights_path = out_dir / "weights.pt"
    _save_weights(weights_path, model, model_kwargs, class_names, data, cfg, seed, result.best_epoch)
    (out_dir / "images.npy").unlink(missing_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    return TrainOutput(weights_path, predictions_path, result.history, result, n_params)


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from a vigil ``model.pt`` (safe ``weights_only`` load) and return it with its metadata."""
    meta = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(meta["arch"], **meta["kwargs"])
    head = meta.get("head")
    if head and head.get("kind") == "kernel":  # a +svm candidate's RBF head (tasks.image_features.svm_head)
        model.head.fc = KernelHead(head["n_features"], head["n_support"], head["n_outputs"])
    model.load_state_dict(meta["state_dict"])
    model.eval()
    return model, meta


def embed_images(weights_path: Path, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Pre-logit features ``(N, F)`` of a trained vigil image model, preprocessed exactly as in training.

    A tiled model's image feature is the mean over its tiles: one vector per image, as the synthetic-data checks
    (Fréchet distance, C2ST) compare images, not tiles.
    """
    model, meta = load_model(weights_path)
    size, chans = int(meta["image_size"]), int(meta["in_chans"])
    geometry = meta.get("geometry", "squash")  # models saved before the choice existed squashed
    mean = np.asarray(meta["normalization"]["mean"], dtype=np.float32)
    std = np.asarray(meta["normalization"]["std"], dtype=np.float32)
    if geometry == "tile":
        tiles = ((load_views(p, size, chans, geometry, meta.get("tile_px")) - mean) / std for p in paths)
        return np.stack([_embed(model, t, batch_size).mean(axis=0) for t in tiles])
    feats = []
    for i in range(0, len(paths), batch_size):
        batch = np.stack([(load_image(p, size, chans, geometry) - mean) / std for p in paths[i : i + batch_size]])
        feats.append(_embed(model, batch, batch_size))
    return np.concatenate(feats)


def _embed(model: torch.nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Pre-logit features ``(N, F)`` of normalised images ``(N, H, W, C)``."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size].transpose(0, 3, 1, 2)))
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().numpy())
    return np.concatenate(out)
