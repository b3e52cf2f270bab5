"""The label stage for EEG: windows with detection labels and a recording split, plus prediction labels and folds.

The labelling rules are pure functions of the ingest stage's two tables (:mod:`tasks.label.windows` for windows
and labels, :mod:`tasks.label.splits` for the split and the folds); this module runs them in order and writes
``windows.csv``, ``leading.csv`` and ``quarantine.csv`` (the recordings shorter than one window, which ingest keeps
so clip data sets work). The record's summary carries the window geometry (``sfreq``, ``window_s``, ``step_s``,
``window_samples``) and the prediction settings (``prediction.sop_s``, ``prediction.sph_s``), so later stages read
them from here rather than from the ``label`` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import EegLabelConfig
from tasks.eeg_windows import INTERICTAL, PREICTAL, SPLITS
from tasks.label.splits import detection_splits, prediction_folds
from tasks.label.windows import (
    label_prediction,
    leading_seizures,
    make_windows,
    prediction_feasibility,
    too_short_for_a_window,
)
from tasks.quarantine import QUARANTINE_COLUMNS, rejection_summary
from tasks.rundir import RunContext


def label_windows(
    recordings: pd.DataFrame, seizures: pd.DataFrame, sfreq: float, cfg: EegLabelConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, bool, str]:
    """Cut, label and split the windows of the ingest stage's tables.

    Args:
        recordings: ``recordings.csv``.
        seizures: ``seizures.csv``.
        sfreq: Sampling rate of the stored signals in Hz.
        cfg: The label section.
        seed: Seed of the detection split.

    Returns:
        The windows (detection labels and ``split``; prediction labels; ``fold`` when prediction is feasible), the
        :func:`tasks.label.windows.leading_seizures` table, and whether prediction is feasible with the reason if
        not.

    Raises:
        ValueError: From the labelling functions, on tables or settings they cannot use.
    """
    windows = make_windows(recordings, seizures, sfreq, cfg.window_s, cfg.step_s)
    windows = detection_splits(windows, recordings, cfg.test_fraction, cfg.val_fraction, seed)
    windows = label_prediction(
        windows, recordings, seizures, cfg.sop_s, cfg.sph_s, cfg.interictal_gap_s, cfg.postictal_s
    )
    feasible, reason = prediction_feasibility(windows, recordings, seizures, cfg.sop_s, cfg.sph_s)
    leading = leading_seizures(recordings, seizures, cfg.sop_s, cfg.sph_s)
    if feasible:
        windows = prediction_folds(windows, cfg.scheme)
    return windows, leading, feasible, reason


def _summary(
    windows: pd.DataFrame, leading: pd.DataFrame, feasible: bool, reason: str, sfreq: float, cfg: EegLabelConfig
) -> dict[str, Any]:
    """The record's summary: counts per split, and what later stages need to know of the windows."""
    summary: dict[str, Any] = {
        "sfreq": sfreq,
        "window_s": cfg.window_s,
        "step_s": cfg.step_s,
        "window_samples": int(round(cfg.window_s * sfreq)),
        "n_windows": len(windows),
        "n_ictal": int(windows["ictal"].sum()),
        "detection_split": {
            part: {
                "windows": int((windows["split"] == part).sum()),
                "ictal": int(windows.loc[windows["split"] == part, "ictal"].sum()),
                "recordings": int(windows.loc[windows["split"] == part, "recording_id"].nunique()),
            }
            for part in SPLITS
        },
        "prediction": {
            "feasible": bool(feasible),
            "reason": reason,
            "sop_s": cfg.sop_s,
            "sph_s": cfg.sph_s,
            "postictal_s": cfg.postictal_s,  # the evaluation excludes it from false alarms
        },
    }
    if feasible:
        folds = sorted(int(f) for f in windows["fold"].unique() if f >= 0)
        summary["prediction"].update(
            n_folds=len(folds),
            n_preictal=int((windows["pred_label"] == PREICTAL).sum()),
            n_interictal=int((windows["pred_label"] == INTERICTAL).sum()),
            n_leading=int(leading["qualifies"].sum()) if "qualifies" in leading else None,
        )
    return summary


def _log(logger: Any, summary: dict[str, Any]) -> None:
    logger.info(
        "label: %d windows (%d ictal); detection split %s",
        summary["n_windows"],
        summary["n_ictal"],
        summary["detection_split"],
    )
    p = summary["prediction"]
    if p["feasible"]:
        logger.info(
            "label: prediction with SOP %.0f s, SPH %.0f s: %d folds, %d preictal, %d interictal windows",
            p["sop_s"],
            p["sph_s"],
            p["n_folds"],
            p["n_preictal"],
            p["n_interictal"],
        )
    else:
        logger.warning("label: prediction is not feasible: %s", p["reason"])


@task(name="label", cache_policy=NO_CACHE)
def label_eeg_task(*, cfg: EegLabelConfig, ctx: RunContext, ingest: StageResult) -> StageResult:
    """Windows with detection labels and a recording split, plus prediction labels and folds when feasible."""
    key = stage_key("label", ingest.key, cfg, ctx.seed)

    def build(out: Path) -> dict:
        recordings = pd.read_csv(ingest.dir / "recordings.csv", dtype={"recording_id": str, "patient": str})
        seizures = pd.read_csv(ingest.dir / "seizures.csv", dtype={"recording_id": str, "patient": str})
        sfreq = float(ingest.summary["sfreq"])
        recordings, short = too_short_for_a_window(recordings, sfreq, cfg.window_s)
        seizures = seizures[seizures["recording_id"].isin(recordings["recording_id"])].reset_index(drop=True)
        pd.DataFrame(short, columns=list(QUARANTINE_COLUMNS)).to_csv(out / "quarantine.csv", index=False)
        if recordings.empty:  # kept as a (failed) entry, so quarantine.csv still lists every recording and why
            what = f"no recording holds one window of {cfg.window_s:g} s"
            return {"n_quarantined": len(short), "error": rejection_summary(what, short)}
        if seizures.empty:
            raise StageError(
                "no seizure is annotated in the accepted recordings (CHB-MIT summary, EDF+ annotations or "
                "<stem>_events.tsv); detection and prediction both need seizures"
            )
        try:
            windows, leading, feasible, reason = label_windows(recordings, seizures, sfreq, cfg, ctx.seed)
        except ValueError as exc:
            raise StageError(f"labelling failed: {exc}") from exc
        windows.to_csv(out / "windows.csv", index=False)
        leading.to_csv(out / "leading.csv", index=False)
        return _summary(windows, leading, feasible, reason, sfreq, cfg) | {"n_quarantined": len(short)}

    result = run_stage(StageCache(ctx.cache_root), "label", key, build, ctx.refreshes("label"))
    if result.summary.get("error"):  # every recording was too short: the record keeps its path to quarantine.csv
        return result.model_copy(update={"error": result.summary["error"]})
    if result.error is None:
        _log(get_run_logger(), result.summary)
    return result
