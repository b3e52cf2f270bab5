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


def load_image(path: str | Path, size: int, channels: int) -> np.ndarray:
    """Decode, convert to RGB or grey, resize to ``size`` x ``size`` (area interpolation), float (H, W, C) in [0, 1].

    Parts are not always square; a plain resize keeps the whole part in view, which matters more for defects at
    the border than the small change of aspect ratio.
    """
    image = read_image(path)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if channels == 1:
            image = image[:, :, 0]
    interp = cv2.INTER_AREA if min(image.shape[:2]) >= size else cv2.INTER_LINEAR
    image = cv2.resize(image, (size, size), interpolation=interp)
    out = to_unit_float(image)
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
