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
    lines += ["missing/file.png,good,g9", f"{files[0].relative_to(root)},crack,g0", ",good,", "a.gif,good,"]
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


def test_same_stem_with_two_extensions_gives_two_samples(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=3)
    img = cv2.imread(str(root / "good" / "good_001.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / "good" / "good_001.jpg"), img)
    folder = discover_images(root).records
    assert folder["sample_id"].is_unique
    assert {"good/good_001.png", "good/good_001.jpg"} <= set(folder["sample_id"])
    (root / "m.csv").write_text(
        "path,label\ngood/good_001.png,good\ngood/good_001.jpg,good\ncrack/crack_000.png,crack\n"
    )
    manifest = discover_images(root / "m.csv").records
    assert list(manifest["sample_id"]) == ["good/good_001.png", "good/good_001.jpg", "crack/crack_000.png"]


def test_a_file_listed_with_two_labels_loses_every_row_and_both_labels_are_named(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=2)
    rows = ["good/good_000.png,good", "good/good_000.png,crack", "good/good_001.png,good", "good/good_001.png,Good "]
    (root / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\ncrack/crack_000.png,crack\n")
    found = discover_images(root / "m.csv")
    assert list(found.records["sample_id"]) == ["good/good_001.png", "crack/crack_000.png"]
    reasons = {q["path"].rsplit(":", 1)[1]: q["reason"] for q in found.quarantine}
    conflict = f"{root / 'good' / 'good_000.png'} is listed with conflicting labels (line 2 says 'good', line 3 says"
    assert reasons["2"].startswith(conflict) and reasons["3"].startswith(conflict)
    assert "'crack'" in reasons["2"] and "keep one row per file" in reasons["2"]
    # a spelling the label stage merges (case, spaces) is the same label: the second row is a plain repeat
    assert reasons["5"].startswith("path listed twice") and "line 4 is kept" in reasons["5"]


def test_hidden_entries_are_skipped_and_counted_and_broken_links_quarantined(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=3)
    checkpoints = root / "good" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    (checkpoints / "good_000-checkpoint.png").write_bytes((root / "good" / "good_000.png").read_bytes())
    (root / ".cache").mkdir()
    (root / "crack" / ".DS_Store").write_bytes(b"\0")
    (root / "crack" / "gone.png").symlink_to(root / "nowhere.png")
    (root / "crack" / "alias.png").symlink_to(root / "crack" / "crack_000.png")
    (root / "stray.png").write_bytes((root / "good" / "good_000.png").read_bytes())
    found = discover_images(root)
    assert len(found.records) == 6 and not found.records["path"].str.contains("checkpoint").any()
    assert "skipped 2 hidden folders and 1 hidden file (.cache/, crack/.DS_Store, good/.ipynb_checkpoints/)" in (
        " ".join(found.notes)
    )
    reasons = {Path(q["path"]).name: q["reason"] for q in found.quarantine}
    assert reasons["gone.png"] == (
        f"broken symbolic link to {root / 'nowhere.png'} (No such file or directory); fix or remove the link"
    )
    assert reasons["alias.png"] == (
        f"a link to {root / 'crack' / 'crack_000.png'}, which is read already; it is used once, under that name"
    )
    assert reasons["stray.png"].startswith("image directly in the data folder, not in a class folder")


def test_manifest_header_or_delimiter_problems_name_what_was_found(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=2)
    (root / "semi.csv").write_text("path;label\ngood/good_000.png;good\n")
    with pytest.raises(ValueError) as semi:
        discover_images(root / "semi.csv")
    assert str(semi.value) == (
        f"manifest {root / 'semi.csv'}: expected a header `path,label[,group]`, found `path;label`; "
        "delimiter ';' instead of ',': save it as a comma-separated CSV"
    )
    (root / "paths.csv").write_text("good/good_000.png\ngood/good_001.png\n")
    with pytest.raises(ValueError, match=r"found `good/good_000.png`; write `path,label\[,group\]` as its first line"):
        discover_images(root / "paths.csv")
    (root / "bare.csv").write_text("good/good_000.png,good\ngood/good_001.png,good\ncrack/crack_000.png,crack\n")
    bare = discover_images(root / "bare.csv")
    assert len(bare.records) == 3 and bare.notes == [
        "manifest bare.csv has no header row; read its columns as path,label[,group]"
    ]
    (root / "gone.csv").write_text("path,label\nnope/a.png,good\n")
    with pytest.raises(
        ValueError,
        match=r"none of its rows lists a usable image \(1 left out\); most common reason \(1 of 1\): "
        r'"file not found: .*nope/a.png"',
    ):
        discover_images(root / "gone.csv")


def test_manifest_paths_outside_its_folder_are_allowed_and_listed(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=3)
    (tmp_path / "review").mkdir()
    rows = [f"../p/{f.relative_to(root).as_posix()},{f.parent.name}" for f in sorted(root.rglob("*.png"))]
    (tmp_path / "review" / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    found = discover_images(tmp_path / "review" / "m.csv")
    assert len(found.records) == 6
    assert found.notes == [
        f"6 manifest paths point outside the manifest's folder {tmp_path / 'review'} (allowed): "
        "../p/crack/crack_000.png, ../p/crack/crack_001.png, ../p/crack/crack_002.png, ..."
    ]
