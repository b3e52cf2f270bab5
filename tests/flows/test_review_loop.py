"""The auto-labelling loop on the test profile: train -> compress -> vigil predict --review -> a person edits the
manifest -> train on it; rows still marked needs_review=true are left out and listed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_part_folder

from flows.cli import main
from flows.config import resolve_config
from flows.defect_detection import defect_detection


def _run(data: Path, monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    monkeypatch.setenv("VIGIL_DATA", str(root))
    config = resolve_config("defect", profile="test", sets=[f"ingest.path={data}", "evaluate.baseline=false"])
    state = defect_detection(config=config, return_state=True)
    assert state.is_completed(), state.message
    return Path(state.result())


@pytest.mark.slow
def test_predict_review_edit_and_train_on_the_manifest(prefect_harness, tmp_path, monkeypatch, capsys) -> None:
    run_dir = _run(write_part_folder(tmp_path / "parts", n_per_class=16), monkeypatch, tmp_path / "vd")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["compress"]) == {"fp32_torch", "fp32_onnx", "int8_onnx"}
    assert metrics["compress"]["fp32_onnx"]["max_abs_diff"] <= 1e-4
    assert (run_dir / "model.onnx").is_file() and (run_dir / "model.int8.onnx").is_file()

    new = write_part_folder(tmp_path / "new", n_per_class=10, seed=1)
    review = tmp_path / "review"
    assert main(["predict", "defect", str(new), "--run", str(run_dir), "--out", str(review), "--review"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(review / "predictions.csv")
    manifest = pd.read_csv(review / "manifest.csv", dtype=str)
    assert list(manifest.columns) == ["path", "label", "probability", "needs_review"] and len(manifest) == 20

    # the reviewer: true labels from the folder names, every row checked but the most uncertain one
    manifest["label"] = [Path(p).parent.name for p in manifest["path"]]
    manifest["needs_review"] = ["true"] + ["false"] * (len(manifest) - 1)
    manifest.to_csv(review / "manifest.csv", index=False)
    retrained = _run(review / "manifest.csv", monkeypatch, tmp_path / "vd")
    metrics = json.loads((retrained / "metrics.json").read_text())
    assert metrics["n"]["train"] + metrics["n"]["val"] + metrics["n"]["test"] == 19
    quarantine = pd.read_csv(retrained / "quarantine.csv")
    assert quarantine["reason"].str.startswith("needs_review=true").sum() == 1
    assert "needs_review=true" in (retrained / "report.html").read_text()
