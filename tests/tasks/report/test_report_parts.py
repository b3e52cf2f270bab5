"""The report's parts: plots without pyplot, the metrics.json shape of the GAN facts, and the data set's identity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.cache import StageResult
from tasks.report.common import dataset_slug, ingest_source, run_metrics
from tasks.report.eeg_plots import plot_alarm_timelines, plot_rocs
from tasks.report.plots import plot_confusion, plot_gain, plot_learning_curves
from tasks.report.synthetic import synthetic_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def _record(stage: str, path: str = "", summary: dict | None = None, error: str | None = None) -> StageResult:
    summary = summary or {}
    return StageResult(stage=stage, key="k", path=path, cached=False, seconds=1.23456, summary=summary, error=error)


@pytest.mark.slow  # a fresh interpreter importing torch and prefect
def test_importing_the_reports_chooses_no_backend_and_loads_no_pyplot() -> None:
    code = (
        "import sys, matplotlib, tasks.report.images, tasks.report.eeg; "
        "print('matplotlib.pyplot' in sys.modules, matplotlib.rcParams._get_backend_or_none())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "None"]


def test_plots_render_pngs() -> None:
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5, "val_balanced_accuracy": 0.5}
        for e in (1, 2)
    ]
    assert plot_learning_curves(history).startswith(PNG)
    assert plot_confusion([[3, 1], [0, 2]], ["good", "crack"], "network").startswith(PNG)
    assert plot_gain([{"seed": 0, "real_only": 0.7, "real_plus_synthetic": 0.8}]).startswith(PNG)
    y, s = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.4, 0.6])
    assert plot_rocs({"detection": (y, s), "one class": (np.zeros(4), s)}).startswith(PNG)
    assert plot_rocs({"one class": (np.zeros(4), s)}) is None
    oof = pd.DataFrame(
        {
            "patient": ["p1"] * 4,
            "recording_id": ["r1"] * 4,
            "timeline": ["p1"] * 4,
            "t_start_s": [0.0, 4.0, 8.0, 12.0],
            "t_end_s": [4.0, 8.0, 12.0, 16.0],
            "score": s,
            "smoothed": [np.nan, 0.3, 0.5, 0.8],
            "alarm": [False, False, True, False],
            "pred_label": y,
            "threshold": 0.5,
            "lead_seizure_id": ["s1"] * 4,
        }
    )
    leading = pd.DataFrame({"seizure_id": ["s1"], "timeline": ["p1"], "t_onset_s": [20.0]})
    (timeline,) = plot_alarm_timelines(oof, leading, sph_s=2.0, sop_s=10.0)  # one per test recording
    assert timeline.startswith(PNG)
    two = pd.concat([oof, oof.assign(recording_id="r2", t_start_s=oof["t_start_s"] + 20, t_end_s=oof["t_end_s"] + 20)])
    assert len(plot_alarm_timelines(two, leading, sph_s=2.0, sop_s=10.0)) == 2


def test_synthetic_gan_section_keeps_its_shape_whatever_the_record_carries(tmp_path: Path) -> None:
    (tmp_path / "synthetic.json").write_text(json.dumps({"gain_mean": 0.01}))
    summary = {
        "model": "gan_eeg_tiny",
        "n_generated": 36,
        "final_losses": {"d_loss": 1.0},  # record-only facts the train stage or logs use
        "ratio": 0.5,
        "classes": "minority",
        "synthetic_weight": 1.0,
        "seconds": 2.0,
    }
    metrics = synthetic_metrics(_record("synth-usefulness", str(tmp_path)), _record("synth", summary=summary))
    assert metrics == {"gain_mean": 0.01, "gan": {"model": "gan_eeg_tiny", "n_generated": 36, "seconds": 2.0}}
    failed = _record("synth", error="GAN broke")
    assert "gan" not in synthetic_metrics(_record("synth-usefulness", str(tmp_path)), failed)


def test_the_data_set_comes_from_the_ingest_record_even_when_ingest_failed(tmp_path: Path) -> None:
    ok = _record("ingest", summary={"source": "folder", "root": str(tmp_path)})
    assert ingest_source(ok, "data") == ("folder", str(tmp_path))
    failed = _record("ingest", summary={"source": "folder", "root": str(tmp_path)}, error="no images")
    assert ingest_source(failed, "data") == ("data", str(tmp_path))  # filed under its data, source unknown
    assert ingest_source(None, "edf") == ("edf", None)
    assert dataset_slug("sim", None) == "sim"
    assert dataset_slug("data", str(tmp_path)).startswith(tmp_path.name.lower().replace("_", "-"))


def test_run_metrics_opens_with_the_run_and_times_stages_in_run_order() -> None:
    stages = {"ingest": _record("ingest"), "label": None, "train": _record("train")}
    metrics = run_metrics("seizure-prediction", "sim", stages, 9.87654, profile="test", seed=0, task="both")
    assert list(metrics) == ["flow", "dataset", "profile", "seed", "task", "vigil_version", "timing_s", "cached"]
    assert metrics["timing_s"] == {"ingest": 1.235, "train": 1.235, "total": 9.877}
    assert metrics["cached"] == {"ingest": False, "train": False}
