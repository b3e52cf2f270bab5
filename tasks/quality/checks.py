"""Decide per file whether an image can be used, and say why not: pure functions of the files' bytes.

Each check names a problem a person can act on: an empty file, a text file with an image extension, a truncated
download, a blank frame, a copy of another file. :func:`check_image` looks at one file (so the Dask fan-out in
:mod:`tasks.quality.fanout` can run it anywhere); :func:`apply_checks` joins every file's outcome onto the ingest
records, because duplicates can only be found with all the hashes at once.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from tasks.image_io import is_grey

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


@dataclass(frozen=True)
class ImageCheck:
    """Outcome of checking one file: ``reason`` is None when the image is usable."""

    path: str
    reason: str | None
    sha256: str = ""
    height: int = 0
    width: int = 0
    channels: int = 0
    dtype: str = ""
    grey: bool = True


#: What to do about a file whose bytes are damaged (the usual cause: an interrupted copy or export).
_AGAIN = "copy or export it again"
#: Default of ``quality.max_pixels``: 100 megapixels, 600 MB decoded as 16-bit colour (OpenCV's own cap is 1 GP).
MAX_PIXELS = 100_000_000
#: JPEG start-of-frame markers (they carry the image size); C4, C8 and CC are other segments in that range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """``(width, height)`` in pixels from a PNG, BMP or JPEG header, without decoding; None when not found there.

    Lets :func:`check_image` refuse an image too large for memory before OpenCV allocates it.
    """
    try:
        if kind == "PNG":
            return struct.unpack(">II", data[16:24])
        if kind == "BMP":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if kind == "JPEG":
            i = 2
            while i + 9 <= len(data) and data[i] == 0xFF:
                marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
                if marker in _JPEG_SOF:
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return w, h
                i += 2 + length
    except struct.error:
        return None
    return None


def _too_large(w: int, h: int, max_pixels: int) -> str | None:
    if w * h <= max_pixels:
        return None
    return (
        f"too large ({w}x{h} px = {w * h / 1e6:.1f} MP; quality.max_pixels is {max_pixels / 1e6:.1f} MP); "
        "downscale it, or raise quality.max_pixels if the machine has the memory"
    )


def pixel_std(image: np.ndarray) -> float:
    """Standard deviation over all pixels and channels, computed by OpenCV per channel in one pass.

    ``image.std()`` would first make a float64 copy of the image and then another for the squared deviations
    (~12x the memory of a 16-bit image); per-channel means and variances combine exactly into the total.
    """
    means, stds = cv2.meanStdDev(image)
    means, stds = means.ravel(), stds.ravel()
    return float(np.sqrt(np.mean(stds**2) + np.var(means)))


def check_image(
    path: str | Path, min_std: float = 1e-6, min_side_px: int = 8, max_pixels: int = MAX_PIXELS
) -> ImageCheck:
    """Check one file; never raises for a bad file (the reason says what is wrong and what to do).

    The image is decoded once, in its own type (8- or 16-bit, or float32), and never copied to float64; one with
    more than ``max_pixels`` pixels is refused from its header, before it is decoded, where the header says.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        reason = f"cannot read file ({exc.strerror or exc}); make it readable for the user running vigil, or remove it"
        return ImageCheck(str(p), reason)
    if not data:
        return ImageCheck(str(p), f"empty file (0 bytes); {_AGAIN}, or remove it")
    kind = next((name for sig, name in _SIGNATURES if data.startswith(sig)), None)
    if kind is None:
        head = data[:16]
        text_like = all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        hint = " (looks like a text file)" if text_like else ""
        return ImageCheck(str(p), f"not an image: content is not PNG, JPEG, BMP or TIFF{hint}; move it out of the data")
    digest = hashlib.sha256(data).hexdigest()
    if kind == "PNG" and b"IEND" not in data[-32:]:
        return ImageCheck(str(p), f"truncated PNG (no IEND chunk at the end of the file); {_AGAIN}", digest)
    if kind == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return ImageCheck(str(p), f"truncated JPEG (no end-of-image marker); {_AGAIN}", digest)
    size = header_size(data, kind)
    if size is not None and (reason := _too_large(*size, max_pixels)):
        return ImageCheck(str(p), reason, digest)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return ImageCheck(str(p), f"corrupt {kind}: OpenCV could not decode it; {_AGAIN}", digest)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    h, w = image.shape[:2]
    if reason := _too_large(w, h, max_pixels):  # a TIFF, or a header that understated the size
        return ImageCheck(str(p), reason, digest)
    if min(h, w) < min_side_px:
        reason = f"too small ({w}x{h} px; need {min_side_px} px per side); remove it, or lower quality.min_side_px"
        return ImageCheck(str(p), reason, digest)
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        return ImageCheck(str(p), f"unsupported pixel type {image.dtype} (use 8- or 16-bit)", digest)
    if pixel_std(image) <= min_std:
        return ImageCheck(str(p), "blank image: every pixel has the same value; remove the failed capture", digest)
    channels = 1 if image.ndim == 2 else image.shape[2]
    return ImageCheck(str(p), None, digest, h, w, channels, str(image.dtype), is_grey(image))


def find_duplicates(checks: list[ImageCheck]) -> dict[str, str]:
    """Map each later copy of byte-identical content to the first file with it (input order decides)."""
    first: dict[str, str] = {}
    dupes: dict[str, str] = {}
    for c in checks:
        if c.reason is not None or not c.sha256:
            continue
        if c.sha256 in first:
            dupes[c.path] = first[c.sha256]
        else:
            first[c.sha256] = c.path
    return dupes


def apply_checks(
    records: pd.DataFrame, checks: list[ImageCheck], drop_duplicates: bool = True
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Join checks onto the ingest records; returns (usable records with image metadata, quarantine rows)."""
    by_path = {c.path: c for c in checks}
    dupes = find_duplicates(checks) if drop_duplicates else {}
    keep_rows = []
    quarantine: list[dict[str, str]] = []
    for row in records.to_dict("records"):
        c = by_path[row["path"]]
        if c.reason is not None:
            quarantine.append({"path": row["path"], "stage": "quality", "reason": c.reason})
            continue
        if row["path"] in dupes:
            first = dupes[row["path"]]
            reason = f"exact duplicate of {first} (first copy kept); delete one, or set quality.drop_duplicates=false"
            quarantine.append({"path": row["path"], "stage": "quality", "reason": reason})
            continue
        row.update(sha256=c.sha256, height=c.height, width=c.width, channels=c.channels, dtype=c.dtype, grey=c.grey)
        keep_rows.append(row)
    columns = list(records.columns) + ["sha256", "height", "width", "channels", "dtype", "grey"]
    return pd.DataFrame(keep_rows, columns=columns), quarantine
