"""The usefulness measures on point clouds whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.synth.usefulness import c2st_accuracy, frechet_distance, gain_summary, nn_copy_rate


def _cloud(seed: int, n: int = 300, d: int = 8, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, size=(n, d))


def test_c2st_is_chance_for_one_distribution_and_high_for_two() -> None:
    same = c2st_accuracy(_cloud(0), _cloud(1), seed=0)
    apart = c2st_accuracy(_cloud(0), _cloud(1, shift=1.5), seed=0)
    assert 0.4 < same < 0.6
    assert apart > 0.9


def test_c2st_balances_unequal_sets() -> None:
    # 300 real vs 30 synthetic from the same distribution: predicting "real" would score 0.91 without balancing
    assert c2st_accuracy(_cloud(0), _cloud(1, n=30), seed=0) < 0.7


def test_copy_rate_flags_near_copies_and_not_fresh_samples() -> None:
    real = _cloud(0)
    copies = real[:100] + 1e-4
    fresh = _cloud(1, n=100)
    rate_copies, threshold = nn_copy_rate(real, copies)
    rate_fresh, _ = nn_copy_rate(real, fresh)
    assert rate_copies == 1.0 and threshold > 0
    assert rate_fresh <= 0.05


def test_frechet_distance_is_zero_for_one_set_and_the_mean_shift_otherwise() -> None:
    a = _cloud(0, n=2000, d=4)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(16.0, rel=1e-3)  # |(2, 2, 2, 2)|^2, same covariance


def test_gain_summary_verdicts() -> None:
    helped = gain_summary([0.70, 0.72, 0.71], [0.80, 0.81, 0.79], [0, 1, 2])
    assert helped["gain_mean"] == pytest.approx(0.09, abs=1e-9)
    assert helped["verdict"].startswith("synthetic data helped by 9.0 points")
    noisy = gain_summary([0.70, 0.80, 0.75], [0.78, 0.72, 0.76], [0, 1, 2])
    assert "did not help measurably" in noisy["verdict"]
    hurt = gain_summary([0.80, 0.81, 0.79], [0.70, 0.72, 0.71], [0, 1, 2])
    assert hurt["verdict"].startswith("synthetic data hurt")
    assert [r["seed"] for r in helped["per_seed"]] == [0, 1, 2]
    with pytest.raises(ValueError, match="one score per seed"):
        gain_summary([0.5], [0.5, 0.6], [0, 1])


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="synthetic"):
        c2st_accuracy(_cloud(0), np.zeros(5), seed=0)
