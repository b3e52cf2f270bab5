"""Several candidate models in one defect run: each scored on val and test, the primary one chosen on validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_part_folder

from flows.config import resolve_config
from flows.defect_detection import defect_detection
from tasks.image_classifier import load_model


def _run(monkeypatch: pytest.MonkeyPatch, data_root: Path, sets: list[str]) -> tuple[object, Path]:
    monkeypatch.setenv("VIGIL_DATA", str(data_root))
    state = defect_detection(config=resolve_config("defect", profile="test", sets=sets), return_state=True)
    return state, Path(state.result(raise_on_failure=False))


def test_candidates_are_scored_and_the_primary_is_chosen_on_validation(prefect_harness, tmp_path, monkeypatch) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=20)
    sets = [
        f"ingest.path={root}",
        "train.candidates=[resnet_tiny,squeezenet_tiny]",
        "train.epochs=2",
        "train.candidate_overrides.squeezenet_tiny.epochs=3",
    ]
    state, run_dir = _run(monkeypatch, tmp_path / "vd", sets)
    assert state.is_completed(), state.message
    m = json.loads((run_dir / "metrics.json").read_text())
    assert set(m["models"]) == {"resnet_tiny", "squeezenet_tiny"}
    sel = m["selection"]
    assert sel["metric"] == "balanced_accuracy" and sel["split"] == "val"
    vals = {name: s["val"]["balanced_accuracy"] for name, s in m["models"].items()}
    assert sel["value"] == max(vals.values())
    assert sel["model"] == next(n for n in ("resnet_tiny", "squeezenet_tiny") if vals[n] == max(vals.values()))
    assert m["test"] == m["models"][sel["model"]]["test"]  # top-level test.* is the chosen candidate
    low, high = m["test"]["accuracy_ci95"]
    assert low <= m["test"]["accuracy"] <= high
    assert "val" in m["baseline"]
    model = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    assert model["arch"] == sel["model"]
    html = (run_dir / "report.html").read_text()
    assert "Candidates" in html and "(chosen)" in html
    # the fit facts and learning curves are the chosen candidate's, not the first listed one's
    assert m["train"]["model"] == sel["model"]
    assert m["train"]["epochs_run"] == {"resnet_tiny": 2, "squeezenet_tiny": 3}[sel["model"]]
    shipped, _ = load_model(run_dir / "model.pt")
    assert m["train"]["n_parameters"] == sum(p.numel() for p in shipped.parameters())
    assert f"{sel['model']} ({m['train']['n_parameters']:,} parameters)" in html


def test_report_says_when_the_baseline_beats_the_chosen_model(prefect_harness, tmp_path, monkeypatch) -> None:
    """A network that cannot learn (learning rate 1e-7) against HOG/LBP features that see the crack at once."""
    root = write_part_folder(tmp_path / "parts", n_per_class=20)
    sets = [f"ingest.path={root}", "train.lr=1e-7", "train.epochs=1"]
    state, run_dir = _run(monkeypatch, tmp_path / "vd", sets)
    assert state.is_completed(), state.message
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["baseline"]["val"]["balanced_accuracy"] > m["selection"]["value"]
    assert m["baseline_note"].startswith("The HOG/LBP + SVM baseline beat the chosen model resnet_tiny on validation")
    html = (run_dir / "report.html").read_text()
    assert html.index("The baseline beat the chosen model") < html.index("Candidates")


def test_init_from_a_previous_run_and_a_misfit_refused_before_training(prefect_harness, tmp_path, monkeypatch) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=16)
    state, first = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}"])
    assert state.is_completed(), state.message
    state, second = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}", f"train.init_from={first / 'model.pt'}"])
    assert state.is_completed(), state.message
    model = torch.load(second / "model.pt", map_location="cpu", weights_only=True)
    assert model["init_from"] == str(first / "model.pt") and model["pretrained"] is None
    wrong = tmp_path / "three_classes.pth"
    from models.registry import create_model

    torch.save(create_model("resnet_tiny", in_chans=1, num_classes=3).state_dict(), wrong)
    state, third = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}", f"train.init_from={wrong}"])
    assert state.is_failed() and "does not fit" in state.message and "head.fc.weight" in state.message
    assert "Traceback" not in state.message
    assert not (third / "model.pt").exists()


def test_multiclass_uses_the_same_candidates(prefect_harness, tmp_path, monkeypatch) -> None:
    """ELPV's four grades (test profile subset) with a from-scratch net and frozen Lite0 features + regression."""
    sets = ["label.mode=multiclass", "train.candidates=[resnet_tiny,efficientnet_lite0+svm]", "ingest.limit=200"]
    state, run_dir = _run(monkeypatch, tmp_path / "vd", sets)
    assert state.is_completed(), state.message
    m = json.loads((run_dir / "metrics.json").read_text())
    assert len(m["class_names"]) == 4 and set(m["models"]) == {"resnet_tiny", "efficientnet_lite0+svm"}
    assert m["selection"]["model"] in m["models"] and m["test"] == m["models"][m["selection"]["model"]]["test"]
    low, high = m["test"]["balanced_accuracy_ci95"]
    assert low <= m["test"]["balanced_accuracy"] <= high
