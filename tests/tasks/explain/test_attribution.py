"""The explain stage's attribution checks on cases small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from models.registry import create_model
from tasks.explain.attribution import (
    curve_auc,
    deletion_curve,
    gradcam,
    gradcam_layer,
    last_block_cascade,
    lime,
    module_name,
    randomised_copy,
    rank_correlation,
    removal_order,
    superpixels,
)


def test_rank_correlation_of_absolute_and_signed_maps_by_hand() -> None:
    # |a| ranks 1 2 3 4, |b| = 10 30 20 40 ranks 1 3 2 4: sum d^2 = 2, rho = 1 - 6*2/(4*15) = 0.8.
    a = np.array([[1.0, -2.0], [3.0, -4.0]])
    b = np.array([[-10.0, 30.0], [20.0, -40.0]])
    assert rank_correlation(a, b) == pytest.approx(0.8)
    # Signed: a ranks 3 2 4 1, b ranks 2 4 3 1: sum d^2 = 6, rho = 1 - 36/60 = 0.4.
    assert rank_correlation(a, b, absolute=False) == pytest.approx(0.4)
    assert math.isnan(rank_correlation(np.zeros((2, 2)), b))  # a constant map ranks nothing


def test_deletion_auc_by_hand_and_against_other_orders() -> None:
    w = torch.tensor([0.4, 0.3, 0.2, 0.1])  # the score: a weighted sum of the 2 x 2 image's pixels

    def score(batch: torch.Tensor) -> torch.Tensor:
        return batch.reshape(len(batch), -1) @ w

    x = torch.ones(1, 2, 2)
    best = removal_order(w.numpy().reshape(2, 2), np.random.default_rng(0))
    assert best.tolist() == [0, 1, 2, 3]
    curve = deletion_curve(score, x, best, steps=4)
    assert curve.tolist() == pytest.approx([1.0, 0.6, 0.3, 0.1, 0.0])
    assert curve_auc(curve) == pytest.approx(0.25 * (0.5 * 1.0 + 0.6 + 0.3 + 0.1 + 0.5 * 0.0))  # 0.375
    worst = curve_auc(deletion_curve(score, x, np.array([3, 2, 1, 0]), steps=4))
    assert worst == pytest.approx(0.625)
    # A random order averages 0.5 here (every pixel equally likely at every step): the map's order beats it.
    rng = np.random.default_rng(0)
    random = np.mean([curve_auc(deletion_curve(score, x, rng.permutation(4), steps=4)) for _ in range(200)])
    assert 0.45 < random < 0.55


def test_ties_are_broken_by_the_seed_not_by_position() -> None:
    flat = np.zeros((4, 4))
    orders = {tuple(removal_order(flat, np.random.default_rng(s))) for s in range(5)}
    assert len(orders) > 1
    same = [removal_order(flat, np.random.default_rng(3)).tolist() for _ in range(2)]
    assert same[0] == same[1]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet_tiny", ["stages.2.0", "head"]),
        ("squeezenet_tiny", ["features.5", "head"]),
        ("efficientnet_lite0", ["_blocks.15", "_conv_head", "_bn1", "_head_act", "head"]),
    ],
)
def test_last_block_is_found_without_knowing_the_architecture(name: str, expected: list[str]) -> None:
    model = create_model(name, in_chans=1, num_classes=2)
    assert [module_name(model, m) for m in last_block_cascade(model)] == expected


def test_a_plain_stack_of_convs_falls_back_to_its_last_conv() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert [module_name(model, m) for m in last_block_cascade(model)] == ["2", "3", "4"]
    with pytest.raises(ValueError, match="no Conv2d"):
        last_block_cascade(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_randomised_copy_changes_the_last_block_only_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = create_model("resnet_tiny", in_chans=1, num_classes=2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin, names = randomised_copy(model, seed=1)
    assert names == ["stages.2.0", "head"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    twin_state = twin.state_dict()
    assert torch.equal(twin_state["stem.conv.weight"], before["stem.conv.weight"])
    assert not torch.equal(twin_state["stages.2.0.conv1.conv.weight"], before["stages.2.0.conv1.conv.weight"])
    again, _ = randomised_copy(model, seed=1)
    assert torch.equal(again.state_dict()["head.fc.weight"], twin_state["head.fc.weight"])  # seeded


def test_gradcam_and_lime_maps_have_the_right_shapes() -> None:
    torch.manual_seed(0)
    model = create_model("resnet_tiny", in_chans=1, num_classes=2).eval()
    x = torch.randn(2, 1, 32, 32)
    maps = gradcam(model, gradcam_layer(model), x, torch.tensor([0, 1]), relu=True)
    assert maps.shape == (2, 4, 4) and (maps >= 0).all()
    segments = superpixels(np.random.default_rng(0).random((32, 32, 1)).astype(np.float32), 16)
    assert segments.shape == (32, 32) and len(np.unique(segments)) >= 4
    weights = lime(model, x[:1], 1, segments, n_samples=20, seed=0)
    assert weights.shape == (32, 32) and np.isfinite(weights).all()
    assert np.array_equal(weights, lime(model, x[:1], 1, segments, n_samples=20, seed=0))
