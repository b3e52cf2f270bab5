"""Labels and splits of inspection images: the ELPV protocol, named classes, groups kept whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.config import LabelConfig
from tasks.ingest.images import read_elpv
from tasks.label.images import LabelError, make_splits


def _records(classes: dict[str, int], groups: bool = False) -> pd.DataFrame:
    rows = []
    for name, n in classes.items():
        for i in range(n):
            rows.append(
                {
                    "sample_id": f"{name}/{i}",
                    "path": f"/x/{name}/{i}.png",
                    "label_raw": name,
                    "stratum": "",
                    "group": f"part{i // 3}" if groups else "",
                }
            )
    return pd.DataFrame(rows)


def test_elpv_protocol_gives_656_test_images_stratified_by_module_type() -> None:
    records = read_elpv().records
    lab = make_splits(records, "elpv", LabelConfig(), seed=0)
    t = lab.table
    assert (t["split"] == "test").sum() == 656
    assert lab.class_names == ["functional", "defective"]
    prob = records.set_index("sample_id").loc[t["sample_id"], "label_raw"].astype(float).to_numpy()
    assert ((prob >= 0.5).astype(int) == t["label"].to_numpy()).all()
    for part in ("train", "val", "test"):
        sub = t[t["split"] == part]
        assert set(sub["stratum"]) == {"mono", "poly"}
        assert abs(sub["label"].mean() - t["label"].mean()) < 0.03
    # annotation confidence: the 1/3 and 2/3 grades get a third of the weight
    assert set(np.round(t["weight"], 3)) == {0.333, 1.0}
    again = make_splits(records, "elpv", LabelConfig(), seed=0).table
    other = make_splits(records, "elpv", LabelConfig(), seed=1).table
    assert again.equals(t) and not other["split"].equals(t["split"])


def test_elpv_multiclass_keeps_four_probability_classes() -> None:
    lab = make_splits(read_elpv().records, "elpv", LabelConfig(mode="multiclass"), seed=0)
    assert len(lab.class_names) == 4
    assert sorted(lab.table["label"].unique()) == [0, 1, 2, 3]


def test_binary_folder_uses_the_negative_class_and_hint_without_one() -> None:
    lab = make_splits(_records({"good": 12, "crack": 6, "stain": 6}), "folder", LabelConfig(), seed=0)
    assert lab.class_names == ["good", "defective"]
    assert lab.table.loc[lab.table["class_name"] == "good", "label"].eq(0).all()
    with pytest.raises(LabelError, match="label.negative"):
        make_splits(_records({"crack": 6, "stain": 6}), "folder", LabelConfig(), seed=0)
    named = make_splits(_records({"crack": 6, "stain": 6}), "folder", LabelConfig(negative="stain"), seed=0)
    assert named.class_names == ["stain", "crack"]
    multi = make_splits(_records({"good": 9, "crack": 9, "stain": 9}), "folder", LabelConfig(mode="multiclass"), 0)
    assert multi.class_names == ["good", "crack", "stain"]


def test_a_missing_class_stops_with_a_sentence() -> None:
    with pytest.raises(LabelError, match="fewer than 3 usable images"):
        make_splits(_records({"good": 12, "crack": 1}), "folder", LabelConfig(), seed=0)
    with pytest.raises(LabelError, match="no usable images"):
        make_splits(
            _records({}).reindex(columns=["sample_id", "path", "label_raw", "stratum", "group"]),
            "folder",
            LabelConfig(),
            0,
        )


def test_groups_never_straddle_train_and_test() -> None:
    lab = make_splits(_records({"good": 60, "crack": 60}, groups=True), "manifest", LabelConfig(), seed=3)
    t = lab.table
    by_split = {s: set(t.loc[t["split"] == s, "group"]) for s in ("train", "val", "test")}
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    assert not by_split["train"] & by_split["val"]
