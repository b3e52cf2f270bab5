"""The defect-detection flow run for real under a Prefect test harness, on real PNG files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import add_bad_files, write_part_folder

from flows.config import resolve_config
from flows.defect_detection import defect_detection
from tasks.image_classifier import load_model

RUN_FILES = (
    "metrics.json",
    "report.html",
    "config.yaml",
    "lineage.json",
    "model.pt",
    "splits.csv",
    "quarantine.csv",
    "augment.json",
    "run.log",
)


def _run(monkeypatch: pytest.MonkeyPatch, data_root: Path, sets: list[str], **kw) -> tuple[object, Path | None]:
    monkeypatch.setenv("VIGIL_DATA", str(data_root))
    config = resolve_config("defect", profile="test", sets=sets)
    state = defect_detection(config=config, return_state=True, **kw)
    result = state.result(raise_on_failure=False)
    return state, Path(result) if isinstance(result, str) else None


def test_folder_with_bad_files_still_gives_a_model(prefect_harness, tmp_path, monkeypatch) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=30)
    bad = add_bad_files(root / "crack")
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}", "train.epochs=3"])
    assert state.is_completed(), state.message
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoints").exists()
    quarantine = pd.read_csv(run_dir / "quarantine.csv")
    reasons = dict(zip(quarantine["path"], quarantine["reason"], strict=True))
    assert "truncated PNG" in reasons[str(bad["truncated"])]
    assert "empty file" in reasons[str(bad["empty"])]
    assert "not an image" in reasons[str(bad["text"])]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["flow"] == "defect-detection" and metrics["profile"] == "test"
    assert metrics["n"]["quarantined"] == 3
    assert metrics["n"]["train"] + metrics["n"]["val"] + metrics["n"]["test"] == 60
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"):
        assert key in metrics["test"] and key in metrics["baseline"]
    assert 0.0 <= metrics["test"]["threshold"] <= 1.0
    assert set(metrics["timing_s"]) >= {"ingest", "quality", "label", "augment", "train", "evaluate", "total"}
    model, meta = load_model(run_dir / "model.pt")
    assert meta["class_names"] == ["good", "crack"] and meta["threshold"] == metrics["test"]["threshold"]
    x = torch.zeros(2, meta["in_chans"], meta["image_size"], meta["image_size"])
    assert model(x).shape == (2, 2)
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "truncated PNG" in html
    assert "src='file:" not in html
    splits = pd.read_csv(run_dir / "splits.csv")
    assert {"sample_id", "path", "label", "split", "stratum", "group", "synthetic"} <= set(splits.columns)
    assert not set(splits["path"]) & {str(p) for p in bad.values()}

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def artifacts() -> list:
        async with get_client() as client:
            key = f"defect-detection-{metrics['dataset']}-metrics"
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    found = asyncio.run(artifacts())
    assert found and "test accuracy" in found[0].description


def test_no_negative_class_stops_with_one_sentence(prefect_harness, tmp_path, monkeypatch) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=8, classes=("crack", "stain"))
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}"])
    assert state.is_failed()
    assert "label.negative" in state.message and "Traceback" not in state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "label.negative" in metrics["error"]
    assert "label.negative" in (run_dir / "report.html").read_text()


def test_nothing_usable_stops_with_one_sentence(prefect_harness, tmp_path, monkeypatch) -> None:
    """Every image left out (issue #12): the sentence names the most common reason and the setting that changes
    it, and quarantine.csv lists every file, also when ingest itself is left with nothing (a manifest)."""
    root = tmp_path / "parts"
    for cls in ("good", "crack"):
        (root / cls).mkdir(parents=True)
        (root / cls / "a.png").write_bytes(b"")
        for i in range(2):
            cv2.imwrite(str(root / cls / f"tiny{i}.png"), np.full((4, 6), 40 * i + 9, np.uint8))
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}"])
    assert state.is_failed() and "no usable images" in state.message
    assert "(4 of 6)" in state.message and "quality.min_side_px" in state.message
    assert len(pd.read_csv(run_dir / "quarantine.csv")) == 6
    (root / "gone.csv").write_text("path,label\n" + "".join(f"nope/{i}.png,good\n" for i in range(3)))
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root / 'gone.csv'}"])
    assert state.is_failed() and "(3 of 3)" in state.message and "file not found" in state.message
    assert pd.read_csv(run_dir / "quarantine.csv")["reason"].str.startswith("file not found").sum() == 3


def test_same_seed_same_metrics_and_cache_reuse(prefect_harness, tmp_path, monkeypatch) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=20)
    sets = [f"ingest.path={root}", "train.epochs=2"]
    s1, d1 = _run(monkeypatch, tmp_path / "vd", sets)
    s2, d2 = _run(monkeypatch, tmp_path / "vd", sets)
    s3, d3 = _run(monkeypatch, tmp_path / "vd", sets, refresh=[])
    m1, m2, m3 = (json.loads((d / "metrics.json").read_text()) for d in (d1, d2, d3))
    assert d1 != d2 != d3
    assert all(m2["cached"].values()) and not any(m3["cached"].values())
    assert m1["test"] == m2["test"] == m3["test"]
    assert m1["baseline"]["accuracy"] == m3["baseline"]["accuracy"]
    s4, d4 = _run(monkeypatch, tmp_path / "vd", [*sets, "train.epochs=3"])
    m4 = json.loads((d4 / "metrics.json").read_text())
    assert m4["cached"] == {
        "ingest": True,
        "quality": True,
        "label": True,
        "augment": True,
        "train": False,
        "evaluate": False,
        "explain": False,
        "compress": False,
    }


def test_elpv_test_profile(prefect_harness, tmp_path, monkeypatch) -> None:
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [])
    assert state.is_completed(), state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"] == "elpv"
    assert set(metrics["test"]["by_group"]) == {"mono", "poly"}
    assert set(metrics["baseline"]["by_group"]) == {"mono", "poly"}
    # the explain stage (issue #13): both checks' numbers, the overlays in the report and their own artifact
    explain = metrics["explain"]
    assert explain["n_images"] == 8 and explain["gradcam_layer"] and explain["randomised_layers"]
    assert -1.0 <= explain["randomisation_rank_corr"] <= 1.0
    assert 0.0 <= explain["deletion_auc"] <= 1.0 and 0.0 <= explain["deletion_auc_random"] <= 1.0
    assert metrics["timing_s"]["explain"] > 0
    html = (run_dir / "report.html").read_text()
    assert "Explanations (Grad-CAM, LIME)" in html and "alt='overlays'" in html

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def artifacts() -> list:
        async with get_client() as client:
            keys = ["defect-detection-elpv-explain"]
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))

    found = asyncio.run(artifacts())
    assert found and "randomisation rank corr" in found[0].description


def test_a_run_made_worse_on_purpose_is_flagged(prefect_harness, tmp_path, monkeypatch) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=30)
    base = [f"ingest.path={root}", "train.epochs=4", "evaluate.baseline=false"]
    s1, d1 = _run(monkeypatch, tmp_path / "vd", base)
    m1 = json.loads((d1 / "metrics.json").read_text())
    assert s1.is_completed() and "regression" not in m1  # nothing to compare with yet
    # Worse on purpose: a learning rate so small that the network stays at chance.
    worse = [*base, "train.lr=1e-7", "train.schedule=constant"]
    s2, d2 = _run(monkeypatch, tmp_path / "vd", worse)
    m2 = json.loads((d2 / "metrics.json").read_text())
    assert m1["test"]["balanced_accuracy"] - m2["test"]["balanced_accuracy"] > 0.02
    assert s2.is_completed() and m2["regression"]["regressed"]
    assert "test.balanced_accuracy" in m2["regression"]["regressions"]
    assert m2["regression"]["previous_run"] == d1.name
    assert "Compared with the previous run" in (d2 / "report.html").read_text()
    _run(monkeypatch, tmp_path / "vd", base)  # good again (cached stages): the next baseline
    s4, d4 = _run(monkeypatch, tmp_path / "vd", [*worse, "report.fail_on_regression=true"])
    assert s4.is_failed() and "REGRESSION" in s4.message
    assert "REGRESSION" in json.loads((d4 / "metrics.json").read_text())["error"]


def test_a_transient_read_error_is_retried(prefect_harness, tmp_path, monkeypatch) -> None:
    import tasks.ingest.images as ingest

    root = write_part_folder(tmp_path / "parts", n_per_class=12)
    real = ingest.discover_images
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(f"{path}: Stale file handle (a network share hiccup)")
        return real(path)

    monkeypatch.setattr(ingest, "discover_images", flaky)
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}", "evaluate.baseline=false"])
    assert state.is_completed(), state.message
    assert len(calls) == 2


@pytest.mark.slow
def test_synth_on_measures_usefulness_and_reuses_the_real_only_training(prefect_harness, tmp_path, monkeypatch) -> None:
    root = write_part_folder(tmp_path / "parts", n_per_class=20)
    plain, plain_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}"])
    assert plain.is_completed(), plain.message
    state, run_dir = _run(monkeypatch, tmp_path / "vd", [f"ingest.path={root}", "synth.enabled=true"])
    assert state.is_completed(), state.message
    metrics = json.loads((run_dir / "metrics.json").read_text())
    syn = metrics["synthetic"]
    for key in ("tstr_balanced_accuracy", "c2st_accuracy", "c2st_reference", "nn_copy_rate", "nn_copy_rate_raw"):
        assert 0.0 <= syn[key] <= 1.0, key
    assert syn["nn_copy_threshold"] > 0 and syn["nn_copy_threshold_raw"] > 0 and syn["c2st_by_class"]
    assert -1.0 <= syn["gain_mean"] <= 1.0 and syn["gain_sd"] >= 0.0
    assert [r["seed"] for r in syn["per_seed"]] == [0, 1, 2]
    # the real-only arm is the plain run's training, reused from the cache, and scores what that run scored
    real_only = next(a for a in syn["arms"] if a["arm"] == "real-only")
    assert real_only["cached"]
    plain_metrics = json.loads((plain_dir / "metrics.json").read_text())
    assert syn["real_only"]["accuracy"] == plain_metrics["test"]["accuracy"]
    assert metrics["cached"]["synth"] is False and metrics["timing_s"]["synth"] > 0
    splits = pd.read_csv(run_dir / "splits.csv")
    synthetic = splits[splits["synthetic"]]
    assert len(synthetic) == syn["n_added"] > 0 and (synthetic["split"] == "train").all()
    assert all(Path(p).is_file() for p in synthetic["path"])
    html = (run_dir / "report.html").read_text()
    assert "Synthetic data (GAN)" in html and syn["verdict"] in html


@pytest.mark.slow
def test_synth_with_a_named_cheaper_comparison_and_no_real_only_headline(
    prefect_harness, tmp_path, monkeypatch
) -> None:
    """The quick profile's shape: the arms and TSTR train a frozen-feature probe, no real-only copy of the
    headline training, and the images are embedded by the comparison's real-only arm of the run's seed."""
    root = write_part_folder(tmp_path / "parts", n_per_class=16)
    sets = [f"ingest.path={root}", "synth.enabled=true", "synth.real_only_headline=false"]
    sets += ["synth.gain_model=efficientnet_lite0+svm", "synth.gain_image_size=32", "synth.seeds=2"]
    state, run_dir = _run(monkeypatch, tmp_path / "vd", sets)
    assert state.is_completed(), state.message
    syn = json.loads((run_dir / "metrics.json").read_text())["synthetic"]
    assert syn["real_only"] is None
    assert [a["arm"] for a in syn["arms"]] == ["gain-real-0", "gain-synth-0", "gain-real-1", "gain-synth-1", "tstr"]
    assert syn["gain_recipe"]["model"] == "efficientnet_lite0+svm" and syn["gain_recipe"]["image_size"] == 32
    assert syn["feature_space"].startswith("pre-logit features of the real-only efficientnet_lite0+svm at 32 px")
    assert 0.0 <= syn["c2st_accuracy"] <= 1.0 and [r["seed"] for r in syn["per_seed"]] == [0, 1]
    assert "synth.real_only_headline=false" in (run_dir / "report.html").read_text()


def test_case_variant_labels_same_stems_and_three_groups_run_end_to_end(prefect_harness, tmp_path, monkeypatch) -> None:
    """Issue 10: `Good` x8 + `good` x32 train as one negative class (with a warning in the report), `x.png` and
    `x.jpg` are two samples, and a manifest with only 3 groups still splits (one whole group in test)."""
    import cv2
    import numpy as np
    from conftest import part_image

    root = tmp_path / "data"
    rng = np.random.default_rng(5)
    rows = ["path,label,group"]
    for i in range(80):
        label = "defective" if i >= 40 else ("Good" if i < 8 else "good")
        rel = {0: "good/x.png", 1: "good/x.jpg"}.get(i, f"{'bad' if i >= 40 else 'good'}/{i:03d}.png")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), part_image(rng, 40, defect=i >= 40))
        rows.append(f"{rel},{label},wafer{i % 3}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    state, run_dir = _run(
        monkeypatch,
        tmp_path / "vd",
        [f"ingest.path={root / 'manifest.csv'}", "train.epochs=2", "evaluate.baseline=false"],
    )
    assert state.is_completed(), state.message
    splits = pd.read_csv(run_dir / "splits.csv")
    assert len(splits) == 80 and splits["sample_id"].is_unique
    assert {"good/x.png", "good/x.jpg"} <= set(splits["sample_id"])
    negatives = splits[splits["label"] == 0]
    assert len(negatives) == 40 and set(negatives["class_name"]) == {"good"}
    test_groups = set(splits.loc[splits["split"] == "test", "group"])
    assert len(test_groups) == 1 and not test_groups & set(splits.loc[splits["split"] != "test", "group"])
    html = (run_dir / "report.html").read_text()
    assert "Data notes" in html and "differ only in case or surrounding spaces: merged as &#x27;good&#x27;" in html
    assert "only 3 groups for the test split" in html
