"""The usefulness measures on point clouds whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from tasks.synth.usefulness import (
    ArmScore,
    c2st_accuracy,
    c2st_with_reference,
    copy_check,
    frechet_distance,
    gain_summary,
    nn_copy_rate,
    paired_bootstrap_gain,
    paired_gain,
)


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


def test_copy_rate_stays_sighted_when_real_rows_repeat() -> None:
    """Issue #12: with >= 1 % of real rows duplicated the old threshold was 0 and ``<`` never fired."""
    real = np.concatenate([_cloud(0), _cloud(0)[:10]])  # 10 exact duplicates among 310 rows (3 %)
    copies = np.concatenate([real[:20], real[20:40] + 1e-4])  # 20 exact copies, 20 near copies
    rate, threshold = nn_copy_rate(real, copies)
    assert threshold > 0 and rate == 1.0
    check = copy_check(real, np.concatenate([copies, _cloud(2, n=40)]))
    assert check["real_exact_duplicates"] == 10 and check["synthetic_exact_copies"] == 20
    assert check["rate"] == pytest.approx(0.5, abs=0.03) and "<=" in check["rule"]


def _classes(seed: int, n0: int, n1: int, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Two classes far apart: class 1 shifted by 3 in every feature."""
    x = np.concatenate([_cloud(seed, n0, d), _cloud(seed + 100, n1, d, shift=3.0)])
    return x, np.r_[np.zeros(n0, dtype=int), np.ones(n1, dtype=int)]


def test_c2st_matches_the_class_mix_and_prints_a_real_reference() -> None:
    """Identical class-conditional distributions, different class mix (3 % vs 50 % class 1): the plain C2ST tells
    them apart by class mix alone; the matched one, and its validation-vs-train reference, stay at chance."""
    train, val, synth = _classes(0, 970, 30), _classes(1, 485, 15), _classes(2, 200, 200)
    assert c2st_accuracy(train[0], synth[0], seed=0) > 0.7  # the confound
    out = c2st_with_reference(train, val, synth, ("interictal", "ictal"), seed=0)
    assert out["c2st_per_class_n"] == {"interictal": 200, "ictal": 15}
    assert 0.35 < out["c2st_accuracy"] < 0.65 and 0.35 < out["c2st_reference"] < 0.65
    assert set(out["c2st_by_class"]["ictal"]) == {"synthetic", "reference"}
    bad = (synth[0] + 1.5, synth[1])  # a GAN whose samples sit 1.5 away from every real class
    assert c2st_with_reference(train, val, bad, ("interictal", "ictal"), seed=0)["c2st_accuracy"] > 0.9
    no_val = c2st_with_reference(train, (np.zeros((0, 6)), np.zeros(0, int)), synth, ("a", "b"), seed=0)
    assert no_val["c2st_reference"] is None and no_val["c2st_per_class_n"] == {"a": 200, "b": 30}
    no_ictal = c2st_with_reference(train, (val[0][:400], val[1][:400]), synth, ("a", "b"), seed=0)
    assert no_ictal["c2st_reference_classes"] == ["a"] and no_ictal["c2st_by_class"]["b"]["reference"] is None
    assert no_ictal["c2st_per_class_n"] == {"a": 200, "b": 30}


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


def _decisions(rng: np.random.Generator, y: np.ndarray, accuracy: float) -> np.ndarray:
    """Binary decisions that are right on about ``accuracy`` of the items."""
    return np.where(rng.random(len(y)) < accuracy, y, 1 - y)


def test_paired_bootstrap_gain_is_zero_for_one_arm_and_excludes_zero_for_a_real_gain() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(int)
    base = _decisions(rng, y, 0.75)
    assert paired_bootstrap_gain(y, [base], [base.copy()], seed=0) == [0.0, 0.0]
    better = np.where(rng.random(len(y)) < 0.5, y, base)  # half of the errors fixed
    lo, hi = paired_bootstrap_gain(y, [base, base], [better, better], seed=0)
    assert 0 < lo < hi
    truth = balanced_accuracy_score(y, better) - balanced_accuracy_score(y, base)
    assert lo < truth < hi
    with pytest.raises(ValueError, match="predictions of shape"):
        paired_bootstrap_gain(y, [base], [better[:10]], seed=0)


def test_arms_that_ignore_the_seed_need_the_test_interval_to_be_called() -> None:
    """A frozen-feature probe gives one gain at every seed (sd 0): the verdict rests on the test-image interval."""
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.3).astype(int)
    real = _decisions(rng, y, 0.80)
    slightly = np.where(np.arange(len(y)) == np.flatnonzero(real != y)[0], y, real)  # one error fixed

    def score(seed: int, with_synthetic: bool) -> ArmScore:
        pred = slightly if with_synthetic else real
        return ArmScore(float(balanced_accuracy_score(y, pred)), y, pred)

    tiny = paired_gain(score, [0, 1, 2])
    assert tiny["gain_sd"] == 0.0 and tiny["gain_mean"] > 0 and tiny["gain_ci95"][0] <= 0 <= tiny["gain_ci95"][1]
    assert tiny["verdict"].startswith("synthetic data did not help measurably")
    assert "do not vary with the seed" in tiny["verdict"] and "interval over test images" in tiny["verdict"]
    much = gain_summary([0.70] * 3, [0.60] * 3, [0, 1, 2], ci95=[-0.14, -0.06])
    assert much["verdict"].startswith("synthetic data hurt by 10.0 points")
    plain = paired_gain(lambda seed, syn: 0.7 + 0.1 * syn + 0.01 * seed, [0, 1])  # floats: no interval
    assert plain["gain_ci95"] is None and plain["verdict"].startswith("synthetic data helped")

    def unpaired(seed: int, with_synthetic: bool) -> ArmScore:
        return ArmScore(0.7, y[::-1] if with_synthetic else y, real)

    with pytest.raises(ValueError, match="different test items"):
        paired_gain(unpaired, [0])


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="synthetic"):
        c2st_accuracy(_cloud(0), np.zeros(5), seed=0)


def test_gain_recipe_swaps_in_the_named_cheaper_model_and_drops_the_headline_kwargs() -> None:
    from tasks.config import SynthConfig, TrainConfig
    from tasks.synth.usefulness_images import gain_recipe

    headline = TrainConfig(
        model="resnet_tiny", model_kwargs={"width": 8}, image_size=128, epochs=6, lr=1e-3, init_from="/w/tiny.pt"
    )
    same = gain_recipe(headline, SynthConfig(gain_epochs=15, gain_image_size=64))
    assert (same.model, same.model_kwargs, same.epochs, same.image_size, same.lr) == (
        "resnet_tiny",
        {"width": 8},
        15,
        64,
        1e-3,
    )
    cheap = gain_recipe(headline, SynthConfig(gain_model="efficientnet_lite0+svm", gain_image_size=64))
    assert (cheap.model, cheap.model_kwargs, cheap.epochs, cheap.image_size) == ("efficientnet_lite0+svm", {}, 6, 64)
    assert same.init_from == "/w/tiny.pt" and cheap.init_from is None  # the headline's weights fit only its model
    with pytest.raises(ValueError, match="unknown synth.gain_model 'resnet_huge'"):
        SynthConfig(gain_model="resnet_huge")
