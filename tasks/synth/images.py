"""The synth stage for inspection images: a class-conditional GAN trained on the train split, its samples as PNGs.

Only rows with ``split == "train"`` (never validation, never test, never an earlier synthetic row) reach the GAN:
the validation split picks the classifier's best epoch and threshold, and a GAN that had seen it would leak it
into the training set through its samples. The samples are written as 8-bit PNGs with a manifest, so the train
stage reads them exactly like real images (same decoder, same resize) and ``splits.csv`` marks them
``synthetic``.

The GAN works at ``synth.image_size`` (64 px by default: what 2 CPU cores can train in minutes); the train stage
resizes its samples to ``train.image_size`` like any other image.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.gan_training import GanResult, fit_gan, sample_gan
from models.registry import create_model
from models.runtime import select_device
from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import SynthConfig
from tasks.image_io import load_image
from tasks.rundir import RunContext
from tasks.synth.training import GAN_FIELDS, GanProgress, gan_config
from tasks.synthetic_samples import MANIFEST, gan_training_rows


def gan_inputs(rows: pd.DataFrame, size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as ``(N, C, size, size)`` float32 in [-1, 1] (the generator's tanh range) and labels ``(N,)``."""
    x = np.stack([load_image(p, size, channels).transpose(2, 0, 1) for p in rows["path"]])
    x = torch.from_numpy(x.astype(np.float32) * 2.0 - 1.0)
    return x, torch.as_tensor(rows["label"].to_numpy().astype(np.int64))


def synthetic_counts(labels: np.ndarray, n_classes: int, ratio: float) -> dict[int, int]:
    """Samples to generate per class: ``ratio`` per real training sample of that class (rounded, >= 1)."""
    counts = np.bincount(labels, minlength=n_classes)
    return {c: max(1, int(round(ratio * counts[c]))) for c in range(n_classes) if counts[c] > 0}


