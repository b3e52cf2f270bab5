import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from tasks.metrics import (
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
    classification_metrics,
    metrics_by_group,
    multiclass_metrics,
    predicted_labels,
    roc_points,
    worst_errors,
)

# Hand example: 10 samples, threshold 0.5 -> tn=4, fp=2, fn=1, tp=3.
Y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
S = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.45, 0.55, 0.8, 0.9])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --------------------------------------------------------------------------------------------- choose_threshold
@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1", "youden"])
def test_choose_threshold_separates_separable_data(metric: str) -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.05, 0.2, 0.3, 0.7, 0.75, 0.8, 0.95])
    t = choose_threshold(y, s, metric)
    assert t == pytest.approx(0.5)  # midpoint of the gap 0.3..0.7
    assert binary_metrics(y, s, t)["accuracy"] == 1.0


def test_choose_threshold_finds_off_centre_gap_and_plain_scores() -> None:
    # Separable at 2.5 on an arbitrary scale: the chooser must not cling to 0.5 when it is worse.
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([1.0, 1.5, 2.0, 3.0, 4.0])
    assert choose_threshold(y, s) == pytest.approx(2.5)


def test_choose_threshold_breaks_ties_toward_center() -> None:
    # Accuracy is 0.75 at both 0.15 and 0.35 (and 0.5 elsewhere): the tie goes to the candidate nearer the centre.
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4])
    assert choose_threshold(y, s, "accuracy") == pytest.approx(0.35)
    assert choose_threshold(y, s, "accuracy", center=0.0) == pytest.approx(0.15)
    # Decision values: separable around the natural centre 0.
    y = np.array([0, 0, 1, 1])
    s = np.array([-3.0, -1.0, 1.0, 3.0])
    assert choose_threshold(y, s, center=0.0) == pytest.approx(0.0)


def test_choose_threshold_optimises_the_requested_metric(rng: np.random.Generator) -> None:
    y = (rng.random(300) < 0.2).astype(int)
    s = rng.normal(size=300) + 1.2 * y
    for metric, fn in [("accuracy", accuracy_score), ("balanced_accuracy", balanced_accuracy_score)]:
        best = fn(y, s >= choose_threshold(y, s, metric))
        brute = max(fn(y, s >= t) for t in np.concatenate([s, [s.max() + 1]]))
        assert best == pytest.approx(brute)


@pytest.mark.parametrize("y", [np.zeros(5, int), np.ones(5, int), np.zeros(0, int)])
def test_choose_threshold_one_class_returns_center(y: np.ndarray) -> None:
    s = np.linspace(0, 1, y.size)
    assert choose_threshold(y, s) == 0.5
    assert choose_threshold(y, s, center=0.0) == 0.0


def test_choose_threshold_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown threshold metric"):
        choose_threshold(Y, S, "auc")
    with pytest.raises(ValueError, match="0 \\(negative\\) and 1"):
        choose_threshold(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="non-finite"):
        choose_threshold(np.array([0, 1]), np.array([0.1, np.nan]))


