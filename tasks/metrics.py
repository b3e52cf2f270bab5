"""Classification metrics shared by evaluation, the synthetic-data experiment and EEG scoring: threshold choice,
headline numbers, strata, plots.

Every function here is pure (numpy in, plain Python out) so the ``@task`` wrappers can write the result straight
into ``metrics.json``: floats are Python floats, counts are Python ints, and an undefined ROC AUC is ``None``
(JSON ``null``) rather than ``NaN``, which ``json.dump`` would write as invalid JSON.

Conventions, shared with scikit-learn so the numbers can be checked against it:

- Binary labels are 0 (negative, e.g. a good cell) and 1 (positive, a defect); a binary score is any continuous
  value where larger means "more likely positive" (a probability, a logit, an SVM decision value), and a sample is
  predicted positive when ``score >= threshold``.
- Multiclass labels are integer indices into ``class_names``; scores are ``(N, C)`` with the predicted class the
  row's argmax (probabilities or per-class decision values both work).
- A ratio whose denominator is zero (precision with no predicted positives, say) is 0.0, as scikit-learn's
  ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "f1", "youden")


# --------------------------------------------------------------------------------------------- validation
def _as_binary_labels(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5].tolist()
        raise ValueError(
            f"binary y_true must hold 0 (negative) and 1 (positive), found {bad}; "
            "map the classes to 0/1 or use multiclass_metrics"
        )
    return y.astype(np.int64)


def _as_scores(score: np.ndarray, n: int, ndim: int = 1) -> np.ndarray:
    s = np.asarray(score, dtype=np.float64)
    if s.ndim != ndim or s.shape[0] != n:
        want = "(N,)" if ndim == 1 else "(N, C)"
        raise ValueError(f"scores must have shape {want} with N={n} to match y_true, got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(
            f"scores contain {int((~np.isfinite(s)).sum())} non-finite values (NaN/inf); "
            "check the model output before evaluating"
        )
    return s


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


# --------------------------------------------------------------------------------------------- threshold
def _confusion_at(
    y: np.ndarray, s: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised (tn, fp, fn, tp) for every threshold, ``score >= t`` being positive. O((N + T) log N)."""
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return neg.size - fp, fp, pos.size - tp, tp


