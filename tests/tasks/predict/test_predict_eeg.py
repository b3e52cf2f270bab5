"""vigil predict on EDF files: windows and events, refusals that name the difference, the review folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_records import eeg_record, write_edf

from tasks.ingest.preprocess import preprocess_recording
from tasks.predict.batch import predict_eeg
from tasks.predict.eeg import events_of
from tasks.predict.model import PredictInputError


def _run_dir(root: Path) -> Path:
    (root / "detection").mkdir(parents=True)
    torch.save(eeg_record(), root / "detection" / "model.pt")  # no ONNX: model.pt is used
    return root


def _edf(path: Path, names: str | list[str], sfreq: float, seconds: float = 20.0) -> Path:
    rng = np.random.default_rng(0)
    names = [names] if isinstance(names, str) else names
    return write_edf(path, {n: rng.normal(0.0, 20.0, int(seconds * sfreq)) for n in names}, sfreq)


def test_windows_events_and_review_folder_of_an_edf_resampled_to_the_model_rate(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "run")
    data = tmp_path / "new"
    edf = _edf(data / "p1" / "rec.edf", ["C3", "C4", "Fz"], 128.0)  # extra channel ignored, 128 Hz -> 64 Hz
    result = predict_eeg(data, run, preprocess_recording, tmp_path / "review", review=True)
    windows = pd.read_csv(result.csv)
    assert len(windows) == 10 and list(windows["start_s"][:2]) == [0.0, 2.0]
    assert set(windows.columns) >= {"file", "start_s", "end_s", "probability", "label", "threshold"}
    assert (tmp_path / "review" / "predictions_events.csv").is_file()
    link = tmp_path / "review" / "p1" / "rec.edf"
    assert link.is_symlink() and link.resolve() == edf.resolve()
    sidecar = pd.read_csv(tmp_path / "review" / "p1" / "rec_events.tsv", sep="\t")
    assert list(sidecar.columns) == ["onset", "duration", "trial_type", "probability"]
    assert "resampled from 128 Hz to 64 Hz" in (tmp_path / "review" / "predictions.report.md").read_text()


def test_a_wrong_channel_or_too_low_rate_edf_is_refused_naming_the_difference(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "run")
    wrong = _edf(tmp_path / "wrong.edf", ["C3", "Pz"], 64.0)
    with pytest.raises(PredictInputError, match=r"channel\(s\) C4 missing; the model expects 2 channels \(C3, C4\)"):
        predict_eeg(wrong, run, preprocess_recording, tmp_path / "w.csv")
    slow = _edf(tmp_path / "slow.edf", ["C3", "C4"], 32.0)
    with pytest.raises(PredictInputError, match="sampled at 32 Hz, below the model's 64 Hz"):
        predict_eeg(slow, run, preprocess_recording, tmp_path / "s.csv")


def test_consecutive_positive_windows_make_one_event() -> None:
    w = pd.DataFrame({"file": "f", "start_s": [0.0, 2.0, 4.0, 6.0, 8.0], "end_s": [2.0, 4.0, 6.0, 8.0, 10.0],
                      "probability": [0.9, 0.7, 0.1, 0.8, 0.2]})  # fmt: skip
    events = events_of(w, 0.5)
    assert events[["onset_s", "offset_s", "duration_s"]].to_numpy().tolist() == [[0, 4, 4], [6, 8, 2]]
    assert events["probability"].tolist() == [0.9, 0.8]
