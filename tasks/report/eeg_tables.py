"""The seizure report's tables: headline rows per task, per-patient and per-model rows, and splits.csv.

Pure functions of the evaluation dicts and the label stage's windows, shared by report.html, the markdown
artifact and the table artifact (whose row labels :mod:`tasks.compare` maps back to metrics.json names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tasks.eeg_windows import ARRAY, read_synthetic, synthetic_selection


def num(v: Any, digits: int = 3) -> str:
    """A table cell: ``n/a`` for missing, ``digits`` decimals for floats."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def interval(ci: list[float] | None, digits: int = 3) -> str:
    """A 95 % interval cell ``[low, high]``, ``n/a`` when undefined."""
    return "n/a" if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fallback_rows(section: dict[str, Any]) -> list[dict[str, str]]:
    """One row per fallback a task took (a one-class validation split: default threshold, no early stopping)."""
    return [{"metric": "fallback", "value": note} for note in section.get("fallbacks", [])]


def detection_rows(det: dict[str, Any]) -> list[dict[str, str]]:
    """Headline rows ``metric | value`` of the detection task (event and window level, and the threshold)."""
    w, e = det["window"], det["event"]
    return [
        {"metric": "event sensitivity", "value": num(e.get("sensitivity"))},
        {
            "metric": "event sensitivity 95 % CI (Clopper-Pearson)",
            "value": f"{interval(e.get('sensitivity_ci95'))} of {num(e.get('n_true'))} seizures",
        },
        {"metric": "event precision", "value": num(e.get("precision"))},
        {"metric": "event F1", "value": num(e.get("f1"))},
        {"metric": "false positives / 24 h", "value": num(e.get("fp_per_24h"), 2)},
        {
            "metric": "false positives / 24 h 95 % CI (Poisson)",
            "value": f"{interval(e.get('fp_per_24h_ci95'), 2)} over {num(e.get('hours'), 1)} h",
        },
        {"metric": "window ROC AUC", "value": num(w.get("roc_auc"))},
        {"metric": "window balanced accuracy", "value": num(w.get("balanced_accuracy"))},
        {"metric": "threshold (chosen on val)", "value": num(det.get("threshold"))},
        *fallback_rows(det),
    ]


def prediction_rows(pred: dict[str, Any]) -> list[dict[str, str]]:
    """Headline rows ``metric | value`` of the prediction task, or the one reason it was not feasible."""
    if not pred.get("feasible"):
        return [{"metric": "feasible", "value": f"no: {pred.get('reason', '')}"}]
    return [
        {"metric": "sensitivity", "value": num(pred.get("sensitivity"))},
        {
            "metric": "sensitivity 95 % CI (Clopper-Pearson)",
            "value": f"{interval(pred.get('sensitivity_ci95'))}: {num(pred.get('n_predicted'))} of "
            f"{num(pred.get('n_seizures'))} seizures",
        },
        {"metric": "false predictions / h", "value": num(pred.get("fpr_per_h"))},
        {
            "metric": "false predictions / h 95 % CI (Poisson)",
            "value": f"{interval(pred.get('fpr_per_h_ci95'))}: {num(pred.get('n_false_alarms'))} false alarms in "
            f"{num(pred.get('interictal_h'), 1)} interictal h",
        },
        {"metric": "time in warning", "value": num(pred.get("time_in_warning"))},
        {
            "metric": "monitored",
            "value": f"{num(pred.get('monitored_h'), 1)} h in {num(pred.get('n_recordings'))} recordings, "
            "each scored once, whole, by a model that never saw it",
        },
        {"metric": "window ROC AUC", "value": num(pred.get("roc_auc"))},
        {"metric": "p-value vs random predictor", "value": num(pred.get("p_value"), 4)},
        {"metric": "p-value, seizure-time surrogates", "value": num(pred.get("p_value_surrogate"), 4)},
        {"metric": "random predictor sensitivity (α)", "value": num(pred.get("random_predictor_sensitivity"))},
        {"metric": "SOP / SPH (s)", "value": f"{pred.get('sop_s'):.0f} / {pred.get('sph_s'):.0f}"},
        {"metric": "not counted for false alarms", "value": str(pred.get("excluded", "ictal time"))},
        {
            "metric": "shipped threshold",
            "value": f"{num(pred.get('threshold'))}: {pred.get('threshold_provenance', '')}",
        },
        *fallback_rows(pred),
    ]


