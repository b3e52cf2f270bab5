"""Evaluate the image classifier and the classical baseline on the same test split.

The decision threshold is chosen on the validation split and then frozen, so test numbers are never tuned on test
data; it is stored in ``model.pt`` so the deployed model decides exactly as evaluated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import EvaluateConfig
from tasks.evaluate.baseline import baseline_scores, extract_features, fit_baseline
from tasks.image_io import read_image
from tasks.metrics import (
    choose_threshold,
    classification_metrics,
    metrics_by_group,
    roc_points,
    worst_errors,
)
from tasks.rundir import RunContext


def _scores(frame: pd.DataFrame, n_classes: int) -> np.ndarray:
    proba = frame[[f"prob_{k}" for k in range(n_classes)]].to_numpy()
    return proba[:, 1] if n_classes == 2 else proba


def _strata(table: pd.DataFrame, ids: pd.Series) -> np.ndarray | None:
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
) -> dict[str, Any]:
    """Choose the threshold on val (binary), then score test overall and per stratum."""
    threshold = choose_threshold(y_val, s_val, threshold_metric, center=center) if s_val.ndim == 1 else None
    out = classification_metrics(y_test, s_test, threshold, class_names)
    out["threshold"] = threshold
    if strata is not None:
        out["by_group"] = metrics_by_group(y_test, s_test, strata, threshold, class_names)
    return out


def evaluate_classifier(
    predictions: pd.DataFrame, table: pd.DataFrame, class_names: list[str], cfg: EvaluateConfig
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Metrics of the trained network from its val/test predictions: (test metrics, ROC points, worst errors)."""
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
        cfg.threshold_metric,
        _strata(table, test["sample_id"]),
    )
    roc = roc_points(test["label"].to_numpy(), s_test) if n == 2 else {}
    worst = []
    paths = table.set_index("sample_id")["path"]
    for i in worst_errors(test["label"].to_numpy(), s_test, metrics["threshold"], cfg.worst_k):
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


def evaluate_baseline(
    table: pd.DataFrame, class_names: list[str], cfg: EvaluateConfig, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """HOG + LBP + intensity features and an RBF SVM tuned by CV on train; threshold on val, scored on test."""
    start = time.perf_counter()
    parts = {s: table[table["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    feats = {s: extract_features([read_image(p) for p in df["path"]]) for s, df in parts.items()}
    feature_s = time.perf_counter() - start
    y = {s: df["label"].to_numpy() for s, df in parts.items()}
    cv = int(min(cfg.baseline_cv, np.bincount(y["train"]).min()))
    search = fit_baseline(feats["train"], y["train"], seed=seed, cv=max(cv, 2), c_grid=cfg.baseline_c)
    s_val = baseline_scores(search, feats["val"])
    s_test = baseline_scores(search, feats["test"])
    metrics = score_split(
        y["val"],
        s_val,
        y["test"],
        s_test,
        class_names,
        cfg.threshold_metric,
        _strata(table, parts["test"]["sample_id"]),
        center=0.0,
    )
    metrics["model"] = "HOG + LBP + intensity statistics, RBF SVM"
    metrics["best_params"] = {k: (v if isinstance(v, str) else float(v)) for k, v in search.best_params_.items()}
    metrics["cv_balanced_accuracy"] = float(search.best_score_)
    metrics["feature_seconds"] = feature_s
    metrics["fit_seconds"] = time.perf_counter() - start - feature_s
    roc = roc_points(y["test"], s_test) if len(class_names) == 2 else {}
    return metrics, roc


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_images_task(cfg: EvaluateConfig, label: StageResult, train: StageResult, ctx: RunContext) -> StageResult:
    """Score the network and the baseline on the test split; writes ``evaluation.json``."""
    logger = get_run_logger()
    key = stage_key("evaluate", label.key, train.key, cfg, ctx.seed)

    def build(out: Path) -> dict:
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        class_names = label.summary["class_names"]
        predictions = pd.read_csv(train.dir / "predictions.csv", dtype={"sample_id": str})
        table["sample_id"] = table["sample_id"].astype(str)
        test, roc, worst = evaluate_classifier(predictions, table, class_names, cfg)
        result: dict[str, Any] = {"test": test, "roc": {"cnn": roc}, "worst_errors": worst}
        if cfg.baseline:
            logger.info("evaluate: fitting the HOG/LBP + SVM baseline")
            baseline, broc = evaluate_baseline(table, class_names, cfg, ctx.seed)
            result["baseline"] = baseline
            result["roc"]["baseline"] = broc
        (out / "evaluation.json").write_text(json.dumps(result, indent=2))
        headline = {"test_accuracy": test["accuracy"], "test_balanced_accuracy": test["balanced_accuracy"]}
        if cfg.baseline:
            headline["baseline_accuracy"] = result["baseline"]["accuracy"]
        return headline

    result = run_stage(StageCache(ctx.cache_root), "evaluate", key, build, ctx.refreshes("evaluate"))
    logger.info("evaluate: %s", ", ".join(f"{k}={v:.4f}" for k, v in result.summary.items() if k != "seconds"))
    return result
