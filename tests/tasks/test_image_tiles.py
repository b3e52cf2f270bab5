"""The tile geometry's pure parts: the grid a large image is cut into, and how tile scores become an image's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from tasks.config import TrainConfig
from tasks.image_io import MAX_TILES, aggregate_tiles, load_views, most_defective_tiles, tile_grid


def test_a_strip_is_cut_into_squares_of_its_short_side() -> None:
    strip = np.full((100, 600), 90, dtype=np.uint8)
    strip[:, 500:] = 200  # the last sixth is bright
    tiles = tile_grid(strip, 32, tile_px=100)
    assert tiles.shape == (6, 32, 32) and tiles.dtype == np.uint8
    assert np.array_equal(tiles, tile_grid(strip, 32))  # tile_px=None: the short side, the same grid
    assert (tiles[:5] == 90).all() and (tiles[5] == 200).all()


def test_a_large_image_gets_covering_overlapping_tiles_the_last_at_the_corner() -> None:
    image = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    tiles = tile_grid(image, 400, tile_px=400)  # size == tile_px: the source pixels themselves
    assert tiles.shape == (9, 400, 400, 3)
    assert np.array_equal(tiles[0], image[:400, :400])
    assert np.array_equal(tiles[4], image[300:700, 300:700])  # 3 tiles over 1000 px start at 0, 300, 600
    assert np.array_equal(tiles[-1], image[600:, 600:])  # the bottom-right corner region
    resized = tile_grid(image, 64, tile_px=400)
    assert resized.shape == (9, 64, 64, 3)
    corner = cv2.resize(image[600:, 600:], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(resized[-1], corner)


def test_a_side_shorter_than_a_tile_is_padded_with_black_centred() -> None:
    strip = np.full((50, 200), 200, dtype=np.uint8)
    tiles = tile_grid(strip, 100, tile_px=100)
    assert tiles.shape == (2, 100, 100)
    rows = np.flatnonzero(tiles[0].max(axis=1) > 0)
    assert (rows.min(), rows.max()) == (25, 74)


def test_too_many_tiles_is_an_error_naming_the_file_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "wafer_0042.png"
    cv2.imwrite(str(path), np.full((100, 2000), 128, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"wafer_0042\.png.*= 2000 tiles.*limit of 64.*train\.tile_px"):
        load_views(path, 32, 1, "tile", tile_px=10)
    with pytest.raises(ValueError, match="short side"):  # unset tile_px: squares of the 10 px short side, 200
        tile_grid(np.zeros((10, 2000), np.uint8), 32)
    assert MAX_TILES == 64


def test_load_views_reads_a_png_as_tiles_or_one_square(tmp_path: Path) -> None:
    path = tmp_path / "strip.png"
    cv2.imwrite(str(path), np.full((40, 160), 255, dtype=np.uint8))
    tiles = load_views(path, 32, 3, "tile", tile_px=40)
    assert tiles.shape == (4, 32, 32, 3) and tiles.dtype == np.float32 and np.allclose(tiles, 1.0)
    assert load_views(path, 32, 1, "pad").shape == (1, 32, 32, 1)


def test_binary_images_score_as_their_most_defective_tile() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.95, 0.05]])
    out = aggregate_tiles(proba, [3, 1, 1])  # image 0 has three tiles
    assert np.array_equal(out, proba[[1, 3, 4]])
    assert np.array_equal(most_defective_tiles(proba, [3, 1, 1]), [1, 3, 4])
    assert np.array_equal(aggregate_tiles(proba, [1] * 5), proba)  # one view per image: unchanged


def test_several_classes_take_the_whole_vector_of_the_tile_least_likely_negative() -> None:
    proba = np.array(
        [
            [0.50, 0.45, 0.05],  # most likely class 1, but 50 % good
            [0.30, 0.10, 0.60],  # least likely good: this tile decides image 0
            [0.80, 0.15, 0.05],
            [0.10, 0.70, 0.20],  # image 1's decisive tile
        ]
    )
    out = aggregate_tiles(proba, [3, 1])
    assert np.array_equal(out, proba[[1, 3]])
    assert out[0].argmax() == 2  # the image is called what its most defective tile is called


def test_tile_counts_must_partition_the_rows() -> None:
    with pytest.raises(ValueError, match="partition"):
        aggregate_tiles(np.zeros((3, 2)), [1, 1])
    with pytest.raises(ValueError, match="partition"):
        aggregate_tiles(np.zeros((2, 2)), [2, 0])


def test_tile_px_without_the_tile_geometry_is_an_error_naming_both_keys() -> None:
    with pytest.raises(ValidationError, match=r"train\.tile_px=256.*train\.geometry=tile"):
        TrainConfig(tile_px=256)
    cfg = TrainConfig(geometry="tile", tile_px=256)
    assert (cfg.geometry, cfg.tile_px) == ("tile", 256)
    assert TrainConfig().geometry == "pad" and TrainConfig().tile_px is None  # the default does not move
