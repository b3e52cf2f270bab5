from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import add_bad_files, part_image, write_part_folder

from tasks.image_io import load_image
from tasks.ingest.images import discover_images, read_elpv, subsample
from tasks.quality.images import apply_checks, check_image


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


def test_bad_files_get_specific_reasons(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=4)
    bad = add_bad_files(root / "good")
    blank = root / "good" / "blank.png"
    cv2.imwrite(str(blank), np.full((20, 20), 128, np.uint8))
    jpg = root / "crack" / "cut.jpg"
    ok, buf = cv2.imencode(".jpg", part_image(np.random.default_rng(1), 64, True))
    jpg.write_bytes(buf.tobytes()[:-300])
    assert "truncated PNG" in check_image(bad["truncated"]).reason
    assert "empty file" in check_image(bad["empty"]).reason
    assert "looks like a text file" in check_image(bad["text"]).reason
    assert "blank image" in check_image(blank).reason
    assert "truncated JPEG" in check_image(jpg).reason
    good = check_image(sorted((root / "crack").glob("crack_*.png"))[0])
    assert good.reason is None and good.grey


def test_duplicates_keep_the_first_copy(tmp_path: Path) -> None:
    root = write_part_folder(tmp_path / "p", n_per_class=3)
    src = sorted((root / "good").glob("*.png"))[0]
    (root / "good" / "zz_copy.png").write_bytes(src.read_bytes())
    found = discover_images(root)
    usable, quarantine = apply_checks(found.records, [check_image(p) for p in found.records["path"]])
    assert len(usable) == 6
    assert len(quarantine) == 1 and "duplicate of" in quarantine[0]["reason"] and str(src) in quarantine[0]["reason"]


def test_load_image_scales_by_bit_depth_and_colour(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p8, p16, pc = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    cv2.imwrite(str(p8), part_image(rng, 50, False, bits=8))
    cv2.imwrite(str(p16), part_image(rng, 50, False, bits=16))
    cv2.imwrite(str(pc), part_image(rng, 30, False, colour=True))
    a, b, c = load_image(p8, 32, 1), load_image(p16, 32, 1), load_image(pc, 32, 3)
    assert a.shape == b.shape == (32, 32, 1) and c.shape == (32, 32, 3)
    assert 0.3 < a.mean() < 0.8 and 0.3 < b.mean() < 0.8
    assert not check_image(pc).grey


def test_subsample_is_seeded_and_stratified() -> None:
    records = read_elpv().records
    a, b = subsample(records, 200, 1), subsample(records, 200, 1)
    assert a.equals(b) and 190 <= len(a) <= 210
    assert set(a["stratum"]) == {"mono", "poly"}
