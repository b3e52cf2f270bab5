"""bench/tta_choice.py: its views are the flips they claim to be, and its decision rule needs more than noise."""

from __future__ import annotations

import torch

from bench.tta_choice import VIEW_SETS, _views, choose


def test_views_are_the_dihedral_flips_of_a_square_batch() -> None:
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(1, 2, 3, 3)
    counts = {name: len(_views(x, name)) for name in VIEW_SETS}
    assert counts == {"none": 1, "hflip": 2, "flip4": 4, "d8": 8}
    d8 = _views(x, "d8")
    assert len({tuple(v.flatten().tolist()) for v in d8}) == 8  # eight distinct views of an asymmetric image
    assert torch.equal(_views(x, "hflip")[1][..., 0], x[..., -1])


def _runs(gains: list[float]) -> dict[str, dict[str, dict[str, float]]]:
    """Three runs where every view set scores like ``none`` except ``d8``, which adds the given gains."""
    runs = {}
    for i, gain in enumerate(gains):
        base = {"val_balanced_accuracy": 0.80 + 0.01 * i, "test_accuracy": 0.8, "test_balanced_accuracy": 0.7}
        runs[f"r{i}"] = {v: dict(base) for v in VIEW_SETS}
        runs[f"r{i}"]["d8"]["val_balanced_accuracy"] += gain
    return runs


def test_a_view_set_is_adopted_only_when_its_validation_gain_beats_its_spread() -> None:
    assert choose(_runs([0.02, 0.03, 0.025]))["adopted"] == "d8"
    noisy = choose(_runs([0.04, -0.03, 0.0]))
    assert noisy["best_on_val"] == "d8" and noisy["adopted"] == "none"
    assert choose(_runs([-0.01, -0.02, 0.0]))["best_on_val"] == "none"
