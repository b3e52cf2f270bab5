"""Reading inspection images from disk the same way in every stage.

Quality checks, augmentation, training, evaluation, the GAN and the report all decode the user's files; one reader
keeps their bit depth, channel order and resize rule identical, so a model sees at scoring time exactly the pixels
it saw in training.
"""

from __future__ import annotations

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


GEOMETRIES = ("pad", "squash")


def fit_square(image: np.ndarray, size: int, geometry: str = "pad") -> np.ndarray:
    """``image`` as ``size`` x ``size``: ``pad`` keeps the aspect ratio, ``squash`` stretches.

    Padding scales the long side to ``size`` and centres the image on black (zeros), so a 100 x 600 px strip keeps
    its defects' shapes instead of being squeezed six-fold across; squash keeps every pixel row's share of the
    input, which suits near-square parts. Area interpolation when shrinking (no aliasing), linear when enlarging.
    """
    if geometry not in GEOMETRIES:
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


def load_image(path: str | Path, size: int, channels: int, geometry: str = "pad") -> np.ndarray:
    """Decode, convert to RGB or grey, fit into ``size`` x ``size`` (:func:`fit_square`), float (H, W, C) in [0, 1].

    Every stage and ``predict`` read pixels through here with the model's recorded ``geometry``, so the pixels
    scored are the pixels trained on.
    """
    image = read_image(path)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if channels == 1:
            image = image[:, :, 0]
    out = to_unit_float(fit_square(image, size, geometry))
    if out.ndim == 2:
        out = out[:, :, None]
    if out.shape[2] == 1 and channels == 3:
        out = np.repeat(out, 3, axis=2)
    return out


def is_grey(image: np.ndarray) -> bool:
    """Grey images, and colour images whose three channels are identical, train with one input channel."""
    if image.ndim == 2 or image.shape[2] == 1:
        return True
    return bool(np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 1], image[:, :, 2]))