def per_patient_rows(section: dict[str, Any], kind: str) -> list[dict[str, str]]:
    """One row per patient of a ``detection`` or ``prediction`` evaluation section's ``by_patient``."""
    rows = []
    for patient, m in section.get("by_patient", {}).items():
        if kind == "detection":
            rows.append(
                {
                    "patient": patient,
                    "sensitivity": num(m["event"].get("sensitivity")),
                    "precision": num(m["event"].get("precision")),
                    "fp/24h": num(m["event"].get("fp_per_24h"), 2),
                    "window AUC": num(m["window"].get("roc_auc")),
                }
            )
        else:
            rows.append(
                {
                    "patient": patient,
                    "seizures": num(m.get("n_seizures")),
                    "sensitivity": num(m.get("sensitivity")),
                    "sensitivity 95 % CI": interval(m.get("sensitivity_ci95")),
                    "FP/h": num(m.get("fpr_per_h")),
                    "FP/h 95 % CI": interval(m.get("fpr_per_h_ci95")),
                    "time in warning": num(m.get("time_in_warning")),
                }
            )
    return rows


def _model_row(name: str, detection: dict[str, Any]) -> dict[str, str]:
    return {
        "model": name,
        "event sensitivity": num(detection["event"].get("sensitivity")),
        "fp/24h": num(detection["event"].get("fp_per_24h"), 2),
        "window AUC": num(detection["window"].get("roc_auc")),
    }


def model_rows(models: dict[str, Any], det: dict[str, Any] | None, primary: str | None) -> list[dict[str, str]]:
    """Detection of the compared models, led by the primary model's (``det``) when there is one."""
    rows = [_model_row(name, m["detection"]) for name, m in models.items()]
    if det:
        rows.insert(0, _model_row(f"{primary} (primary)", det))
    return rows


def splits_table(windows: pd.DataFrame, recordings: pd.DataFrame) -> pd.DataFrame:
    """splits.csv for EEG: the common columns plus patient, recording, start/end, seizure and fold."""
    paths = dict(zip(recordings["recording_id"], recordings["path"], strict=True))
    label = windows["ictal"]
    return pd.DataFrame(
        {
            "sample_id": windows["window_id"],
            "path": windows["recording_id"].map(paths),
            "label": label,
            "split": windows["split"],
            "stratum": windows["patient"],
            "group": windows["recording_id"],
            "synthetic": False,
            "patient": windows["patient"],
            "recording": windows["recording_id"],
            "start_s": windows["start_s"],
            "end_s": windows["end_s"],
            "seizure_id": windows["seizure_id"],
            "fold": windows["fold"] if "fold" in windows else "",
            "pred_label": windows.get("pred_label", ""),
        }
    )


def synthetic_splits(synth_dir: Path, windows: pd.DataFrame, classes: str) -> pd.DataFrame:
    """splits.csv rows for the synthetic windows the detector trained on (path: the synth stage's windows.npy).

    Args:
        synth_dir: The synth stage's record folder (its manifest and window array).
        windows: The label stage's windows (the classes are counted over the detection training windows).
        classes: The synth stage's class choice (``minority``, ``all``, ...), as its record states it.
    """
    _, manifest = read_synthetic(synth_dir)
    rows = manifest.iloc[synthetic_selection(manifest, classes, windows)]
    return pd.DataFrame(
        {
            "sample_id": rows["window_id"],
            "path": str(synth_dir / ARRAY) + "#" + rows["index"].astype(str),
            "label": rows["label"],
            "split": "train",
            "stratum": "",
            "group": "synthetic",
            "synthetic": True,
        }
    )


def describe(metrics: dict[str, Any]) -> str:
    """One line of headline numbers for artifact cards (the UI shows descriptions without a click)."""
    if "error" in metrics:
        return f"FAILED: {metrics['error'][:200]}"
    parts = [metrics["dataset"] + ":"]
    det = metrics.get("detection")
    if det:
        e = det["event"]
        parts.append(f"detection sensitivity {num(e.get('sensitivity'))} at {num(e.get('fp_per_24h'), 1)} FP/24h;")
    pred = metrics.get("prediction")
    if pred and pred.get("feasible"):
        parts.append(
            f"prediction sensitivity {num(pred.get('sensitivity'))}, {num(pred.get('fpr_per_h'))} FP/h, "
            f"p={num(pred.get('p_value'), 4)}"
        )
    elif pred:
        parts.append("prediction not feasible")
    return " ".join(parts)