def _to_png_array(sample: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> an 8-bit OpenCV image (grey, or BGR for colour)."""
    unit = np.clip((sample.transpose(1, 2, 0) + 1.0) / 2.0, 0.0, 1.0)
    img = (unit * 255.0).round().astype(np.uint8)
    if img.shape[2] == 1:
        return img[:, :, 0]
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def write_samples(samples: np.ndarray, labels: np.ndarray, class_names: list[str], out_dir: Path) -> pd.DataFrame:
    """Write one PNG per sample under ``out_dir/images/<class>/``; manifest rows with paths relative to ``out_dir``.

    Relative, because the stage is built in a temporary folder that is renamed into the cache when complete.
    """
    rows = []
    for i, (sample, label) in enumerate(zip(samples, labels, strict=True)):
        name = class_names[int(label)]
        rel = Path("images") / name / f"synth_{i:06d}.png"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out_dir / rel), _to_png_array(sample)):
            raise OSError(f"{out_dir / rel}: OpenCV could not write the synthetic sample")
        rows.append(
            {
                "sample_id": f"synth-{i:06d}",
                "path": rel.as_posix(),
                "label": int(label),
                "class_name": name,
                "split": "train",
                "stratum": "",
                "group": "synthetic",
                "synthetic": True,
            }
        )
    return pd.DataFrame(rows)


def sample_grid(samples: np.ndarray, labels: np.ndarray, n_classes: int, per_class: int = 8) -> np.ndarray:
    """A uint8 grid with one row per class (its first ``per_class`` samples) for the report."""
    c, h, w = samples.shape[1:]
    grid = np.zeros((n_classes * h, per_class * w, c), dtype=np.float32)
    for k in range(n_classes):
        picks = np.flatnonzero(labels == k)[:per_class]
        for j, i in enumerate(picks):
            grid[k * h : (k + 1) * h, j * w : (j + 1) * w] = samples[i].transpose(1, 2, 0)
    out = ((np.clip(grid, -1, 1) + 1.0) * 127.5).round().astype(np.uint8)
    return out[:, :, 0] if c == 1 else cv2.cvtColor(out, cv2.COLOR_RGB2BGR)


def synthesize_images(
    table: pd.DataFrame,
    class_names: list[str],
    cfg: SynthConfig,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path | None,
    on_step_end: Callable[[int, int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train the GAN on the real train rows, write ``ratio`` samples per real sample of each class, and a grid.

    Returns a JSON-able summary; ``out_dir`` gets ``manifest.csv``, the PNGs, ``grid.png``, ``gan_history.json``
    and ``gan.pt`` (generator weights, for inspection or more samples later).
    """
    rows = gan_training_rows(table)
    n_classes = len(class_names)
    if rows.empty:
        raise StageError("synth: the train split has no real images to train the GAN on")
    present = set(rows["label"].astype(int))
    if len(present) < 2:
        raise StageError(
            f"synth: the train split has only class {class_names[min(present)]!r}; a conditional GAN needs "
            "at least two classes (turn synth off for this data set)"
        )
    grey = bool(table["grey"].all()) if "grey" in table else True
    channels = 1 if grey else 3
    x, y = gan_inputs(rows, cfg.image_size, channels)
    device = select_device(cfg.device)
    torch.manual_seed(seed)
    gan = create_model(cfg.model, in_chans=channels, img_size=cfg.image_size, num_classes=n_classes, **cfg.model_kwargs)
    result: GanResult = fit_gan(
        gan, x, y, gan_config(cfg, seed, device), checkpoint_dir=checkpoint_dir, on_step_end=on_step_end
    )
    counts = synthetic_counts(y.numpy(), n_classes, cfg.ratio)
    labels = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in sorted(counts.items())])
    samples = sample_gan(gan, labels, seed=seed + 1, device=device)
    manifest = write_samples(samples, labels, class_names, out_dir)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    cv2.imwrite(str(out_dir / "grid.png"), sample_grid(samples, labels, n_classes))
    (out_dir / "gan_history.json").write_text(json.dumps(result.history, indent=2))
    gen = gan.generator_ema if getattr(gan, "generator_ema", None) is not None else gan.generator
    torch.save({k: v.detach().cpu() for k, v in gen.state_dict().items()}, out_dir / "gan.pt")
    return {
        "model": cfg.model,
        "device": result.device,
        "image_size": cfg.image_size,
        "gan_train_images": len(rows),
        "gan_train_by_class": {
            class_names[c]: int(n) for c, n in enumerate(np.bincount(y.numpy(), minlength=n_classes))
        },
        "generated_by_class": {class_names[c]: int(n) for c, n in counts.items()},
        "n_generated": len(manifest),
        "steps": result.steps_run,
        "resumed_from_step": result.resumed_from_step,
        "gan_seconds": result.seconds,
        "final_losses": result.history[-1] if result.history else {},
    }


@task(name="synth", cache_policy=NO_CACHE)
def synth_images_task(*, cfg: SynthConfig, ctx: RunContext, label: StageResult) -> StageResult:
    """Train the GAN and write its samples; cached on the label stage's key, the GAN settings and the seed.

    The returned record's summary also says how training uses the samples: ``selection`` holds ``classes`` (all,
    or the minority classes) and ``synthetic_weight`` (their loss weight), which the train stage reads instead of
    the synth section. They are added after the cache lookup, not stored with the entry: they do not change what
    the GAN makes, so changing them must not retrain it.
    """
    logger = get_run_logger()
    gan_fields = cfg.model_dump(include={*GAN_FIELDS, "image_size"})
    key = stage_key("synth", label.key, gan_fields, ctx.seed)

    def build(out: Path) -> dict:
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        progress = GanProgress(cfg.steps, logger, "image GAN")
        return synthesize_images(
            table,
            label.summary["class_names"],
            cfg,
            ctx.seed,
            out,
            Path(ctx.run_dir) / "checkpoints" / "gan",
            on_step_end=progress.on_step_end,
        )

    result = run_stage(StageCache(ctx.cache_root), "synth", key, build, ctx.refreshes("synth"))
    if not result.error:
        selection = {"classes": cfg.classes, "synthetic_weight": cfg.synthetic_weight}
        result = result.model_copy(update={"summary": {**result.summary, "selection": selection}})
        logger.info(
            "synth: %d synthetic images (%s) from %d GAN steps%s",
            result.summary["n_generated"],
            ", ".join(f"{k}={v}" for k, v in result.summary["generated_by_class"].items()),
            result.summary["steps"],
            " (cached)" if result.cached else "",
        )
    return result
