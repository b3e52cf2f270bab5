"""What the synth stage leaves behind, read by the stages that use it, and the one rule of which rows a GAN may see.

A GAN learns only from real samples of the train split (:func:`gan_training_rows`); the real + synthetic arm adds
synthetic samples of every class or only of the rarer ones (:func:`classes_to_add`). Training, the usefulness
experiment and the report all read the stage's manifest through here, so the rule lives in one place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def classes_to_add(real_labels: np.ndarray, classes: str) -> set[int]:
    """Classes whose synthetic samples the real + synthetic arm adds: every class present in the real training
    labels (``"all"``), or only those rarer than the most common one (``"minority"``)."""
    counts = np.bincount(np.asarray(real_labels, dtype=np.int64))
    present = {c for c, n in enumerate(counts) if n > 0}
    return present if classes == "all" else {c for c in present if counts[c] < counts.max()}


MANIFEST = "manifest.csv"


def gan_training_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a GAN may learn from: real samples of the train split (the one place this rule lives)."""
    synthetic = table["synthetic"].astype(str).str.lower().isin(("true", "1")) if "synthetic" in table else False
    return table[(table["split"] == "train") & ~synthetic].reset_index(drop=True)


def read_manifest(synth_dir: Path) -> pd.DataFrame:
    """The synth stage's manifest with absolute paths (they are stored relative to the stage folder)."""
    manifest = pd.read_csv(synth_dir / MANIFEST, keep_default_na=False, dtype={"sample_id": str})
    manifest["path"] = [str(synth_dir / p) for p in manifest["path"]]
    return manifest


def synthetic_rows(manifest: pd.DataFrame, real_train_labels: np.ndarray, classes: str, weight: float) -> pd.DataFrame:
    """The synthetic rows the real + synthetic arm trains on: all classes, or only those rarer than the largest."""
    rows = manifest[manifest["label"].astype(int).isin(classes_to_add(real_train_labels, classes))].copy()
    rows["weight"] = float(weight)
    rows["synthetic"] = True
    return rows.reset_index(drop=True)
