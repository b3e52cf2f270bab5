"""One batch of predictions, end to end: choose the model, score the input, write the CSV(s) and a short report.

``vigil predict`` and the ``batch-inference`` flow both call :func:`predict_defect` / :func:`predict_eeg`. They read
nothing but the run directory and the input, and write only the output files (the input stays read-only): no data
root, no Prefect server (this module does not import Prefect: ``tasks/predict/task.py`` wraps it), no environment
variable needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tasks.predict.eeg import Preprocess, find_recordings, predict_recordings, write_review_folder
from tasks.predict.images import find_images, predict_images, review_manifest
from tasks.predict.model import PredictInputError, Predictor, load_predictor


@dataclass
class BatchResult:
    """What a batch wrote: the predictions CSV (the command prints it), the other files, and the counts."""

    csv: Path
    files: list[Path] = field(default_factory=list)
    n_scored: int = 0
    n_refused: int = 0


def default_output(kind: str, review: bool) -> Path:
    """``vigil-predict-<kind>-<UTC stamp>.csv`` (or a ``vigil-review-...`` folder) in the current directory."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path.cwd() / (f"vigil-review-{kind}-{stamp}" if review else f"vigil-predict-{kind}-{stamp}.csv")


def _report(path: Path, title: str, predictor: Predictor, facts: list[str], refused: pd.DataFrame) -> Path:
    """A short markdown report beside the CSV: model file, classes and threshold, counts, what was refused, why."""
    meta = predictor.meta
    lines = [f"# {title}", "", f"- model: {predictor.path} ({meta.get('quantization') or 'fp32'})",
             f"- classes: {', '.join(meta['class_names'])}; decision threshold: {meta['threshold']}"]  # fmt: skip
    lines += [f"- {f}" for f in facts]
    if len(refused):
        lines += ["", f"## Refused ({len(refused)})", ""] + [f"- {r.path}: {r.reason}" for r in refused.itertuples()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _refuse_all(refused: pd.DataFrame, what: str) -> None:
    if len(refused):
        shown = "; ".join(refused["reason"].head(3))
        raise PredictInputError(f"no {what} could be scored: {shown}")


def _predictions_csv(flow: str, out: Path | None, review: bool) -> Path:
    """Where the predictions CSV goes: ``out`` itself, or ``predictions.csv`` inside the review folder ``out``."""
    out = out or default_output(flow, review)
    folder = out if review else out.parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "predictions.csv" if review else out


def predict_defect(
    data: Path, run_dir: Path, out: Path | None = None, *, int8: bool = False, review: bool = False
) -> BatchResult:
    """Score images (a file, a folder or a CSV manifest) with the run's model.

    Writes the predictions CSV (``path, probability, label, threshold, prob_<class>``) and ``<csv stem>.report.md``;
    with ``review``, ``out`` is a folder holding also ``manifest.csv`` (:func:`tasks.predict.images.review_manifest`).

    Raises:
        PredictInputError: Nothing to score, or no image fits the model (the reasons are named).
    """
    predictor = load_predictor(run_dir, "image", int8=int8)
    paths = find_images(data)
    predictions, refused, notes = predict_images(paths, predictor)
    if predictions.empty:
        _refuse_all(refused, "image")
    csv_path = _predictions_csv("defect", out, review)
    folder = csv_path.parent
    predictions.to_csv(csv_path, index=False)
    files = [csv_path]
    counts = predictions["label"].value_counts().to_dict()
    facts = [f"{len(predictions)} image(s) scored: " + ", ".join(f"{k} {v}" for k, v in counts.items())] + notes
    if review:
        manifest = review_manifest(predictions, folder)
        manifest.to_csv(folder / "manifest.csv", index=False)
        files.append(folder / "manifest.csv")
        n_review = int((manifest["needs_review"] == "true").sum())
        facts.append(f"manifest.csv: {n_review} row(s) need review (most uncertain first); set needs_review=false "
                     f"once checked, then `vigil run defect --data {folder / 'manifest.csv'}`")  # fmt: skip
    files.append(_report(csv_path.with_suffix(".report.md"), f"Predictions of {data}", predictor, facts, refused))
    return BatchResult(csv_path, files, len(predictions), len(refused))


def predict_eeg(
    data: Path,
    run_dir: Path,
    preprocess: Preprocess,
    out: Path | None = None,
    *,
    int8: bool = False,
    review: bool = False,
) -> BatchResult:
    """Score EDF recordings (a file or a folder) with the run's seizure detector.

    Writes the per-window CSV, ``<stem>_events.csv`` (one row per detected event: onset/offset in seconds) and
    ``<stem>.report.md``; with ``review``, ``out`` is a folder that also holds a link to each EDF and its BIDS
    ``_events.tsv`` sidecar (:func:`tasks.predict.eeg.write_review_folder`).

    Raises:
        PredictInputError: No EDF file, or none that fits the model (the differences are named).
    """
    predictor = load_predictor(run_dir, "eeg", int8=int8)
    paths = find_recordings(data)
    windows, events, refused, notes = predict_recordings(paths, predictor, preprocess)
    if windows.empty:
        _refuse_all(refused, "recording")
    csv_path = _predictions_csv("eeg", out, review)
    folder = csv_path.parent
    windows.to_csv(csv_path, index=False)
    events_path = csv_path.with_name(f"{csv_path.stem}_events.csv")
    events.to_csv(events_path, index=False)
    files = [csv_path, events_path]
    n_files = windows["file"].nunique()
    facts = [f"{n_files} recording(s), {len(windows)} window(s) scored, {len(events)} event(s) detected"] + notes
    if review:
        scored = [p for p in paths if str(p) in set(windows["file"])]
        files += write_review_folder(scored, data, events, folder)
        facts.append(f"review folder {folder}: correct the _events.tsv sidecars, then `vigil run eeg --data {folder}`")
    files.append(_report(csv_path.with_suffix(".report.md"), f"Predictions of {data}", predictor, facts, refused))
    return BatchResult(csv_path, files, len(windows), len(refused))
