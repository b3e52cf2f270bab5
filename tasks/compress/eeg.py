"""The compress stage for EEG: each task's window classifier (detection, prediction) as fp32 ONNX, int8 and pruned.

Windows are read exactly as training read them (:func:`tasks.eeg_windows.load_windows` with the model's own
normalisation). Detection is scored on its test recordings. Prediction has no held-out split for its final model
(it is fitted on every fold after cross-validation), so its variants are scored on the labelled windows of the
cross-validation folds: in-sample for that model, which is fine for comparing variants with each other (what this
stage measures) but is not a test score. EEG windows nets are small: int8 often does not pay, and the report says
so with the numbers. Each task writes ``<task>/model.onnx``, ``<task>/model.int8.onnx`` and ``<task>/compress.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.compress.variants import CompressData, compress_model
from tasks.config import CompressConfig
from tasks.eeg_windows import WindowDataset, read_windows
from tasks.model_file import build_model, read_model_file
from tasks.onnx_model import model_metadata
from tasks.rundir import RunContext


def _draw(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or len(frame) <= n:
        return frame
    return frame.iloc[np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))]


def window_array(frame: pd.DataFrame, signals: Path, meta: dict[str, Any], label_column: str) -> np.ndarray:
    """Windows ``(N, C, T)`` float32 in the model's normalisation (the train stage's reader)."""
    pre = meta["preprocessing"]
    data = WindowDataset(
        frame.assign(**{label_column: frame[label_column].clip(lower=0)}),
        signals,
        int(pre["window_samples"]),
        label_column=label_column,
        normalize=pre["normalize"],
        **({"sfreq": float(pre["sfreq"])} if pre["normalize"] == "causal" else {}),
    )
    if not len(data):
        return np.zeros((0, len(pre["channels"]), int(pre["window_samples"])), dtype=np.float32)
    return np.stack([data[i][0].numpy() for i in range(len(data))])


def task_windows(windows: pd.DataFrame, task_name: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(scored windows, train windows, label column) of one task (see the module docstring)."""
    if task_name == "detection":
        return windows[windows["split"] == "test"], windows[windows["split"] == "train"], "ictal"
    labelled = windows[windows["pred_label"] >= 0]
    scored = labelled[labelled["fold"] >= 0] if "fold" in labelled else labelled
    return scored, labelled, "pred_label"


def compress_task(
    task_name: str,
    weights: Path,
    extra: dict[str, Any],
    windows: pd.DataFrame,
    signals: Path,
    cfg: CompressConfig,
    seed: int,
    out: Path,
) -> dict[str, Any]:
    """Export, quantise and measure one task's model; writes its files to ``out`` and returns ``compress.json``."""
    record = read_model_file(weights) | {k: v for k, v in extra.items() if k != "filters"}
    meta = model_metadata({**record, "task": task_name}, "eeg", preprocessing_extra=extra.get("filters"))
    scored, train, column = task_windows(windows, task_name)
    scored = _draw(scored, cfg.max_test_samples, seed)
    train = _draw(train, max(cfg.calibration_samples, cfg.prune_samples if cfg.prune else 0), seed + 1)
    data = CompressData(
        x_test=window_array(scored, signals, meta, column),
        y_test=scored[column].to_numpy().astype(np.int64),
        x_train=window_array(train, signals, meta, column),
        y_train=train[column].to_numpy().clip(min=0).astype(np.int64),
    )
    out.mkdir(parents=True, exist_ok=True)
    variants = compress_model(build_model(record), meta, data, cfg, out, seed)
    scored_on = "test recordings" if task_name == "detection" else "cross-validation windows (in-sample)"
    document = {"variants": variants, "metadata": meta, "n_test": int(len(data.y_test)), "scored_on": scored_on}
    (out / "compress.json").write_text(json.dumps(document, indent=2))
    return document


@task(name="compress", cache_policy=NO_CACHE)
def compress_eeg_task(
    *,
    cfg: CompressConfig,
    ctx: RunContext,
    ingest: StageResult,
    label: StageResult,
    evaluate: StageResult,
    train_detection: StageResult | None,
    train_prediction: StageResult | None,
    filters: dict[str, Any],
) -> StageResult:
    """Export, quantise and measure the detection and prediction models that were trained.

    Args:
        cfg: The compress section.
        ctx: The run's context.
        ingest: The ingest stage's record (``signals/``).
        label: The label stage's record (``windows.csv``).
        evaluate: The evaluate stage's record (each task's decision threshold).
        train_detection: The detection model's train record, or None when it was not trained.
        train_prediction: The prediction model's train record, or None.
        filters: The ingest filters the signals went through (``l_freq``, ``h_freq``, ``notch``; handed over by the
            flow from its ingest section): stored in the ONNX metadata so the file describes its preprocessing.
    """
    logger = get_run_logger()
    trains = {"detection": train_detection, "prediction": train_prediction}
    trains = {k: v for k, v in trains.items() if v is not None and not v.error}
    key = stage_key("compress", ingest.key, label.key, evaluate.key, *(t.key for t in trains.values()), cfg, filters)

    def build(out: Path) -> dict:
        evaluation = json.loads((evaluate.dir / "evaluation.json").read_text())
        windows = read_windows(label.dir)
        summary: dict[str, Any] = {}
        for name, train in trains.items():
            result = evaluation.get(name) or {}
            if result.get("threshold") is None:
                continue  # not evaluated (prediction infeasible): nothing is shipped, nothing to compress
            extra = {"threshold": result["threshold"], "filters": filters}
            extra |= {k: result[k] for k in ("sop_s", "sph_s") if k in result}
            signals = ingest.dir / "signals"
            doc = compress_task(name, train.dir / "weights.pt", extra, windows, signals, cfg, ctx.seed, out / name)
            v = doc["variants"]
            summary[name] = {
                "fp32_onnx_max_abs_diff": v["fp32_onnx"]["max_abs_diff"],
                "int8_size_ratio": v["int8_onnx"]["size_bytes"] / v["fp32_onnx"]["size_bytes"],
            }
        return {"tasks": summary}

    result = run_stage(StageCache(ctx.cache_root), "compress", key, build, ctx.refreshes("compress"))
    for name, s in (result.summary.get("tasks") or {}).items():
        parity = s["fp32_onnx_max_abs_diff"] or 0.0
        logger.info("compress %s: int8 file %.2f of fp32, fp32 ONNX parity %.2e", name, s["int8_size_ratio"], parity)
    return result
