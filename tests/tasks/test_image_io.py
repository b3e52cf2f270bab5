"""Image reading: pixels scaled by bit depth, grey or colour as asked."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import part_image

from tasks.image_io import load_image
from tasks.quality.checks import check_image


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


def test_pad_keeps_the_aspect_ratio_and_squash_stretches(tmp_path: Path) -> None:
    strip = np.full((50, 200), 200, dtype=np.uint8)  # a wide bright part
    path = tmp_path / "strip.png"
    cv2.imwrite(str(path), strip)
    padded, squashed = load_image(path, 40, 1, "pad"), load_image(path, 40, 1, "squash")
    rows = np.flatnonzero(padded[:, :, 0].max(axis=1) > 0.5)
    assert (rows.min(), rows.max()) == (15, 24)  # 50x200 -> 10x40, centred on black
    assert np.allclose(squashed, 200 / 255)
    with pytest.raises(ValueError, match="geometry"):
        load_image(path, 40, 1, "tile")
