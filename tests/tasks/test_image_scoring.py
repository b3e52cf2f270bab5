"""Scoring predictions: the threshold comes from validation only, test is scored with it, per stratum too."""

from __future__ import annotations

import pandas as pd

from tasks.image_scoring import evaluate_classifier, sample_strata


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    # val separates at 0.7; on test a threshold of 0.5 would call t1 defective, 0.7 does not
    val = [("v0", 0, 0.6), ("v1", 0, 0.65), ("v2", 1, 0.75), ("v3", 1, 0.9)]
    test = [("t0", 0, 0.2), ("t1", 0, 0.6), ("t2", 1, 0.8), ("t3", 1, 0.95)]
    predictions = pd.DataFrame(
        [{"sample_id": s, "split": "val", "label": y, "prob_0": 1 - p, "prob_1": p} for s, y, p in val]
        + [{"sample_id": s, "split": "test", "label": y, "prob_0": 1 - p, "prob_1": p} for s, y, p in test]
    )
    table = pd.DataFrame(
        {
            "sample_id": [r[0] for r in val + test],
            "path": [f"/x/{r[0]}.png" for r in val + test],
            "stratum": ["mono", "poly"] * 4,
        }
    )
    return predictions, table


def test_threshold_from_validation_scores_test() -> None:
    predictions, table = _frames()
    metrics, roc, worst = evaluate_classifier(
        predictions, table, ["good", "crack"], threshold_metric="accuracy", worst_k=3
    )
    assert 0.65 < metrics["threshold"] <= 0.75
    assert metrics["accuracy"] == 1.0 and worst == []
    assert set(metrics["by_group"]) == {"mono", "poly"}
    assert roc  # binary: ROC points for the report


def test_worst_errors_name_their_files() -> None:
    predictions, table = _frames()
    predictions.loc[predictions["sample_id"] == "t3", ["prob_0", "prob_1"]] = [0.99, 0.01]
    _, _, worst = evaluate_classifier(predictions, table, ["good", "crack"], threshold_metric="accuracy", worst_k=3)
    assert [w["sample_id"] for w in worst] == ["t3"] and worst[0]["path"] == "/x/t3.png" and worst[0]["true"] == "crack"
    _, _, none = evaluate_classifier(predictions, table, ["good", "crack"], threshold_metric="accuracy", worst_k=0)
    assert none == []


def test_no_strata_means_none() -> None:
    _, table = _frames()
    table["stratum"] = ""
    assert sample_strata(table, pd.Series(["t0", "t1"])) is None
