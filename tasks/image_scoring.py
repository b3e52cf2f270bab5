"""Score a classifier's val/test predictions: threshold chosen on validation, metrics on test, overall and by stratum.

The decision threshold is chosen on the validation split and then frozen, so test numbers are never tuned on test
data. The evaluate stage scores the headline network and the baseline this way, and the synth stage's usefulness
experiment scores every arm the same way (with the threshold metric the evaluate stage records), so an arm's test
score means the same as the headline's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.metrics import (
    bootstrap_ci,
    choose_threshold,
    classification_metrics,
    metrics_by_group,
    predicted_labels,
    roc_points,
    worst_errors,
)


def _scores(frame: pd.DataFrame, n_classes: int) -> np.ndarray:
    """Positive-class probability ``(N,)`` for two classes, else all class probabilities ``(N, C)``."""
    proba = frame[[f"prob_{k}" for k in range(n_classes)]].to_numpy()
    return proba[:, 1] if n_classes == 2 else proba


def sample_strata(table: pd.DataFrame, ids: pd.Series) -> np.ndarray | None:
    """The ``stratum`` of each sample id (e.g. ELPV's mono/poly), or None when the table has no strata."""
    strata = table.set_index("sample_id").loc[ids, "stratum"].fillna("").astype(str).to_numpy()
    return strata if (strata != "").any() else None


def score_split(
    y_val: np.ndarray,
    s_val: np.ndarray,
    y_test: np.ndarray,
    s_test: np.ndarray,
    class_names: list[str],
    threshold_metric: str,
    strata: np.ndarray | None,
    center: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Choose the threshold on val (binary), then score test overall and per stratum, with bootstrap 95 %
    intervals of accuracy and balanced accuracy (``accuracy_ci95``; ``seed`` drives the resampling)."""
    threshold = choose_threshold(y_val, s_val, threshold_metric, center=center) if s_val.ndim == 1 else None
    out = classification_metrics(y_test, s_test, threshold, class_names)
    out["threshold"] = threshold
    ci = bootstrap_ci(y_test, predicted_labels(s_test, threshold), len(class_names), seed=seed)
    out["accuracy_ci95"], out["balanced_accuracy_ci95"] = ci["accuracy"], ci["balanced_accuracy"]
    if strata is not None:
        out["by_group"] = metrics_by_group(y_test, s_test, strata, threshold, class_names)
    return out


def evaluate_classifier(
    predictions: pd.DataFrame,
    table: pd.DataFrame,
    class_names: list[str],
    *,
    threshold_metric: str,
    worst_k: int,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Metrics of the trained network from its val/test predictions: (test metrics, ROC points, worst errors).

    Args:
        predictions: ``predictions.csv`` of a train entry (``sample_id, split, label, prob_*``).
        table: The split table the network trained on (``sample_id``, ``path``, ``stratum``).
        class_names: Class names in label order.
        threshold_metric: What the binary threshold maximises on validation (``evaluate.threshold_metric``).
        worst_k: How many of the most confidently wrong test images to list (0: none).
    """
    n = len(class_names)
    val = predictions[predictions["split"] == "val"]
    test = predictions[predictions["split"] == "test"].reset_index(drop=True)
    s_test = _scores(test, n)
    metrics = score_split(
        val["label"].to_numpy(),
        _scores(val, n),
        test["label"].to_numpy(),
        s_test,
        class_names,
        threshold_metric,
        sample_strata(table, test["sample_id"]),
    )
    roc = roc_points(test["label"].to_numpy(), s_test) if n == 2 else {}
    worst = []
    paths = table.set_index("sample_id")["path"]
    for i in worst_errors(test["label"].to_numpy(), s_test, metrics["threshold"], worst_k):
        sid = test["sample_id"].iat[int(i)]
        score = s_test[int(i)]
        worst.append(
            {
                "sample_id": sid,
                "path": paths[sid],
                "true": class_names[int(test["label"].iat[int(i)])],
                "score": float(score) if np.ndim(score) == 0 else [float(v) for v in score],
            }
        )
    return metrics, roc, worst


def validation_metrics(predictions: pd.DataFrame, class_names: list[str], threshold: float | None) -> dict[str, Any]:
    """A candidate's metrics on the validation split at its own (validation-chosen) threshold: what the primary
    model is chosen by. Optimistic for the threshold, equally so for every candidate."""
    val = predictions[predictions["split"] == "val"]
    return classification_metrics(val["label"].to_numpy(), _scores(val, len(class_names)), threshold, class_names)


def choose_candidate(val_metrics: dict[str, dict[str, Any]], metric: str) -> tuple[str, float | None]:
    """The candidate with the best validation ``metric`` (first in order on ties; a metric that is undefined for
    a candidate, e.g. ROC AUC of a one-class split, ranks it last). Returns (name, value)."""

    def rank(name: str) -> float:
        value = val_metrics[name].get(metric)
        return -np.inf if value is None else float(value)

    best = max(val_metrics, key=rank)  # max keeps the first of equal values
    value = val_metrics[best].get(metric)
    return best, None if value is None else float(value)
