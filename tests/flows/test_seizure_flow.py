"""The seizure-prediction flow run for real (Prefect test harness) on simulated and real-header EDF files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from flows.config import resolve_config
from flows.seizure_prediction import seizure_prediction
from tasks.ingest.simulate import SimulationSpec, simulate_dataset

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "chbmit"


def _run(monkeypatch: pytest.MonkeyPatch, data_root: Path, sets: list[str]) -> tuple[object, Path | None]:
    monkeypatch.setenv("VIGIL_DATA", str(data_root))
    config = resolve_config("eeg", profile="test", sets=sets)
    state = seizure_prediction(config=config, return_state=True)
    result = state.result(raise_on_failure=False)
    return state, Path(result) if isinstance(result, str) else None


def test_simulated_data_gives_detection_and_prediction_metrics(prefect_harness, tmp_path, monkeypatch) -> None:
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [])
    assert state.is_completed(), state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["flow"] == "seizure-prediction" and metrics["dataset"] == "sim"
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "confusion_matrix"):
        assert key in metrics["detection"]["window"]
    for key in ("sensitivity", "precision", "f1", "fp_per_24h"):
        assert key in metrics["detection"]["event"]
    pred = metrics["prediction"]
    assert pred["feasible"] is True
    for key in ("sensitivity", "fpr_per_h", "time_in_warning", "roc_auc", "p_value"):
        assert key in pred
    assert 0 <= pred["time_in_warning"] <= 1 and 0 <= pred["p_value"] <= 1
    for task in ("detection", "prediction"):
        record = torch.load(run_dir / task / "model.pt", weights_only=True)
        assert {"arch", "kwargs", "state_dict", "threshold", "channels", "sfreq", "window_s"} <= set(record)
    splits = pd.read_csv(run_dir / "splits.csv")
    assert {"sample_id", "patient", "recording", "start_s", "end_s", "seizure_id", "fold", "split"} <= set(splits)
    by_recording = splits.groupby("recording")["split"].nunique()
    assert (by_recording == 1).all()  # no recording in two detection splits
    html = (run_dir / "report.html").read_text()
    assert "Alarm timelines" in html and "data:image/png;base64," in html
    assert not (run_dir / "checkpoints").exists()


def test_infeasible_prediction_is_reported_and_detection_still_runs(prefect_harness, tmp_path, monkeypatch) -> None:
    sets = ["label.sop_s=3000", "label.sph_s=300", "label.interictal_gap_s=3300"]
    state, run_dir = _run(monkeypatch, tmp_path / "vd", sets)
    assert state.is_completed(), state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["prediction"]["feasible"] is False and metrics["prediction"]["reason"]
    assert "sensitivity" in metrics["detection"]["event"]
    assert not (run_dir / "prediction").exists()


def test_chbmit_stubs_do_not_crash_and_say_why(prefect_harness, tmp_path, monkeypatch) -> None:
    """The real chb05 headers hold 2-s stubs: every seizure lies past the data, so nothing can be learned."""
    data = tmp_path / "chbmit"
    shutil.copytree(FIXTURES, data)
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={data}", "ingest.min_duration_s=1"])
    assert state.is_failed()
    assert "no seizure is annotated" in state.message
    log = (run_dir / "run.log").read_text()
    assert "past" in log or "beyond" in log or "after the end" in log
    assert json.loads((run_dir / "metrics.json").read_text())["error"]


def test_a_run_that_fails_in_ingest_is_filed_under_its_data_folder(prefect_harness, tmp_path, monkeypatch) -> None:
    """The failed ingest record still carries the data root, so the report names the data set, not ``data``."""
    data = tmp_path / "no_edf_here"
    data.mkdir()
    (data / "notes.txt").write_text("not an EDF file\n")
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={data}"])
    assert state.is_failed() and str(data) in state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"].startswith("no-edf-here-") and metrics["error"]


def test_bad_edf_is_quarantined_and_the_rest_used(prefect_harness, tmp_path, monkeypatch) -> None:
    data = tmp_path / "edf"
    simulate_dataset(
        data,
        SimulationSpec(
            n_patients=1,
            recordings_per_patient=3,
            recording_s=600,
            seizures_per_patient=2,
            preictal_s=150,
            sfreq=128,
            seed=3,
        ),
    )
    victim = sorted(data.rglob("*.edf"))[-1]
    good = victim.read_bytes()
    (victim.parent / "chb01_99.edf").write_bytes(good[: len(good) // 3])  # truncated, not in the summary
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={data}", "task=detection"])
    assert state.is_completed(), state.message
    quarantine = pd.read_csv(run_dir / "quarantine.csv")
    assert quarantine["path"].str.contains("chb01_99.edf").any()
    assert json.loads((run_dir / "metrics.json").read_text())["n"]["n_recordings"] == 3


@pytest.mark.slow
def test_synth_on_measures_usefulness_for_detection(prefect_harness, tmp_path, monkeypatch) -> None:
    state, run_dir = _run(monkeypatch, tmp_path / "vd", ["synth.enabled=true"])
    assert state.is_completed(), state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    syn = metrics["synthetic"]
    for key in ("tstr_balanced_accuracy", "c2st_accuracy", "nn_copy_rate"):
        assert 0.0 <= syn[key] <= 1.0, key
    assert syn["task"] == "detection" and len(syn["per_seed"]) == 3
    assert "window" in syn["real_only"]["detection"] and "event" in syn["real_only"]["detection"]
    assert syn["gan"]["gan_train_by_class"]["ictal"] > 0
    splits = pd.read_csv(run_dir / "splits.csv")
    assert splits["synthetic"].sum() == syn["n_added"] > 0
    html = (run_dir / "report.html").read_text()
    assert "Synthetic data (GAN)" in html and "Power spectra" in html
