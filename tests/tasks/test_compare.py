"""Regression comparison: the tolerance rule, direction, missing values, and finding the previous run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tasks.compare import (
    LOWER_IS_BETTER,
    compare,
    comparison_markdown,
    comparison_rows,
    headline,
    metrics_from_table,
    previous_run,
    regression_check,
    table_rows,
)


def _defect(acc: float, **extra: float | None) -> dict:
    return {
        "flow": "defect-detection",
        "dataset": "elpv",
        "profile": "quick",
        "test": {"accuracy": acc, "balanced_accuracy": 0.8, "roc_auc": 0.9, "f1": 0.7, **extra},
    }


def _eeg(fp_per_24h: float, p_value: float = 0.01, fpr_per_h: float = 0.2) -> dict:
    return {
        "flow": "seizure-prediction",
        "dataset": "sim",
        "detection": {
            "event": {"sensitivity": 0.8, "f1": 0.6, "fp_per_24h": fp_per_24h},
            "window": {"roc_auc": 0.95},
        },
        "prediction": {
            "feasible": True,
            "sensitivity": 0.5,
            "roc_auc": 0.7,
            "fpr_per_h": fpr_per_h,
            "p_value": p_value,
        },
    }


def _row(c, name: str):
    return next(r for r in c.rows if r.name == name)


def test_headline_picks_known_metrics_from_nested_or_flat() -> None:
    h = headline(_defect(0.9, precision=0.5))
    assert h == {"test.accuracy": 0.9, "test.balanced_accuracy": 0.8, "test.roc_auc": 0.9, "test.f1": 0.7}
    assert headline({"test.accuracy": 0.5, "test.f1": None}) == {"test.accuracy": 0.5}
    assert set(headline(_eeg(1.0))) >= {"detection.event.fp_per_24h", "prediction.p_value"}
    assert LOWER_IS_BETTER == {"detection.event.fp_per_24h", "prediction.fpr_per_h", "prediction.p_value"}


def test_drop_beyond_tolerance_is_a_regression_and_within_is_not() -> None:
    c = compare(_defect(0.869), _defect(0.900), tolerance=0.02, previous_label="20250101T000000Z-a")
    row = _row(c, "test.accuracy")
    assert row.worse and row.delta == pytest.approx(-0.031)
    assert c.regressed and c.flag() == "REGRESSION: test.accuracy -0.031 vs 20250101T000000Z-a"
    assert not _row(c, "test.f1").worse  # unchanged
    ok = compare(_defect(0.885), _defect(0.900), tolerance=0.02)
    assert not ok.regressed and ok.flag() == ""
    exact = compare(_defect(0.88), _defect(0.90), tolerance=0.02)  # exactly the tolerance: still noise
    assert not exact.regressed
    assert compare(_defect(0.95), _defect(0.90), tolerance=0.02).rows[0].better


def test_missing_none_and_nan_are_shown_but_never_flagged() -> None:
    current = _defect(0.5, roc_auc=math.nan, f1=None)
    previous = {"test": {"accuracy": 0.9, "roc_auc": 0.9, "f1": 0.9}}
    c = compare(current, previous, tolerance=0.02)
    assert _row(c, "test.accuracy").worse
    for name in ("test.roc_auc", "test.f1"):
        row = _row(c, name)
        assert row.current is None and row.delta is None and not row.worse
    new = _row(c, "test.balanced_accuracy")
    assert new.previous is None and not new.worse
    verdicts = {r["metric"]: r["verdict"] for r in comparison_rows(c)}
    assert verdicts["test.balanced_accuracy"] == "new" and verdicts["test.f1"] == "missing"
    assert compare({}, {}, 0.02).rows == ()


def test_lower_is_better_metrics_regress_when_they_rise() -> None:
    # fp/24h is a rate: relative tolerance 25 % of the previous value (floor 1.0 per day)
    assert not compare(_eeg(2.4), _eeg(2.0), 0.02).regressed  # +20 %
    worse = compare(_eeg(2.6), _eeg(2.0), 0.02)  # +30 %
    assert worse.regressions[0].name == "detection.event.fp_per_24h"
    assert "+0.600 (+30%)" in worse.flag()
    assert not compare(_eeg(0.2), _eeg(0.0), 0.02).regressed  # floor: 0 -> 0.2 per day is noise
    assert not compare(_eeg(1.0), _eeg(5.0), 0.02).regressed  # fewer false alarms is better, not worse
    assert compare(_eeg(1.0), _eeg(5.0), 0.02).rows[3].better
    # p-value is a probability: absolute tolerance, and a rise is worse
    assert [r.name for r in compare(_eeg(1.0, p_value=0.05), _eeg(1.0), 0.02).regressions] == ["prediction.p_value"]
    assert not compare(_eeg(1.0, p_value=0.001), _eeg(1.0, p_value=0.02), 0.02).regressed
    assert [r.name for r in compare(_eeg(1.0, fpr_per_h=0.3), _eeg(1.0), 0.02).regressions] == ["prediction.fpr_per_h"]


def test_report_texts() -> None:
    c = compare(_defect(0.8), _defect(0.9), 0.02, previous_label="prev")
    md = comparison_markdown(c)
    assert "| test.accuracy | higher | 0.9000 | 0.8000 | -0.100 | REGRESSION |" in md
    assert "REGRESSION: test.accuracy -0.100 vs prev" in md
    d = c.to_dict()
    assert d["regressed"] and d["regressions"] == ["test.accuracy"] and d["previous_run"] == "prev"
    json.dumps(d)  # goes into metrics.json
    with pytest.raises(ValueError, match="tolerance"):
        compare(_defect(0.8), _defect(0.9), -0.1)


def _run(root: Path, flow: str, name: str, metrics: dict | None) -> Path:
    d = root / "runs" / flow / name
    d.mkdir(parents=True)
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def test_previous_run_same_flow_and_dataset_earlier_not_failed(tmp_path: Path) -> None:
    flow = "defect-detection"
    good = _run(tmp_path, flow, "20250101T000000Z-good", _defect(0.9))
    _run(tmp_path, flow, "20250102T000000Z-failed", {**_defect(0.1), "error": "boom"})
    _run(tmp_path, flow, "20250103T000000Z-other-data", {**_defect(0.9), "dataset": "parts-abc123"})
    _run(tmp_path, flow, "20250104T000000Z-killed", None)
    _run(tmp_path, flow, "20250104T120000Z-quick", {**_defect(0.9), "profile": "test"})
    _run(tmp_path, "seizure-prediction", "20250105T000000Z-eeg", {**_defect(0.9), "flow": "seizure-prediction"})
    current = _run(tmp_path, flow, "20250106T000000Z-now", None)
    _run(tmp_path, flow, "20250107T000000Z-later", _defect(0.9))
    (tmp_path / "runs" / flow / "notes").mkdir()
    runs_root = tmp_path / "runs"
    assert previous_run(runs_root, flow, "elpv", current, profile="quick") == good
    assert previous_run(runs_root, flow, "elpv", current).name == "20250104T120000Z-quick"
    assert previous_run(runs_root, flow, "elpv", good) is None
    assert previous_run(runs_root, flow, "sim", current) is None
    assert previous_run(runs_root, "nope", "elpv", current) is None

    c = regression_check(_defect(0.85), current, 0.02)
    assert c is not None and c.previous_label == "20250101T000000Z-good" and c.regressed
    assert regression_check({**_defect(0.1), "error": "x"}, current, 0.02) is None


def test_table_artifact_rows_parse_back_to_metrics() -> None:
    defect = [
        {"metric": "accuracy", "model": "0.9000", "baseline": "0.8000"},
        {"metric": "roc_auc", "model": "n/a", "baseline": "n/a"},
        {"metric": "threshold", "model": "0.5", "baseline": "n/a"},
    ]
    assert metrics_from_table(table_rows(json.dumps(defect))) == {"test": {"accuracy": 0.9}}
    eeg = [
        {"task": "detection", "metric": "false positives / 24 h", "value": "2.50"},
        {"task": "prediction", "metric": "p-value vs random predictor", "value": "0.0100"},
        {"task": "prediction", "metric": "SOP / SPH (s)", "value": "600 / 60"},
    ]
    assert headline(metrics_from_table(eeg)) == {"detection.event.fp_per_24h": 2.5, "prediction.p_value": 0.01}
    assert table_rows({"metric": ["test.f1"], "value": [0.5]}) == [{"metric": "test.f1", "value": 0.5}]
