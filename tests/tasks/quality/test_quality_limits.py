"""Image checks within memory (issue #14): a pixel cap read from the header before decoding, and no float64 copy."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.quality.checks import check_image, header_size, pixel_std


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_an_image_over_the_pixel_cap_is_quarantined_from_its_header(tmp_path: Path, ext: str) -> None:
    image = np.random.default_rng(0).integers(0, 255, (30, 50), dtype=np.uint8)
    path = tmp_path / f"wide{ext}"
    cv2.imwrite(str(path), image)
    kind = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP"}[ext]
    assert header_size(path.read_bytes(), kind) == (50, 30)
    check = check_image(path, max_pixels=1000)
    assert check.reason.startswith("too large (50x30 px = 0.0 MP; quality.max_pixels is 0.0 MP)")
    assert "raise quality.max_pixels" in check.reason
    assert check_image(path, max_pixels=1500).reason is None


def test_pixel_std_matches_numpy_for_every_supported_type() -> None:
    rng = np.random.default_rng(1)
    for image in (
        rng.integers(0, 255, (20, 30, 3), dtype=np.uint8),
        rng.integers(0, 65535, (20, 30), dtype=np.uint16),
        rng.normal(size=(20, 30, 3)).astype(np.float32),
    ):
        assert pixel_std(image) == pytest.approx(float(image.std()), rel=1e-6)


def test_checking_a_16_bit_colour_image_holds_little_more_than_the_decoded_image(tmp_path: Path) -> None:
    image = np.random.default_rng(2).integers(0, 65535, (600, 600, 3), dtype=np.uint16)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), image)
    decoded = image.nbytes  # 2.2 MB; a float64 copy alone would be 8.6 MB
    tracemalloc.start()
    try:
        check = check_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert check.reason is None and check.dtype == "uint16"
    assert peak < 2 * decoded + path.stat().st_size, peak / decoded
