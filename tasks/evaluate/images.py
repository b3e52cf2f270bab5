"""The evaluate stage for inspection images: the classifier and the classical baseline on the same test split.

The decision threshold is chosen on the validation split and then frozen (:mod:`tasks.image_scoring`), so test
numbers are never tuned on test data; it is stored in ``model.pt`` so the deployed model decides exactly as
evaluated.
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
from tasks.image_scoring import choose_candidate, evaluate_classifier, sample_strata, score_split, validation_metrics
from tasks.metrics import classification_metrics, roc_points
from tasks.rundir import RunContext


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
        sample_strata(table, parts["test"]["sample_id"]),
        center=0.0,
    )
    metrics["val"] = classification_metrics(y["val"], s_val, metrics["threshold"], class_names)
    metrics["model"] = "HOG + LBP + intensity statistics, RBF SVM"
    metrics["best_params"] = {k: (v if isinstance(v, str) else float(v)) for k, v in search.best_params_.items()}
    metrics["cv_balanced_accuracy"] = float(search.best_score_)
    metrics["feature_seconds"] = feature_s
    metrics["fit_seconds"] = time.perf_counter() - start - feature_s
    roc = roc_points(y["test"], s_test) if len(class_names) == 2 else {}
    return metrics, roc


def score_candidates(
    train: StageResult, table: pd.DataFrame, class_names: list[str], cfg: EvaluateConfig
) -> dict[str, Any]:
    """Score every candidate the train stage fitted on val and test, and choose the primary one on validation.

    Returns ``evaluation.json``'s model part: ``test`` (the chosen model's test metrics), ``models.<name>.{val,
    test}``, ``selection.{model, metric, value}`` (metric from the train record's ``select_metric``), ``roc.cnn``
    and ``worst_errors`` of the chosen model.
    """
    candidates = train.summary.get("candidates") or {train.summary["model"]: {"path": train.path}}
    metric = train.summary.get("select_metric", "balanced_accuracy")
    scored: dict[str, dict[str, Any]] = {}
    for name, entry in candidates.items():
        predictions = pd.read_csv(Path(entry["path"]) / "predictions.csv", dtype={"sample_id": str})
        test, roc, worst = evaluate_classifier(
            predictions, table, class_names, threshold_metric=cfg.threshold_metric, worst_k=cfg.worst_k
        )
        val = validation_metrics(predictions, class_names, test["threshold"])
        scored[name] = {"val": val, "test": test, "roc": roc, "worst": worst}
    chosen, value = choose_candidate({n: s["val"] for n, s in scored.items()}, metric)
    return {
        "test": scored[chosen]["test"],
        "models": {n: {"val": s["val"], "test": s["test"]} for n, s in scored.items()},
        "selection": {"model": chosen, "metric": metric, "value": value, "split": "val"},
        "roc": {"cnn": scored[chosen]["roc"]},
        "worst_errors": scored[chosen]["worst"],
    }


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_images_task(
    *, cfg: EvaluateConfig, ctx: RunContext, label: StageResult, train: StageResult
) -> StageResult:
    """Score the network and the baseline on the test split; writes ``evaluation.json``.

    The record's summary carries the headline numbers and ``threshold_metric`` (what the threshold maximises on
    validation), so later stages score their own models the same way without the evaluate section.
    """
    logger = get_run_logger()
    key = stage_key("evaluate", label.key, train.key, cfg, ctx.seed)

    def build(out: Path) -> dict:
        table = pd.read_csv(label.dir / "splits.csv", keep_default_na=False)
        table["sample_id"] = table["sample_id"].astype(str)
        class_names = label.summary["class_names"]
        result = score_candidates(train, table, class_names, cfg)
        logger.info(
            "evaluate: %s chosen on validation %s %.4f",
            result["selection"]["model"],
            result["selection"]["metric"],
            result["selection"]["value"] or float("nan"),
        )
        if cfg.baseline:
            logger.info("evaluate: fitting the HOG/LBP + SVM baseline")
            baseline, broc = evaluate_baseline(table, class_names, cfg, ctx.seed)
            result["baseline"] = baseline
            result["roc"]["baseline"] = broc
        (out / "evaluation.json").write_text(json.dumps(result, indent=2))
        test = result["test"]
        headline = {"test_accuracy": test["accuracy"], "test_balanced_accuracy": test["balanced_accuracy"]}
        if cfg.baseline:
            headline["baseline_accuracy"] = result["baseline"]["accuracy"]
        return headline | {"threshold_metric": cfg.threshold_metric, "selection": result["selection"]}

    result = run_stage(StageCache(ctx.cache_root), "evaluate", key, build, ctx.refreshes("evaluate"))
    scores = {k: v for k, v in result.summary.items() if k not in ("seconds", "threshold_metric", "selection")}
    logger.info("evaluate: %s", ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return result
