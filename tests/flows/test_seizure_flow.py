"""The seizure-prediction flow run for real (Prefect test harness) on simulated and real-header EDF files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import edfio
import numpy as np
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
    for key in ("sensitivity", "fpr_per_h", "time_in_warning", "roc_auc", "p_value", "p_value_surrogate"):
        assert key in pred
    assert 0 <= pred["time_in_warning"] <= 1 and 0 <= pred["p_value"] <= 1
    # issue #12: intervals beside the points, monitored hours, every recording scored (pseudo-prospectively)
    assert len(pred["sensitivity_ci95"]) == 2 and len(pred["fpr_per_h_ci95"]) == 2 and pred["monitored_h"] > 0
    assert pred["n_recordings"] == 6 and 0 < pred["p_value_surrogate"] <= 1
    assert len(metrics["detection"]["event"]["sensitivity_ci95"]) == 2
    assert len(metrics["detection"]["event"]["fp_per_24h_ci95"]) == 2
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
    # the explain stage (issue #13): attribution on a detected seizure window under its trace, and the scalp map
    explain = metrics["explain"]
    assert explain["method"] == "integrated_gradients" and explain["n_windows"] == 1
    assert sum(explain["channel_importance"].values()) == pytest.approx(1.0, abs=1e-3)
    assert explain["scalp_map_skipped"] is None and len(explain["top_channels"]) == 3
    assert "Explanations (attribution)" in html and "alt='scalp map'" in html and "alt='attribution'" in html


def test_infeasible_prediction_is_reported_and_detection_still_runs(prefect_harness, tmp_path, monkeypatch) -> None:
    sets = ["label.sop_s=3000", "label.sph_s=300", "label.interictal_gap_s=3300"]
    state, run_dir = _run(monkeypatch, tmp_path / "vd", sets)
    assert state.is_completed(), state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["prediction"]["feasible"] is False and metrics["prediction"]["reason"]
    assert "sensitivity" in metrics["detection"]["event"]
    assert not (run_dir / "prediction").exists()


def test_chbmit_stubs_do_not_crash_and_say_why(prefect_harness, tmp_path, monkeypatch) -> None:
    """The real chb05 headers hold 2-s stubs: every seizure lies past the data and no file holds a 4-s window, so
    nothing can be learned; the label stage says so, naming label.window_s (ingest keeps any length)."""
    data = tmp_path / "chbmit"
    shutil.copytree(FIXTURES, data)
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={data}", "ingest.min_duration_s=1"])
    assert state.is_failed()
    assert "no recording holds one window of 4 s" in state.message and "label.window_s" in state.message
    assert (pd.read_csv(run_dir / "quarantine.csv")["stage"] == "label").any()
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
    for key in ("tstr_balanced_accuracy", "c2st_accuracy", "c2st_reference", "nn_copy_rate", "nn_copy_rate_raw"):
        assert 0.0 <= syn[key] <= 1.0, key
    assert syn["nn_copy_threshold"] > 0 and syn["nn_copy_threshold_raw"] > 0 and syn["c2st_by_class"]
    assert syn["task"] == "detection" and len(syn["per_seed"]) == 3
    assert "window" in syn["real_only"]["detection"] and "event" in syn["real_only"]["detection"]
    assert syn["gan"]["gan_train_by_class"]["ictal"] > 0
    splits = pd.read_csv(run_dir / "splits.csv")
    assert splits["synthetic"].sum() == syn["n_added"] > 0
    html = (run_dir / "report.html").read_text()
    assert "Synthetic data (GAN)" in html and "Power spectra" in html


def _clips(root: Path, n: int = 12, sfreq: float = 128.0) -> Path:
    """A clip data set: 10-30 s single-channel EDF files, BIDS names, seizures in ``_events.tsv`` sidecars."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        seconds, seizure = (10, 20, 30, 24)[i % 4], i % 2 == 0
        t = np.arange(int(seconds * sfreq)) / sfreq
        x = rng.normal(0, 20, t.size) + seizure * 150 * np.sin(2 * np.pi * 3 * t) * ((t > 2) & (t < seconds - 2))
        signal = edfio.EdfSignal(x, sfreq, label="EEG Fz", physical_dimension="uV", physical_range=(-3000, 3000))
        edfio.Edf([signal], data_record_duration=1.0).write(root / f"sub-01_run-{i:02d}_eeg.edf")
        events = f"2\t{seconds - 4}\tseizure\n" if seizure else ""
        (root / f"sub-01_run-{i:02d}_events.tsv").write_text("onset\tduration\ttrial_type\n" + events)
    return root


def test_clip_data_set_gives_detection_and_a_rejected_one_says_why(prefect_harness, tmp_path, monkeypatch) -> None:
    """Issue #12: 10-30 s clips (ingest keeps any length) train detection; prediction says why it cannot run.
    When every file is left out, the message names the most common reason and its setting, and quarantine.csv
    has one row per file."""
    data = _clips(tmp_path / "clips")
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={data}", "task=detection"])
    assert state.is_completed(), state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n"]["n_recordings"] == 12 and "sensitivity" in metrics["detection"]["event"]
    assert "roc_auc" in metrics["detection"]["window"]
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={data}", "ingest.min_duration_s=60"])
    assert state.is_failed() and "ingest.min_duration_s" in state.message and "12 of 12" in state.message
    quarantine = pd.read_csv(run_dir / "quarantine.csv")
    assert len(quarantine) == 12 and quarantine["reason"].str.contains("shorter than the minimum of 60 s").all()
    assert "ingest.min_duration_s" in (run_dir / "report.html").read_text()
