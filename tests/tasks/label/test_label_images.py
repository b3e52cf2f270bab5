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


def test_case_variants_of_the_negative_class_are_merged_with_a_warning() -> None:
    # the probe: 'Good' became the negative class and the 'good' images were trained as defective
    records = pd.concat([_records({"Good": 8}), _records({"good": 32, "defective": 40})], ignore_index=True)
    lab = make_splits(records, "manifest", LabelConfig(), seed=0)
    t = lab.table
    assert lab.class_names == ["good", "defective"]
    negatives = t[t["label"] == 0]
    assert len(negatives) == 40 and set(negatives["class_name"]) == {"good"}
    assert lab.notes[0] == (
        "class names 'good' (32 rows), 'Good' (8 rows) differ only in case or surrounding spaces: merged as 'good' "
        "(40 rows); use one spelling to silence this warning"
    )
    spaced = make_splits(_records({"good ": 10, "crack": 10}), "folder", LabelConfig(negative="GOOD"), seed=0)
    assert spaced.class_names == ["good", "crack"]


def test_a_likely_typo_stops_the_run_naming_both_spellings_and_counts() -> None:
    with pytest.raises(LabelError) as near_negative:
        make_splits(_records({"good": 30, "goood": 12, "crack": 30}), "folder", LabelConfig(), seed=0)
    assert str(near_negative.value).startswith(
        "class 'goood' (12 images) is 1 edit from the negative class 'good' (30 images) and would be trained as "
        "defective; correct the misspelt labels or folder name"
    )
    with pytest.raises(LabelError) as rare:
        make_splits(_records({"good": 40, "defective": 37, "defectve": 3}), "manifest", LabelConfig(), seed=0)
    assert str(rare.value).startswith(
        "class 'defectve' (3 of 80 images) is 1 edit from the larger class 'defective' (37 images) and looks like "
        "a typo"
    )
    distinct = make_splits(_records({"good": 12, "Class1": 6, "Class2": 6}), "folder", LabelConfig(), seed=0)
    assert distinct.class_names == ["good", "defective"] and not distinct.notes
    ok_nok = make_splits(_records({"OK": 20, "NOK": 3}), "folder", LabelConfig(), seed=0)
    assert ok_nok.class_names == ["OK", "NOK"]


def test_two_or_three_groups_still_split_and_say_how() -> None:
    for n_groups in (2, 3, 5):
        records = _records({"good": 30, "crack": 30})
        records["group"] = [f"wafer{i % n_groups}" for i in range(len(records))]
        lab = make_splits(records, "manifest", LabelConfig(), seed=0)
        t = lab.table
        by_split = {s: set(t.loc[t["split"] == s, "group"]) for s in ("train", "val", "test")}
        assert by_split["test"] and not by_split["test"] & (by_split["train"] | by_split["val"])
        if n_groups < 4:
            assert len(by_split["test"]) == 1
            assert lab.notes[0] == (
                f"only {n_groups} groups for the test split, so it holds one whole group ({1 / n_groups:.0%} of 60 "
                "images instead of 25%): no group is in two splits"
            )
            assert lab.notes[1].startswith(
                f"only {n_groups - 1} group(s) left for the validation split, so it is drawn from the same groups"
            )
        else:  # 3 or 4 groups left for training: validation holds one of them
            assert len(by_split["val"]) == 1 and not by_split["val"] & by_split["train"]
