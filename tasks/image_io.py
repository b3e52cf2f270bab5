"""Reading inspection images from disk the same way in every stage.

Quality checks, augmentation, training, evaluation, the GAN and the report all decode the user's files; one reader
keeps their bit depth, channel order and resize rule identical, so a model sees at scoring time exactly the pixels
it saw in training. The ``tile`` geometry cuts a large image into several model inputs (:func:`tile_grid`); its
scores come back together per image in one place (:func:`aggregate_tiles`).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image with OpenCV keeping its bit depth (8/16-bit, grey or colour; BGR order for colour).

    ``cv2.imread`` cannot open non-ASCII paths on some platforms; decoding from bytes avoids that.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: OpenCV could not decode the image")
    if image.ndim == 3 and image.shape[2] == 4:  # drop alpha: it carries no inspection signal
        image = image[:, :, :3]
    return image


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Scale by the pixel type's range (not per image), so absolute brightness differences survive."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


#: Geometries that make one ``size`` x ``size`` square of a file (:func:`fit_square`).
SQUARE_GEOMETRIES = ("pad", "squash")
#: Every ``train.geometry``: ``tile`` cuts a file into several squares (:func:`tile_grid`).
GEOMETRIES = (*SQUARE_GEOMETRIES, "tile")
#: Most tiles one file may give: a ``tile_px`` far below the image's size would multiply memory and time unnoticed.
MAX_TILES = 64


def fit_square(image: np.ndarray, size: int, geometry: str = "pad") -> np.ndarray:
    """``image`` as ``size`` x ``size``: ``pad`` keeps the aspect ratio, ``squash`` stretches.

    Padding scales the long side to ``size`` and centres the image on black (zeros), so a 100 x 600 px strip keeps
    its defects' shapes instead of being squeezed six-fold across; squash keeps every pixel row's share of the
    input, which suits near-square parts. Area interpolation when shrinking (no aliasing), linear when enlarging.
    """
    if geometry not in SQUARE_GEOMETRIES:
        if geometry == "tile":
            raise ValueError("geometry='tile' gives several squares per file: read it with load_views or load_tiles")
        raise ValueError(f"geometry={geometry!r}; use one of {', '.join(GEOMETRIES)}")
    h, w = image.shape[:2]
    if geometry == "squash" or h == w:
        target = (size, size)
    else:
        scale = size / max(h, w)
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if target[0] * target[1] <= w * h else cv2.INTER_LINEAR
    resized = cv2.resize(image, target, interpolation=interp)
    if target == (size, size):
        return resized
    top, left = (size - target[1]) // 2, (size - target[0]) // 2
    out = np.zeros((size, size, *resized.shape[2:]), dtype=resized.dtype)
    out[top : top + target[1], left : left + target[0]] = resized
    return out


def tile_shape(height: int, width: int, tile_px: int | None = None) -> tuple[int, int, int]:
    """``(rows, cols, tile side)`` of the grid :func:`tile_grid` cuts an image of ``height`` x ``width`` px into:
    ``ceil(H / tile) x ceil(W / tile)`` tiles of ``tile_px`` px (None: the image's short side)."""
    tile = int(tile_px) if tile_px else min(height, width)
    return math.ceil(height / tile), math.ceil(width / tile), tile


def _starts(length: int, tile: int, n: int) -> list[int]:
    """Offsets of ``n`` windows of ``tile`` px over ``length`` px: evenly spaced, first at 0, last ending at the end
    (neighbours overlap by the slack), so every pixel is in some tile."""
    if n == 1:
        return [0]
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_grid(
    image: np.ndarray, size: int, tile_px: int | None = None, *, max_tiles: int = MAX_TILES, source: str = "image"
) -> np.ndarray:
    """``image`` (H, W[, C]) cut into a grid of square tiles, each resized to ``size``: ``(n_tiles, size, size[, C])``.

    Why: shrinking a 4000 x 600 px steel strip or a wafer scan whole to 128-224 px leaves a hairline crack less than
    a pixel wide; a tile of ``tile_px`` source pixels keeps it visible at the model's input size. The grid is
    ``ceil(H / tile) x ceil(W / tile)`` tiles, evenly spaced so that neighbours overlap rather than leaving a
    ragged, partly empty last tile; ``tile_px=None`` tiles by the image's short side (a 100 x 600 strip gives six
    100 px squares). A side shorter than a tile is padded with black, centred, as ``pad`` does, so every tile shows
    the same number of source pixels per model pixel. Row-major order (top row first). Area interpolation when
    shrinking, linear when enlarging.

    Raises:
        ValueError: The grid has more than ``max_tiles`` tiles; the message names ``source`` (the file) and
            ``train.tile_px``, so a mistaken tile size cannot exhaust memory.
    """
    h, w = image.shape[:2]
    rows, cols, tile = tile_shape(h, w, tile_px)
    if rows * cols > max_tiles:
        unset = "" if tile_px else " (unset: the image's short side)"
        raise ValueError(
            f"{source}: {h} x {w} px in tiles of {tile} px{unset} makes {rows} x {cols} = {rows * cols} tiles, above "
            f"the limit of {max_tiles} per image; raise train.tile_px"
        )
    if h < tile or w < tile:
        padded = np.zeros((max(h, tile), max(w, tile), *image.shape[2:]), dtype=image.dtype)
        top, left = (padded.shape[0] - h) // 2, (padded.shape[1] - w) // 2
        padded[top : top + h, left : left + w] = image
        image = padded
    interp = cv2.INTER_AREA if tile > size else cv2.INTER_LINEAR
    tiles = []
    for top in _starts(image.shape[0], tile, rows):
        for left in _starts(image.shape[1], tile, cols):
            crop = np.ascontiguousarray(image[top : top + tile, left : left + tile])
            out = crop if tile == size else cv2.resize(crop, (size, size), interpolation=interp)
            tiles.append(out.reshape(size, size, *crop.shape[2:]))  # cv2 drops a trailing 1-channel axis
    return np.stack(tiles)


def _decode(path: str | Path, channels: int) -> np.ndarray:
    """The file's pixels in RGB order (colour) or grey (one channel asked for), at its own bit depth."""
    image = read_image(path)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if channels == 1:
            image = image[:, :, 0]
    return image


def _as_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A float (H, W) or (H, W, C) image as (H, W, ``channels``); grey is replicated for a colour model."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=2)
    return image


def load_image(path: str | Path, size: int, channels: int, geometry: str = "pad") -> np.ndarray:
    """Decode, convert to RGB or grey, fit into ``size`` x ``size`` (:func:`fit_square`), float (H, W, C) in [0, 1].

    Every stage and ``predict`` read pixels through here (or :func:`load_views`, which also tiles) with the model's
    recorded ``geometry``, so the pixels scored are the pixels trained on.
    """
    return _as_channels(to_unit_float(fit_square(_decode(path, channels), size, geometry)), channels)


def load_tiles(path: str | Path, size: int, channels: int, tile_px: int | None = None) -> np.ndarray:
    """The file's tiles (:func:`tile_grid`) as float ``(n_tiles, size, size, C)`` in [0, 1].

    Raises:
        ValueError: More than :data:`MAX_TILES` tiles; the message names the file and ``train.tile_px``.
    """
    tiles = tile_grid(_decode(path, channels), size, tile_px, source=str(path))
    return np.stack([_as_channels(to_unit_float(t), channels) for t in tiles])


def load_views(
    path: str | Path, size: int, channels: int, geometry: str = "pad", tile_px: int | None = None
) -> np.ndarray:
    """What a model with this ``geometry`` sees of one file: ``(n, size, size, C)`` float in [0, 1].

    One view for ``pad``/``squash`` (:func:`load_image`), one per tile for ``tile`` (:func:`load_tiles`); the
    scorer puts a file's tile probabilities back together with :func:`aggregate_tiles`.
    """
    if geometry == "tile":
        return load_tiles(path, size, channels, tile_px)
    return load_image(path, size, channels, geometry)[None]


def most_defective_tiles(proba: np.ndarray, counts: np.ndarray | list[int]) -> np.ndarray:
    """Row of ``proba`` ``(n_tiles, C)`` that decides each image, the images' tiles consecutive, ``counts`` per image.

    The tile with the highest defect probability: ``P(class 1)`` for two classes, ``1 - P(class 0)`` (anything but
    the negative class, which the label stage puts first) for several. See :func:`aggregate_tiles` for why.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if (counts < 1).any() or counts.sum() != len(proba):
        raise ValueError(f"tile counts {counts.tolist()[:8]} do not partition {len(proba)} tile rows (each >= 1)")
    defect = proba[:, 1] if proba.shape[1] == 2 else 1.0 - proba[:, 0]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return np.array(
        [s + int(np.argmax(defect[s : s + c])) for s, c in zip(starts, counts, strict=True)], dtype=np.int64
    )


def aggregate_tiles(proba: np.ndarray, counts: np.ndarray | list[int]) -> np.ndarray:
    """Image probabilities ``(n_images, C)`` from tile probabilities ``(n_tiles, C)``: the most defective tile's.

    Why: tiles carry their image's label only weakly (multiple-instance learning: a cracked strip has one cracked
    tile and many clean ones), and an image is defective when *any* of its tiles is. So two classes take the tile
    with the highest defect probability (the max), and several classes the whole probability vector of the tile
    least likely to be the negative class 0, so the reported class is that tile's. Every scorer (val/test
    predictions, predict, ONNX, compress) uses this one rule; with one view per image it returns ``proba`` unchanged.
    """
    return proba[most_defective_tiles(proba, counts)]


def is_grey(image: np.ndarray) -> bool:
    """Grey images, and colour images whose three channels are identical, train with one input channel."""
    if image.ndim == 2 or image.shape[2] == 1:
        return True
    return bool(np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 1], image[:, :, 2]))
