"""The evaluate stage for EEG: score the trained detector (SzCORE events) and predictor (alarms against chance).

The scoring is pure and lives elsewhere: detection on the ground floor (:mod:`tasks.detection_scoring`, also used by
the synth stage's synthetic-data experiment), prediction in :mod:`tasks.evaluate.prediction_scoring`. Window
length, step, SOP and SPH come from the label stage's record, so this stage reads no other stage's config section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import EegEvaluateConfig
from tasks.detection_scoring import evaluate_detection
from tasks.eeg_windows import read_windows
from tasks.evaluate.prediction_scoring import evaluate_prediction
from tasks.rundir import RunContext


def _read_tables(ingest: StageResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ingest stage's ``recordings.csv`` and ``seizures.csv``, ids kept as strings."""
    dtype = {"recording_id": str, "patient": str}
    return pd.read_csv(ingest.dir / "recordings.csv", dtype=dtype), pd.read_csv(
        ingest.dir / "seizures.csv", dtype=dtype
    )


def _score_detectors(
    windows: pd.DataFrame, train_detection: StageResult, ingest: StageResult, label: StageResult, cfg: EegEvaluateConfig
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """The primary detector's report and scored test windows, and the ``compare`` models' reports by name."""
    recordings, seizures = _read_tables(ingest)

    def score(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
        return evaluate_detection(
            windows,
            pd.read_csv(folder / "predictions.csv"),
            seizures,
            recordings,
            float(label.summary["window_s"]),
            float(label.summary["step_s"]),
            cfg.detection_threshold_metric,
            cfg.detection_smooth_windows,
        )

    report, test = score(train_detection.dir)
    compare = {}
    others = train_detection.dir / "compare"
    for folder in sorted(others.glob("*")) if others.is_dir() else []:
        other, _ = score(folder)
        other.pop("by_patient", None)
        compare[folder.name] = {"detection": other}
    return report, test, compare


def _postictal_s(labelled: dict[str, Any], logger: Any) -> float:
    """The label stage's postictal time (its record carries it); an older record without it: 0 s, said in the log."""
    if "postictal_s" in labelled:
        return float(labelled["postictal_s"])
    logger.warning("evaluate: the label record has no postictal_s; only ictal time is excluded from false alarms")
    return 0.0


def _headline(result: dict[str, Any], cfg: EegEvaluateConfig) -> dict[str, Any]:
    """The record's summary: the headline numbers, and how detection was scored (the synth stage scores its arms
    the same way)."""
    head: dict[str, Any] = {
        "detection_threshold_metric": cfg.detection_threshold_metric,
        "detection_smooth_windows": cfg.detection_smooth_windows,
    }
    if "detection" in result:
        head["detection_event_sensitivity"] = result["detection"]["event"]["sensitivity"]
        head["detection_fp_per_24h"] = result["detection"]["event"]["fp_per_24h"]
    if result.get("prediction", {}).get("feasible"):
        head["prediction_sensitivity"] = result["prediction"]["sensitivity"]
        head["prediction_p_value"] = result["prediction"]["p_value"]
        head["prediction_p_value_surrogate"] = result["prediction"]["p_value_surrogate"]
    return head


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_eeg_task(
    *,
    cfg: EegEvaluateConfig,
    ctx: RunContext,
    ingest: StageResult,
    label: StageResult,
    train_detection: StageResult | None = None,
    train_prediction: StageResult | None = None,
) -> StageResult:
    """Score detection (SzCORE event rules) and prediction (alarms vs a random predictor); writes evaluation.json."""
    logger = get_run_logger()
    key = stage_key(
        "evaluate",
        label.key,
        train_detection.key if train_detection else None,
        train_prediction.key if train_prediction else None,
        cfg,
    )

    def build(out: Path) -> dict:
        windows = read_windows(label.dir)
        result: dict[str, Any] = {}
        if train_detection is not None:
            result["detection"], test, compare = _score_detectors(windows, train_detection, ingest, label, cfg)
            trained = next(iter(train_detection.summary.get("models", {}).values()), {})  # the primary model first
            notes = [*trained.get("fallbacks", []), *result["detection"].get("fallbacks", [])]
            if notes:
                result["detection"]["fallbacks"] = notes
                for note in notes:
                    logger.warning("evaluate detection: %s", note)
            test.to_csv(out / "detection_scored.csv", index=False)
            if compare:
                result["models"] = compare
        labelled = label.summary["prediction"]
        if train_prediction is not None:
            leading = pd.read_csv(label.dir / "leading.csv", dtype={"seizure_id": str, "timeline": str})
            result["prediction"], oof = evaluate_prediction(
                windows,
                pd.read_csv(train_prediction.dir / "fold_predictions.csv"),
                leading,
                float(labelled["sop_s"]),
                float(labelled["sph_s"]),
                cfg.prediction_threshold_metric,
                cfg.prediction_smooth_windows,
                cfg.alpha,
                postictal_s=_postictal_s(labelled, logger),
                n_surrogates=cfg.n_surrogates,
                seed=ctx.seed,
            )
            result["prediction"]["fallbacks"] = [
                *train_prediction.summary.get("fallbacks", []),
                *result["prediction"]["fallbacks"],
            ]
            for note in result["prediction"]["fallbacks"]:
                logger.warning("evaluate prediction: %s", note)
            oof.to_csv(out / "prediction_scored.csv", index=False)
        elif not labelled["feasible"]:
            result["prediction"] = {"feasible": False, "reason": labelled["reason"]}
        (out / "evaluation.json").write_text(json.dumps(result, indent=2, default=float))
        return _headline(result, cfg)

    result = run_stage(StageCache(ctx.cache_root), "evaluate", key, build, ctx.refreshes("evaluate"))
    logger.info("evaluate: %s", result.summary)
    return result
