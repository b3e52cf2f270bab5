"""``vigil runs --compare``: two runs' config and metric differences, named by folder or run name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main


def _run(root: Path, name: str, epochs: int, accuracy: float) -> Path:
    d = root / "runs" / "defect-detection" / f"20261130T1200{epochs:02d}Z-{name}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"profile: test\nseed: 0\ntrain:\n  epochs: {epochs}\n  lr: 0.003\n")
    metrics = {"flow": "defect-detection", "test": {"accuracy": accuracy, "f1": 0.5}, "timing_s": {"total": epochs}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def test_compare_prints_config_and_metric_differences(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VIGIL_DATA", str(tmp_path))
    a = _run(tmp_path, "short", 2, 0.75)
    _run(tmp_path, "long", 9, 0.8)
    assert main(["runs", "--compare", str(a), "long"]) == 0
    out = capsys.readouterr().out
    assert "config differences (1):\n  train.epochs: 2 -> 9" in out
    assert "metric differences (1; B - A):\n  test.accuracy: 0.7500 -> 0.8000 +0.0500" in out
    assert "timing_s" not in out and "test.f1" not in out


def test_compare_names_a_run_it_cannot_find(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VIGIL_DATA", str(tmp_path))
    _run(tmp_path, "short", 2, 0.75)
    assert main(["runs", "--compare", "short", "pronghorn"]) == 2
    assert "pronghorn: neither a run folder nor the name of a run under" in capsys.readouterr().err


@pytest.mark.parametrize("ref", ["mahogany-pronghorn"])
def test_compare_matches_whole_run_names(tmp_path, monkeypatch, capsys, ref) -> None:
    monkeypatch.setenv("VIGIL_DATA", str(tmp_path))
    _run(tmp_path, ref, 3, 0.7)
    assert main(["runs", "--compare", ref, "pronghorn"]) == 2
