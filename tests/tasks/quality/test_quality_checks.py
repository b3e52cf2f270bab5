"""The per-file quality checks: a specific reason for each kind of bad file, the first copy of duplicates kept."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import add_bad_files, part_image, write_part_folder

from tasks.ingest.images import discover_images
from tasks.quality.checks import apply_checks, check_image


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