def choose_threshold(
    y_true: np.ndarray,
    score: np.ndarray,
    metric: str = "balanced_accuracy",
    center: float = 0.5,
) -> float:
    """The decision threshold on the positive-class score that maximises ``metric`` on the given data.

    Meant for validation data: the threshold is then frozen and applied to test data, so the test numbers stay
    honest. A fixed 0.5 is a poor default under class imbalance (ELPV has about one defective cell in four), and
    balanced accuracy / Youden's J weight both classes equally, so they pick a threshold that does not simply
    favour the majority class.

    Candidates are the midpoints between consecutive distinct scores plus one value below the smallest score (all
    positive) and one above the largest (all negative): between two consecutive scores every threshold gives the
    same predictions, so the midpoint is the one farthest from both, i.e. the most robust to small score shifts.
    Ties (a plateau of equally good candidates) are broken toward ``center`` so repeated runs and near-identical
    models pick the same, conventional threshold.

    Args:
        y_true: ``(N,)`` binary labels, 1 = positive.
        score: ``(N,)`` positive-class scores; larger means more likely positive.
        metric: one of ``"accuracy"``, ``"balanced_accuracy"``, ``"f1"``, ``"youden"`` (sensitivity +
            specificity - 1; it has the same maximiser as balanced accuracy).
        center: the tie-break target and the answer for degenerate input; 0.5 suits probabilities, pass 0.0 for
            logits or SVM decision values.

    Returns:
        The threshold as a Python float. If ``y_true`` holds a single class (or is empty) the data cannot say
        where the boundary lies, so ``center`` is returned.

    Raises:
        ValueError: unknown ``metric``, non-binary labels or mismatched / non-finite scores.
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(f"unknown threshold metric {metric!r}; choose one of {THRESHOLD_METRICS}")
    y = _as_binary_labels(y_true)
    s = _as_scores(score, y.size)
    if y.size == 0 or np.unique(y).size < 2:
        return float(center)

    u = np.unique(s)  # sorted
    gap = float(np.min(np.diff(u))) if u.size > 1 else 1.0
    candidates = np.concatenate([[u[0] - gap], (u[:-1] + u[1:]) / 2.0, [u[-1] + gap]])
    tn, fp, fn, tp = _confusion_at(y, s, candidates)
    tpr = tp / (tp + fn)  # both classes are present, so these denominators are > 0
    tnr = tn / (tn + fp)
    if metric == "accuracy":
        value = (tp + tn) / y.size
    elif metric == "f1":
        value = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    elif metric == "balanced_accuracy":
        value = (tpr + tnr) / 2.0
    else:  # youden
        value = tpr + tnr - 1.0
    best = np.flatnonzero(value >= value.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - center))]])


# --------------------------------------------------------------------------------------------- headline metrics
def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, Any]:
    """Headline binary metrics at a fixed threshold, in the ``metrics.json`` layout (``test.*``, ``baseline.*``).

    Args:
        y_true: ``(N,)`` binary labels, 1 = positive (defective).
        score: ``(N,)`` positive-class scores; ``score >= threshold`` is predicted positive.
        threshold: the decision threshold, normally from :func:`choose_threshold` on validation data.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present, as scikit-learn),
        ``precision``, ``recall`` (sensitivity), ``specificity``, ``f1``, ``roc_auc`` (threshold-free; ``None``
        when only one class is present, since it is undefined), ``confusion_matrix`` as ``[[tn, fp], [fn, tp]]``,
        ``threshold``, ``n``, ``n_positive``. Proportions are fractions in [0, 1].
    """
    y = _as_binary_labels(y_true)
    s = _as_scores(score, y.size)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    n_pos, n_neg = tp + fn, tn + fp
    recall = _ratio(tp, n_pos)
    specificity = _ratio(tn, n_neg)
    present = [r for r, count in ((recall, n_pos), (specificity, n_neg)) if count]
    both = n_pos > 0 and n_neg > 0
    return {
        "accuracy": _ratio(tp + tn, y.size),
        "balanced_accuracy": float(np.mean(present)) if present else 0.0,
        "precision": _ratio(tp, tp + fp),
        "recall": recall,
        "specificity": specificity,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(roc_auc_score(y, s)) if both else None,
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "threshold": float(threshold),
        "n": int(y.size),
        "n_positive": n_pos,
    }


def _as_class_labels(y_true: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"multiclass y_true must hold integer class indices in [0, {n_classes}), "
            f"got dtype {y.dtype} with values {np.unique(y)[:5].tolist()}; encode labels as indices into class_names"
        )
    return y.astype(np.int64)


def _ovr_macro_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """One-vs-rest macro ROC AUC over the classes that have both positives and negatives in ``y``.

    Computed class by class rather than with ``roc_auc_score(multi_class="ovr")`` because that one insists the
    rows are probabilities summing to 1 and that every class is present, which rules out SVM decision values and
    small strata. A class qualifies only if another one is present too, so the list is empty or has >= 2.
    """
    aucs = []
    for c in range(s.shape[1]):
        is_c = y == c
        if 0 < is_c.sum() < y.size:
            aucs.append(roc_auc_score(is_c, s[:, c]))
    return float(np.mean(aucs)) if aucs else None


def multiclass_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Headline metrics for a C-class problem, predicting each row's argmax.

    Args:
        y_true: ``(N,)`` integer class indices into ``class_names``.
        proba: ``(N, C)`` per-class scores (probabilities, logits or one-vs-rest decision values).
        class_names: the C class names, in index order.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present), macro ``precision``,
        ``recall``, ``f1`` (unweighted means over all C classes, so a rare class counts as much as a common one),
        ``roc_auc`` (one-vs-rest macro over classes with both positives and negatives; ``None`` when fewer than
        two qualify), ``confusion_matrix`` (C×C, rows = true class), ``per_class`` ``{name: {precision, recall,
        f1, support}}`` and ``n``.
    """
    names = [str(c) for c in class_names]
    y = _as_class_labels(y_true, len(names))
    s = _as_scores(proba, y.size, ndim=2)
    if s.shape[1] != len(names):
        raise ValueError(f"proba has {s.shape[1]} columns but class_names has {len(names)}: {names}")
    pred = np.argmax(s, axis=1)
    cm = confusion_matrix(y, pred, labels=np.arange(len(names)))
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    return {
        "accuracy": _ratio(tp.sum(), y.size),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "roc_auc": _ovr_macro_auc(y, s) if y.size else None,
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "n": int(y.size),
    }


