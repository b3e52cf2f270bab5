"""Ingest of inspection images: ELPV, folders and manifests found with their labels; seeded subsets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_part_folder

from tasks.ingest.images import discover_images, read_elpv, subsample


def test_elpv_is_found_with_its_labels_and_module_types() -> None:
    found = read_elpv()
    assert len(found.records) == 2624
    assert set(found.records["stratum"]) == {"mono", "poly"}
    probs = set(found.records["label_raw"].astype(float).round(3))
    assert probs == {0.0, 0.333, 0.667, 1.0}


def test_folder_discovery_any_case_extensions_and_ignores_other_files(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=3)
    img = cv2.imread(str(next((root / "good").glob("*.png"))), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / "good" / "upper.JPG"), (img // 257).astype(np.uint8) if img.dtype == np.uint16 else img)
    (root / "good" / "readme.txt").write_text("x")
    found = discover_images(root)
    assert found.source == "folder"
    assert len(found.records) == 7
    assert set(found.records["label_raw"]) == {"good", "crack"}
    assert any("ignored 1 files" in n for n in found.notes)


def test_manifest_bad_rows_are_quarantined_with_line_numbers(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=2)
    files = sorted(root.rglob("*.png"))
    lines = ["path,label,group"] + [f"{f.relative_to(root)},{f.parent.name},g{i}" for i, f in enumerate(files)]
    lines += ["missing/file.png,good,g9", f"{files[0].relative_to(root)},good,g0", ",good,", "a.gif,good,"]
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    found = discover_images(root / "m.csv")
    assert len(found.records) == len(files)
    reasons = {q["path"].rsplit(":", 1)[1]: q["reason"] for q in found.quarantine}
    assert "file not found" in reasons["6"]
    assert "listed twice" in reasons["7"]
    assert "needs path and label" in reasons["8"]
    assert "extension .gif" in reasons["9"]
    assert found.records["group"].iloc[0] == "g0"


def test_missing_data_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        discover_images(tmp_path / "nope")


def test_subsample_is_seeded_and_stratified() -> None:
    records = read_elpv().records
    a, b = subsample(records, 200, 1), subsample(records, 200, 1)
    assert a.equals(b) and 190 <= len(a) <= 210
    assert set(a["stratum"]) == {"mono", "poly"}