# --------------------------------------------------------------------------------------------- binary_metrics
def test_binary_metrics_hand_example_matches_sklearn() -> None:
    m = binary_metrics(Y, S, 0.5)
    pred = S >= 0.5
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]
    assert m["accuracy"] == pytest.approx(accuracy_score(Y, pred)) == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y, pred))
    assert m["precision"] == pytest.approx(precision_score(Y, pred)) == pytest.approx(0.6)
    assert m["recall"] == pytest.approx(recall_score(Y, pred)) == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(f1_score(Y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(Y, S))
    assert (m["threshold"], m["n"], m["n_positive"]) == (0.5, 10, 4)
    # metrics.json contract: plain JSON types, proportions in [0, 1].
    assert json.loads(json.dumps(m)) == m
    assert all(type(m[k]) is float and 0.0 <= m[k] <= 1.0 for k in ("accuracy", "precision", "recall", "f1"))


def test_binary_metrics_score_equal_to_threshold_is_positive() -> None:
    m = binary_metrics(np.array([0, 1]), np.array([0.2, 0.5]), 0.5)
    assert m["confusion_matrix"] == [[1, 0], [0, 1]]


def test_binary_metrics_one_class_has_no_auc_and_no_crash() -> None:
    m = binary_metrics(np.zeros(4, int), np.array([0.1, 0.2, 0.7, 0.9]), 0.5)
    assert m["roc_auc"] is None
    assert m["confusion_matrix"] == [[2, 2], [0, 0]]
    assert m["specificity"] == 0.5 and m["balanced_accuracy"] == 0.5
    assert m["precision"] == 0.0 and m["recall"] == 0.0
    json.dumps(m, allow_nan=False)


# --------------------------------------------------------------------------------------------- multiclass_metrics
def test_multiclass_metrics_match_sklearn(rng: np.random.Generator) -> None:
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 0])
    proba = rng.dirichlet(np.ones(3), size=y.size)
    proba[np.arange(6), y[:6]] += 1.0  # make the first six right
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    m = multiclass_metrics(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(y, pred, average="macro", zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert np.array(m["confusion_matrix"]).sum() == y.size
    assert set(m["per_class"]) == {"a", "b", "c"}
    assert [m["per_class"][c]["support"] for c in "abc"] == [3, 3, 4]
    assert m["per_class"]["b"]["f1"] == pytest.approx(f1_score(y, pred, average=None)[1])
    assert json.loads(json.dumps(m)) == m


def test_multiclass_metrics_absent_class_and_decision_values() -> None:
    y = np.array([0, 0, 1, 1])  # class 2 absent
    scores = np.array([[2.0, -1.0, -3.0], [1.0, 0.5, -2.0], [-1.0, 2.0, 0.0], [0.0, -0.5, 1.0]])  # not probabilities
    m = multiclass_metrics(y, scores, ["x", "y", "z"])
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert m["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["balanced_accuracy"] == pytest.approx(0.75)  # mean recall over the classes present
    assert m["roc_auc"] is not None
    single = multiclass_metrics(np.array([1, 1]), scores[:2], ["x", "y", "z"])
    assert single["roc_auc"] is None


def test_multiclass_metrics_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="class indices"):
        multiclass_metrics(np.array([0, 3]), np.ones((2, 3)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="class_names has 2"):
        multiclass_metrics(np.array([0, 1]), np.ones((2, 3)), ["a", "b"])


# --------------------------------------------------------------------------------------------- by group
def test_metrics_by_group_splits_samples_correctly() -> None:
    # Interleaved groups, so a split by position instead of by value would give other counts.
    groups = np.array(["a", "b", "a", "b", "c", "c", "b", "a", "b", "a"])
    by = metrics_by_group(Y, S, groups, threshold=0.5)
    assert list(by) == ["a", "b", "c"]
    assert by["a"]["confusion_matrix"] == [[2, 0], [0, 2]]
    assert by["b"]["confusion_matrix"] == [[2, 0], [1, 1]]
    assert by["c"]["confusion_matrix"] == [[0, 2], [0, 0]]
    assert by["c"]["roc_auc"] is None  # one class: reported, not skipped
    assert by["a"]["roc_auc"] == 1.0
    for name in by:
        assert by[name] == binary_metrics(Y[groups == name], S[groups == name], 0.5)
    total = sum(np.array(by[name]["confusion_matrix"]) for name in by)
    assert total.tolist() == binary_metrics(Y, S, 0.5)["confusion_matrix"]


def test_metrics_by_group_multiclass_and_errors() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[[0, 1, 2, 1, 1, 2]]
    by = metrics_by_group(y, proba, np.array([1, 1, 1, 2, 2, 2]), class_names=["a", "b", "c"])
    assert list(by) == ["1", "2"]
    assert by["1"]["accuracy"] == 1.0 and by["2"]["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="threshold"):
        metrics_by_group(Y, S, np.zeros(10))
    with pytest.raises(ValueError, match="same length"):
        metrics_by_group(Y, S, np.zeros(9), threshold=0.5)
    with pytest.raises(ValueError, match="class_names"):
        classification_metrics(y, proba)


# --------------------------------------------------------------------------------------------- plots and errors
def test_roc_points() -> None:
    r = roc_points(Y, S)
    assert r["fpr"][0] == 0.0 and r["fpr"][-1] == 1.0 and r["tpr"][-1] == 1.0
    assert np.all(np.diff(r["fpr"]) >= 0) and np.all(np.diff(r["tpr"]) >= 0)
    assert r["auc"] == pytest.approx(roc_auc_score(Y, S))
    json.dumps(r, allow_nan=False)
    assert roc_points(np.ones(3, int), np.array([0.1, 0.2, 0.3])) == {"fpr": [], "tpr": [], "auc": None}


def test_worst_errors_binary() -> None:
    # Wrong at 0.5: index 4 (neg, 0.6), 5 (neg, 0.7), 6 (pos, 0.45); margins 0.1, 0.2, 0.05.
    assert worst_errors(Y, S, 0.5, k=2).tolist() == [5, 4]
    assert worst_errors(Y, S, 0.5, k=10).tolist() == [5, 4, 6]
    assert worst_errors(Y, S, 0.5, k=0).tolist() == []
    assert worst_errors(np.array([0, 1]), np.array([0.1, 0.9]), 0.5, k=3).size == 0


def test_worst_errors_multiclass() -> None:
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.05, 0.9, 0.05]])
    assert worst_errors(y, proba, None, k=5).tolist() == [3, 1]


def test_bootstrap_ci_matches_scikit_learn_on_each_resample() -> None:
    """The vectorised resampling gives exactly scikit-learn's scores on the same resampled indices."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 120)
    pred = np.where(rng.random(120) < 0.7, y, rng.integers(0, 3, 120))
    got = bootstrap_ci(y, pred, 3, n_boot=50, seed=11)
    idx = np.random.default_rng(11).integers(0, 120, size=(50, 120))
    acc = [accuracy_score(y[i], pred[i]) for i in idx]
    bacc = [balanced_accuracy_score(y[i], pred[i]) for i in idx]
    assert got["accuracy"] == pytest.approx(list(np.percentile(acc, [2.5, 97.5])), abs=1e-12)
    assert got["balanced_accuracy"] == pytest.approx(list(np.percentile(bacc, [2.5, 97.5])), abs=1e-12)


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < 0.8, y, 1 - y)
        ci = bootstrap_ci(y, pred, 2, seed=0)
        assert ci["accuracy"][0] <= float((pred == y).mean()) <= ci["accuracy"][1]
        widths.append(ci["accuracy"][1] - ci["accuracy"][0])
    assert widths[1] < widths[0] / 2.5  # ~1/sqrt(n): 16x the samples, about a quarter of the width
    assert bootstrap_ci(np.array([], dtype=int), np.array([], dtype=int), 2) == {
        "accuracy": None,
        "balanced_accuracy": None,
    }


def test_predicted_labels_threshold_and_argmax() -> None:
    assert predicted_labels(np.array([0.2, 0.5, 0.9]), 0.5).tolist() == [0, 1, 1]
    assert predicted_labels(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), None).tolist() == [1, 0]
    with pytest.raises(ValueError, match="threshold"):
        predicted_labels(np.array([0.2]), None)
