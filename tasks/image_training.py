"""One training run of the image classifier as a train-stage cache entry, with progress for people.

The train stage's model and every arm of the synth stage's usefulness experiment go through :func:`train_arm`,
keyed like the plain train stage (``cache/train/<key>``): an arm with the run's seed, recipe and rows *is* the
train stage's entry (the headline training is not repeated), and a real-only arm reuses what a run without synth
trained. The fit itself is :mod:`tasks.image_classifier`; what an arm trains on is the label stage's table plus,
optionally, synthetic rows (:func:`compose_table`, :func:`synthetic_selection`).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from tqdm import tqdm

from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import TrainConfig
from tasks.image_augmentation import build_pipeline, recorded_config
from tasks.image_classifier import TrainOutput, train_classifier
from tasks.rundir import RunContext
from tasks.starting_weights import StartingWeightsError, file_digest
from tasks.synthetic_samples import gan_training_rows, read_manifest, synthetic_rows


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


def _arm_summary(cfg: TrainConfig, output: TrainOutput, table: pd.DataFrame, seed: int) -> dict[str, Any]:
    """The train record's summary: the fit's facts, the real/synthetic row counts and the recipe that made it.

    ``recipe`` is the train section as a JSON dict (``TrainConfig.model_validate`` reads it back): the synth
    stage's usefulness experiment trains its arms with it, so it never needs the flow's train section.
    """
    fit = output.fit
    split = table["split"]
    synth_mask = table["synthetic"].astype(str).str.lower().isin(("true", "1"))
    return {
        "model": cfg.model,
        "device": fit.device,
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "stopped_early": fit.stopped_early,
        "resumed_from_epoch": fit.resumed_from_epoch,
        # CPU threads per epoch (load-aware unless train.threads): another count sums in another order, so a rerun
        # agrees bit for bit only with the same counts; this says which
        "threads": list(getattr(fit, "threads", []) or []),
        "n_parameters": output.n_parameters,
        "n_train_real": int(((split == "train") & ~synth_mask).sum()),
        "n_train_synthetic": int(((split == "train") & synth_mask).sum()),
        "seed": seed,
        "recipe": cfg.model_dump(mode="json"),
    }


def _fit_with_progress(
    table: pd.DataFrame,
    class_names: list[str],
    cfg: TrainConfig,
    transform: A.Compose,
    seed: int,
    out: Path,
    checkpoint_dir: Path,
    log: logging.Logger,
) -> TrainOutput:
    """:func:`train_classifier` with a progress artifact and bar that are closed however the fit ends."""
    progress = _Progress(cfg.epochs, log)
    try:
        return train_classifier(
            table,
            class_names,
            cfg,
            transform,
            seed,
            out,
            checkpoint_dir,
            on_epoch_end=progress.on_epoch_end,
            on_batch_end=progress.on_batch_end,
        )
    finally:
        progress.close()


def train_arm(
    *,
    cfg: TrainConfig,
    ctx: RunContext,
    label: StageResult,
    augment: StageResult,
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
    The augmentation pipeline is rebuilt from the augment stage's record (:func:`recorded_config`) with ``seed``.

    Args:
        cfg: The training recipe (the train section, or the usefulness experiment's cheaper copy of it).
        ctx: The run's context (cache root, run folder for checkpoints, refreshes).
        label: The label stage's record (``splits.csv``, class names).
        augment: The augment stage's record (its summary's ``config``).
        seed: Seeds the model, the sampler and the per-sample augmentation.
        synthetic: Synthetic rows to add to (or, with ``synthetic_only``, to replace) the real train rows.
        synthetic_key: What identifies ``synthetic`` in the cache key (synth stage key and how they were chosen).
        synthetic_only: Train on synthetic rows only (validation and test stay real).
        checkpoint_name: Subfolder of ``checkpoints/`` for this fit, so arms never resume each other.
        logger: Where progress goes; Prefect's run logger by default.
    """
    log = logger or get_run_logger()
    parts: list = [label.key, augment.key, cfg, seed]
    if cfg.init_from:  # the file's content, not just its path, decides what training starts from
        parts.append(file_digest(cfg.init_from))
    if synthetic is not None:
        parts.append({"synthetic": synthetic_key, "synthetic_only": synthetic_only})
    key = stage_key("train", *parts)

    def build(out: Path) -> dict:
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        table = compose_table(table, synthetic, synthetic_only)
        checkpoint_dir = Path(ctx.run_dir) / "checkpoints"
        if checkpoint_name:
            checkpoint_dir = checkpoint_dir / checkpoint_name
        transform = build_pipeline(recorded_config(augment), seed)
        try:
            output = _fit_with_progress(
                table, label.summary["class_names"], cfg, transform, seed, out, checkpoint_dir, log
            )
        except StartingWeightsError as exc:  # the user's file, not a bug: one sentence, the run ends Failed
            raise StageError(str(exc)) from exc
        (out / "history.json").write_text(json.dumps(output.history, indent=2))
        if synthetic is not None:
            table.to_csv(out / "splits.csv", index=False)  # the run's splits.csv then lists the synthetic rows
        if output.fit.resumed_from_epoch is not None:
            log.info("train: resumed from the checkpoint of epoch %d", output.fit.resumed_from_epoch)
        return _arm_summary(cfg, output, table, seed)

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


def chosen_arm(train: StageResult, chosen: str | None) -> tuple[dict[str, Any], Path]:
    """The train record's entry (recipe, fit facts) and cache folder of the candidate ``chosen`` on validation.

    The train record itself is the *first* candidate's (it lists all under ``candidates``), so whoever describes,
    explains or re-trains the shipped model looks it up here; a record without candidates is its own entry.
    """
    arm = (train.summary.get("candidates") or {}).get(chosen) if chosen else None
    return (arm, Path(arm["path"])) if arm else (train.summary, train.dir)


def synthetic_selection(synth: StageResult, label: StageResult) -> tuple[pd.DataFrame, dict]:
    """The synth stage's rows that the real + synthetic arm adds, and what identifies them in a cache key.

    Which classes get synthetic rows and their loss weight come from the synth record's ``selection``
    (``synth.classes``, ``synth.synthetic_weight``), so the train stage needs no synth config section.

    Raises:
        ValueError: If the record has no ``selection`` (it was not made by ``synth_images_task``).
    """
    selection = synth.summary.get("selection")
    if selection is None:
        raise ValueError(
            f"synth record {synth.key or '(no key)'} has no 'selection' in its summary; pass the record that "
            "synth_images_task returned"
        )
    classes, weight = selection["classes"], selection["synthetic_weight"]
    manifest = read_manifest(synth.dir)
    table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
    real_train = gan_training_rows(table)["label"].to_numpy().astype(np.int64)
    rows = synthetic_rows(manifest, real_train, classes, weight)
    return rows, {"key": synth.key, "classes": classes, "weight": weight}