def classification_metrics(
    y_true: np.ndarray,
    score: np.ndarray,
    threshold: float | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Binary or multiclass metrics, picked from the score's shape: ``(N,)`` binary, ``(N, C)`` multiclass.

    Args:
        y_true: ``(N,)`` labels (0/1 for binary, class indices for multiclass).
        score: ``(N,)`` positive-class scores or ``(N, C)`` per-class scores.
        threshold: required for binary scores; ignored for multiclass (argmax decides).
        class_names: required for multiclass scores.

    Returns:
        :func:`binary_metrics` or :func:`multiclass_metrics`.
    """
    s = np.asarray(score)
    if s.ndim == 1:
        if threshold is None:
            raise ValueError("binary scores need a threshold; choose one on validation data with choose_threshold")
        return binary_metrics(y_true, s, threshold)
    if class_names is None:
        raise ValueError(f"multiclass scores of shape {s.shape} need class_names (one per column)")
    return multiclass_metrics(y_true, s, class_names)


def metrics_by_group(
    y_true: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    threshold: float | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The same metrics within each stratum (``test.by_group.<stratum>.*``, e.g. ELPV ``mono`` / ``poly``).

    A model can look good overall while failing one kind of input; reporting per stratum exposes that. Every
    group is reported, even one with a single class (its ``roc_auc`` is then ``None``), so a missing key never
    hides a stratum. The global threshold is applied to every group: it is the one the deployed model uses.

    Args:
        y_true: ``(N,)`` labels.
        score: ``(N,)`` positive-class scores or ``(N, C)`` per-class scores.
        groups: ``(N,)`` stratum value per sample; keys in the result are ``str(value)``, sorted.
        threshold: decision threshold for binary scores.
        class_names: class names for multiclass scores.

    Returns:
        ``{str(group): metrics}`` with the keys of :func:`classification_metrics`.
    """
    g = np.asarray(groups)
    y = np.asarray(y_true)
    s = np.asarray(score)
    if g.shape != y.shape or s.shape[:1] != y.shape:
        raise ValueError(f"groups {g.shape}, y_true {y.shape} and score {s.shape} must have the same length N")
    return {
        str(value): classification_metrics(y[g == value], s[g == value], threshold, class_names)
        for value in np.unique(g)
    }


# --------------------------------------------------------------------------------------------- plots and errors
def roc_points(y_true: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """ROC curve points for plotting in the report.

    Args:
        y_true: ``(N,)`` binary labels.
        score: ``(N,)`` positive-class scores.

    Returns:
        ``{"fpr": [...], "tpr": [...], "auc": float}``; the thresholds are left out because the first one is
        ``inf`` (not JSON). With a single class the curve is undefined: empty lists and ``auc`` ``None``.
    """
    y = _as_binary_labels(y_true)
    s = _as_scores(score, y.size)
    if np.unique(y).size < 2:
        return {"fpr": [], "tpr": [], "auc": None}
    fpr, tpr, _ = roc_curve(y, s)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(roc_auc_score(y, s))}


def worst_errors(y_true: np.ndarray, score: np.ndarray, threshold: float | None, k: int) -> np.ndarray:
    """Indices of the ``k`` most confidently wrong samples, most confident first, for the report's error gallery.

    Confidence of a binary error is the score's distance from the threshold on the wrong side; of a multiclass
    error, the predicted class's score minus the true class's score. Ties keep index order (stable), so the
    gallery does not reshuffle between runs.

    Args:
        y_true: ``(N,)`` labels.
        score: ``(N,)`` positive-class scores (needs ``threshold``) or ``(N, C)`` per-class scores.
        threshold: decision threshold for binary scores; ignored for multiclass.
        k: how many to return at most; fewer when there are fewer errors.

    Returns:
        ``(min(k, n_errors),)`` int64 indices into the inputs.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    s_in = np.asarray(score)
    if s_in.ndim == 1:
        if threshold is None:
            raise ValueError("binary scores need a threshold to decide which samples are wrong")
        y = _as_binary_labels(y_true)
        s = _as_scores(s_in, y.size)
        wrong = (s >= threshold) != (y == 1)
        margin = np.abs(s - threshold)
    else:
        y = _as_class_labels(y_true, s_in.shape[1])
        s = _as_scores(s_in, y.size, ndim=2)
        pred = np.argmax(s, axis=1)
        wrong = pred != y
        rows = np.arange(y.size)
        margin = s[rows, pred] - s[rows, y]
    idx = np.flatnonzero(wrong)
    order = np.argsort(-margin[idx], kind="stable")
    return idx[order][:k].astype(np.int64)


def predicted_labels(score: np.ndarray, threshold: float | None) -> np.ndarray:
    """Hard decisions: ``score >= threshold`` for ``(N,)`` binary scores, the argmax for ``(N, C)`` scores."""
    s = np.asarray(score)
    if s.ndim == 1:
        if threshold is None:
            raise ValueError("binary scores need a threshold; choose one on validation data with choose_threshold")
        return (s >= threshold).astype(np.int64)
    return s.argmax(axis=1).astype(np.int64)


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals of accuracy and balanced accuracy on a test split (Efron & Tibshirani 1993).

    The decision rule is fixed (threshold chosen on validation beforehand), so the interval shows the sampling
    uncertainty of the test set alone: with ELPV's 656 test images an accuracy of 0.80 is known to about ±0.03.
    Test samples are drawn with replacement ``n_boot`` times with a seeded generator; balanced accuracy averages
    the recall of the classes present in each resample, as scikit-learn does.

    Returns:
        ``{"accuracy": [low, high], "balanced_accuracy": [low, high]}``; None for an empty test split.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if len(y) == 0:
        return {"accuracy": None, "balanced_accuracy": None}
    idx = bootstrap_indices(len(y), n_boot, seed)
    acc = (p == y)[idx].mean(axis=1)
    bacc = resampled_balanced_accuracy(y, p, idx, n_classes)
    return {"accuracy": percentile_interval(acc, level), "balanced_accuracy": percentile_interval(bacc, level)}


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` item indices drawn with replacement by a seeded generator: one resample per row. Scoring
    several decision rules on the same rows pairs them (their difference's interval, not two separate ones)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def resampled_balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy of fixed decisions on each resample (row of ``idx``), ``(B,)``: the recall of the classes
    present in the resample, averaged, as scikit-learn does."""
    y = np.asarray(y_true, dtype=np.int64)
    yb, correct = y[idx], (np.asarray(y_pred, dtype=np.int64) == y)[idx]
    support = np.stack([(yb == c).sum(axis=1) for c in range(n_classes)], axis=1)  # (B, C)
    hits = np.stack([((yb == c) & correct).sum(axis=1) for c in range(n_classes)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    return np.nanmean(recall, axis=1)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    """The central ``level`` percentile interval of bootstrap ``values``: ``[low, high]``."""
    tail = 100 * (1 - level) / 2
    return [float(v) for v in np.percentile(values, [tail, 100 - tail])]
