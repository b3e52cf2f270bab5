"""Shared fixtures: real PNG files written with OpenCV, and one Prefect test harness per session."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest


def part_image(rng: np.random.Generator, size: int, defect: bool, bits: int = 8, colour: bool = False) -> np.ndarray:
    """A textured 'part' image; a defect is a dark crack-like line. Real enough to exercise decoding and learning."""
    top = 255 if bits == 8 else 65535
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.55 + 0.1 * np.sin(8 * np.pi * xx) * np.sin(6 * np.pi * yy) + rng.normal(0, 0.04, (size, size))
    if defect:
        r0, c0 = rng.integers(size // 6, size // 2, size=2)
        length = rng.integers(size // 3, size // 2)
        for t in range(length):
            r, c = r0 + t // 2, c0 + t
            if 0 <= r < size and 0 <= c < size:
                img[max(0, r - 1) : r + 1, max(0, c - 1) : c + 1] = 0.1
    img = np.clip(img, 0, 1) * top
    out = img.astype(np.uint8 if bits == 8 else np.uint16)
    if colour:
        out = np.stack([out, (out * 0.9).astype(out.dtype), (out * 0.8).astype(out.dtype)], axis=2)
    return out


def write_part_folder(
    root: Path, n_per_class: int = 24, size: int = 40, seed: int = 0, classes: tuple[str, str] = ("good", "crack")
) -> Path:
    """ROOT/<class>/*.png with mixed sizes and bit depths, as a user's folder would be."""
    rng = np.random.default_rng(seed)
    for ci, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            bits = 16 if i % 5 == 0 else 8
            s = size + (i % 3) * 8
            cv2.imwrite(str(d / f"{name}_{i:03d}.png"), part_image(rng, s, defect=ci == 1, bits=bits))
    return root


def split_table(
    root: Path, make_image: Callable[[np.random.Generator, bool], np.ndarray], n_per_class: int = 8
) -> pd.DataFrame:
    """A split table of real PNGs drawn by ``make_image(rng, defect)``: half of each class train, a quarter val, a
    quarter test, in the label stage's columns."""
    rng = np.random.default_rng(0)
    rows = []
    for label, name in enumerate(("good", "crack")):
        for i in range(n_per_class):
            path = root / f"{name}_{i}.png"
            cv2.imwrite(str(path), make_image(rng, label == 1))
            split = "train" if i < n_per_class // 2 else ("val" if i < 3 * n_per_class // 4 else "test")
            rows.append(
                {"sample_id": f"{name}-{i}", "path": str(path), "label": label, "split": split, "weight": 1.0}
                | {"stratum": "", "group": "", "synthetic": False, "class_name": name, "grey": True}
            )
    return pd.DataFrame(rows)


def add_bad_files(class_dir: Path) -> dict[str, Path]:
    """A truncated PNG, an empty .png and a text file named notes.png."""
    good = sorted(class_dir.glob("*.png"))[0].read_bytes()
    bad = {
        "truncated": class_dir / "truncated.png",
        "empty": class_dir / "empty.png",
        "text": class_dir / "notes.png",
    }
    bad["truncated"].write_bytes(good[: len(good) // 2])
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("inspection notes: camera 2 was re-focused on monday\n")
    return bad


@pytest.fixture()
def part_folder(tmp_path: Path) -> Path:
    return write_part_folder(tmp_path / "parts")


@pytest.fixture(scope="session")
def prefect_harness():
    """A real (temporary) Prefect API for flow tests, started once per session."""
    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=120):
        yield
