"""One spelling per class: case/space variants merge, typos are caught, real pairs of classes stay apart."""

from __future__ import annotations

import pytest

from tasks.label.class_names import edit_distance, merge_spellings, near_twin, typo_error


def test_edit_distance_counts_insertions_deletions_substitutions() -> None:
    assert edit_distance("good", "goood") == 1
    assert edit_distance("defective", "defectve") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("goood", "good", 1),
        ("Gooood", "good", None),  # 4-letter names allow 1 edit
        ("scratchs", "Scratches", 1),
        ("scrtches", "scratchs", 2),
        ("defectve", "defective", 1),
        ("defetcive", "Defective", 2),
        ("crack", "cracks", 1),
        ("Class1", "Class2", None),  # differ only in digits
        ("crack", "crack2", None),
        ("type_a", "type_b", None),  # one short token
        ("ok", "nok", None),  # a negating prefix
        ("normal", "abnormal", None),
        ("good", "not good", None),
        ("ok", "ng", None),  # short names: at most 1 edit
        ("good", "bad", None),
        ("Good", " good", None),  # the same class: merged, not a typo
    ],
)
def test_near_twins(a: str, b: str, distance: int | None) -> None:
    assert near_twin(a, b) == distance


def test_merge_keeps_the_most_common_spelling() -> None:
    merged = merge_spellings(["good"] * 2 + ["Good "] * 3 + ["crack"])
    assert merged.mapping == {"good": "Good", "Good ": "Good", "crack": "crack"}
    assert merged.counts == {"Good": 5, "crack": 1}
    assert merged.notes == [
        "class names 'Good ' (3 rows), 'good' (2 rows) differ only in case or surrounding spaces: merged as 'Good' "
        "(5 rows); use one spelling to silence this warning"
    ]
    assert merge_spellings(["a", "b"]).notes == []


def test_typo_rules() -> None:
    assert typo_error({"good": 50, "crack": 45, "cracks": 5}, "good") is not None  # rare near twin (5 %)
    assert typo_error({"good": 50, "crack": 40, "cracks": 10}, "good") is None  # 10 % is not rare
    assert typo_error({"good": 50, "goood": 50}, None) is None  # multiclass, neither is rare
    assert "larger class 'goood'" in typo_error({"good": 5, "goood": 95}, None)
    assert "negative class 'good'" in typo_error({"good": 5, "goood": 95}, "good")
