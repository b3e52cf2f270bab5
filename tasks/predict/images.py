"""Score new inspection images with a run's model, and write the review manifest of the auto-labelling loop.

Inputs: one image, a folder (searched recursively; hidden files and folders skipped), or a CSV manifest whose
``path`` column (found by header name) lists images relative to the CSV. Every image is preprocessed by the model's
own metadata (:func:`tasks.onnx_model.image_views`), so the pixels scored are the pixels the model was trained on;
a tiled model (``geometry=tile``) scores each image as its most defective tile (:func:`tasks.image_io.aggregate_tiles`),
still one row per image.
An image the model cannot take is left out with its reason (a colour image for a grey model: converting it would
change what the model sees); a grey image for a colour model is replicated to three channels, and said.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.image_io import MAX_TILES, aggregate_tiles, is_grey, read_image, tile_shape
from tasks.onnx_model import image_views
from tasks.predict.model import PredictInputError, Predictor, files_under

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Review: an image whose probability lies within this distance of the threshold is marked ``needs_review=true``.
REVIEW_MARGIN = 0.25
PREDICTION_COLUMNS = ["path", "probability", "label", "threshold"]


def find_images(path: Path) -> list[Path]:
    """The images ``path`` names: itself, every image under a folder, or the ``path`` column of a CSV manifest."""
    if path.is_file() and path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = {c.strip().lower(): c for c in reader.fieldnames or []}
            if "path" not in columns:
                raise PredictInputError(f"{path}: no 'path' column (found {', '.join(columns) or 'nothing'})")
            return [(path.parent / row[columns["path"]].strip()).resolve() for row in reader if row[columns["path"]]]
    return files_under(path, IMAGE_EXTENSIONS, "an image or a CSV manifest", "images")


def check_image(path: Path, meta: dict[str, Any]) -> tuple[str | None, str | None]:
    """(reason to leave the image out, note on a safe conversion) for one image against the model's channels."""
    try:
        image = read_image(path)
    except (OSError, ValueError) as exc:
        return f"cannot be read ({exc})", None
    pre = meta["preprocessing"]
    chans = int(pre["in_chans"])
    if pre.get("geometry") == "tile":
        rows, cols, tile = tile_shape(*image.shape[:2], pre.get("tile_px"))
        if rows * cols > MAX_TILES:
            return (f"{image.shape[0]} x {image.shape[1]} px makes {rows * cols} tiles of {tile} px, above the "
                    f"limit of {MAX_TILES} per image (the model's train.tile_px)"), None  # fmt: skip
    grey = image.ndim == 2 or is_grey(image)
    if chans == 1 and not grey:
        return "a colour image; the model expects 1-channel grey images (convert it, or train on colour)", None
    if chans == 3 and grey:
        return None, "grey image replicated to the 3 channels the model expects"
    return None, None


def predict_images(
    paths: list[Path], predictor: Predictor, batch_size: int = 32
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Score ``paths``: (predictions, left-out images with reasons, notes).

    Predictions hold ``path, probability, label, threshold`` (binary: probability of the positive class and the
    label it decides at the model's threshold; several classes: the top class and its probability, threshold
    empty) plus ``prob_<class>`` per class.
    """
    meta = predictor.meta
    names, threshold = meta["class_names"], meta["threshold"]
    keep, skipped, converted = [], [], 0
    for p in paths:
        reason, note = check_image(p, meta)
        if reason:
            skipped.append({"path": str(p), "reason": reason})
        else:
            keep.append(p)
            converted += note is not None
    rows = []
    for i in range(0, len(keep), batch_size):
        part = keep[i : i + batch_size]
        x, counts = image_views([str(p) for p in part], meta)
        proba = aggregate_tiles(predictor.probabilities(x), counts)
        for p, pr in zip(part, proba, strict=True):
            if len(names) == 2:
                row = {"path": str(p), "probability": float(pr[1]), "label": names[int(pr[1] >= threshold)]}
            else:
                k = int(np.argmax(pr))
                row = {"path": str(p), "probability": float(pr[k]), "label": names[k]}
            per_class = {f"prob_{n}": float(v) for n, v in zip(names, pr, strict=True)}
            rows.append(row | {"threshold": threshold} | per_class)
    notes = [f"{converted} grey image(s) replicated to the 3 channels the model expects"] if converted else []
    columns = PREDICTION_COLUMNS + [f"prob_{n}" for n in names]
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(skipped, columns=["path", "reason"]), notes


def review_manifest(predictions: pd.DataFrame, manifest_dir: Path, margin: float = REVIEW_MARGIN) -> pd.DataFrame:
    """``path,label,probability,needs_review`` sorted most uncertain first, paths relative to ``manifest_dir``.

    Uncertainty is the distance of the probability from the decision threshold (binary) or from certainty
    (several classes); ``needs_review`` is true within ``margin`` of it. A reviewer corrects labels, sets
    ``needs_review`` to false for the rows they checked, and trains with ``vigil run defect --data manifest.csv``:
    rows still marked true are left out of training and listed in the report.
    """
    frame = predictions.copy()
    if frame["threshold"].notna().all():
        distance = (frame["probability"] - frame["threshold"]).abs()
    else:
        distance = frame["probability"] - 0.5
    frame["needs_review"] = np.where(distance < margin, "true", "false")
    frame["path"] = [os.path.relpath(p, manifest_dir) for p in frame["path"]]
    order = np.argsort(distance.to_numpy(), kind="stable")
    return frame.iloc[order][["path", "label", "probability", "needs_review"]].reset_index(drop=True)
