"""The image synth stage: only real train-split images reach the GAN; its samples are PNGs the train stage reads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import tasks.synth.images as synth
from models.gan_training import GanResult
from tasks.config import SynthConfig
from tasks.image_io import load_image
from tasks.image_training import compose_table
from tasks.synthetic_samples import gan_training_rows, read_manifest, synthetic_rows


def _table(tmp_path: Path, n_per_split: dict[str, int]) -> pd.DataFrame:
    """Real PNGs whose grey level encodes their row, so a GAN input can be traced back to its file."""
    rows = []
    i = 0
    for split, n in n_per_split.items():
        for j in range(n):
            label = j % 2
            path = tmp_path / f"{split}_{j:03d}.png"
            img = np.full((20, 20), 10 + 3 * i, dtype=np.uint8)
            img[5:15, 5:15] = 250 if label else 0
            cv2.imwrite(str(path), img)
            rows.append(
                {
                    "sample_id": f"s{i}",
                    "path": str(path),
                    "label": label,
                    "split": split,
                    "stratum": "",
                    "group": "",
                    "synthetic": False,
                    "class_name": ["good", "crack"][label],
                    "weight": 1.0,
                    "grey": True,
                }
            )
            i += 1
    return pd.DataFrame(rows)


def test_gan_training_rows_are_real_train_rows_only(tmp_path: Path) -> None:
    table = _table(tmp_path, {"train": 6, "val": 4, "test": 4})
    table.loc[0, "synthetic"] = True  # an earlier synthetic row must not train a GAN either
    rows = gan_training_rows(table)
    assert set(rows["sample_id"]) == {f"s{i}" for i in range(1, 6)}


def test_no_test_or_val_image_reaches_gan_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "img").mkdir()
    table = _table(tmp_path / "img", {"train": 8, "val": 6, "test": 6})
    seen: list[torch.Tensor] = []

    def capture(gan, x, y, config, **kw) -> GanResult:
        seen.append(x.clone())
        return GanResult(history=[], steps_run=0, resumed_from_step=None, device="cpu", seconds=0.0)

    monkeypatch.setattr(synth, "fit_gan", capture)
    cfg = SynthConfig(enabled=True, model="gan_image_tiny", image_size=16, steps=1, batch_size=4)
    out = tmp_path / "out"
    out.mkdir()
    synth.synthesize_images(table, ["good", "crack"], cfg, 0, out, None)
    (x,) = seen

    def as_gan_input(path: str) -> torch.Tensor:
        return torch.from_numpy(load_image(path, 16, 1).transpose(2, 0, 1) * 2.0 - 1.0)

    fed = {tuple(t.flatten().tolist()) for t in x}
    for _, row in table.iterrows():
        present = tuple(as_gan_input(row["path"]).flatten().tolist()) in fed
        assert present == (row["split"] == "train"), (row["split"], row["path"])


def test_synthesize_writes_readable_pngs_and_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    table = _table(tmp_path / "img", {"train": 12, "val": 4, "test": 4})
    cfg = SynthConfig(enabled=True, model="gan_image_tiny", image_size=16, steps=3, batch_size=4, ratio=1.5)
    out = tmp_path / "out"
    out.mkdir()
    summary = synth.synthesize_images(table, ["good", "crack"], cfg, 0, out, tmp_path / "ckpt")
    assert summary["generated_by_class"] == {"good": 9, "crack": 9}  # 1.5 x 6 real train images per class
    manifest = read_manifest(out)
    assert len(manifest) == 18 and manifest["synthetic"].all() and (manifest["split"] == "train").all()
    for path in manifest["path"]:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (16, 16) and img.dtype == np.uint8
    grid = cv2.imread(str(out / "grid.png"), cv2.IMREAD_UNCHANGED)
    assert grid.shape == (2 * 16, 8 * 16)
    assert (tmp_path / "ckpt" / "last.pt").is_file()


def test_one_class_train_split_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    table = _table(tmp_path / "img", {"train": 6, "test": 2})
    table.loc[table["split"] == "train", "label"] = 0
    with pytest.raises(synth.StageError, match="only class 'good'"):
        synth.synthesize_images(
            table, ["good", "crack"], SynthConfig(model="gan_image_tiny", image_size=16), 0, tmp_path, None
        )


def test_synthetic_rows_minority_and_compose_table(tmp_path: Path) -> None:
    manifest = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "path": ["x", "y", "z"],
            "label": [0, 1, 1],
            "class_name": ["good", "crack", "crack"],
            "split": "train",
            "stratum": "",
            "group": "synthetic",
            "synthetic": True,
        }
    )
    real = np.array([0, 0, 0, 1])
    minority = synthetic_rows(manifest, real, "minority", 0.5)
    assert list(minority["sample_id"]) == ["b", "c"] and (minority["weight"] == 0.5).all()
    assert len(synthetic_rows(manifest, real, "all", 1.0)) == 3

    (tmp_path / "img").mkdir()
    table = _table(tmp_path / "img", {"train": 4, "val": 2, "test": 2})
    both = compose_table(table, minority, synthetic_only=False)
    assert len(both) == 10 and both["synthetic"].sum() == 2
    only = compose_table(table, minority, synthetic_only=True)
    assert set(only.loc[only["split"] == "train", "sample_id"]) == {"b", "c"}
    assert (only["split"] == "test").sum() == 2 and (only["split"] == "val").sum() == 2
