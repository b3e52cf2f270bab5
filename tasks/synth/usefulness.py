"""Is the synthetic data any good? Measures shared by the image and EEG synth stages.

All of them work on embeddings: the pre-logit features of vigil's own trained classifier (``forward_head(...,
pre_logits=True)``), because Inception weights (FID) cannot be downloaded here and a classifier trained on this
very data set is the feature space in which "looks like a defect" is defined. They are pure numpy / scikit-learn
functions so the tests can feed them hand-made point clouds.

- :func:`c2st_accuracy`: a classifier two-sample test (Lopez-Paz & Oquab, 2017): cross-validated accuracy of a
  logistic regression telling real from synthetic; 0.5 means the two sets are indistinguishable in this space.
  :func:`c2st_with_reference` runs it with the same class mix on both sides (a GAN's class mix is not the real
  one) and beside a real-vs-real reference (validation vs train) on the same scale.
- :func:`nn_copy_rate`: memorisation check. A synthetic sample is a likely copy when its nearest real training
  sample is at most as far as the 1st percentile of the distances between distinct real samples (exact real
  duplicates collapsed, so the threshold never drops to 0); :func:`synthetic_measures` runs it on the features
  and on the raw pixels or signal samples.
- :func:`frechet_distance`: the FID formula (Heusel et al., 2017) on vigil's own features, *not* comparable to
  published FIDs.
- :func:`gain_summary`: the paired real-only vs real + synthetic comparison over seeds, with
  :func:`paired_bootstrap_gain`'s interval over the test items when the arms' predictions are at hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tasks.metrics import bootstrap_indices, percentile_interval, resampled_balanced_accuracy


def _as_2d(name: str, x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or len(arr) == 0:
        raise ValueError(f"{name}: expected a non-empty (n_samples, n_features) array, got shape {arr.shape}")
    return arr


def c2st_accuracy(real: np.ndarray, synthetic: np.ndarray, seed: int, folds: int = 5) -> float:
    """Cross-validated accuracy of a linear classifier separating real from synthetic embeddings.

    The larger set is subsampled (seeded) to the size of the smaller one, so chance is exactly 0.5 and a set
    twice as large cannot win by predicting its own label.

    Args:
        real: ``(n_real, d)`` embeddings of real training samples.
        synthetic: ``(n_synth, d)`` embeddings of generated samples.
        seed: Seeds the subsample and the fold assignment.
        folds: Stratified folds; lowered to what the smaller set allows (at least 2).

    Returns:
        Mean held-out accuracy in [0, 1]; 0.5 = indistinguishable, 1.0 = trivially told apart.
    """
    real = _as_2d("real", real)
    synthetic = _as_2d("synthetic", synthetic)
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic))
    if n < 2:
        raise ValueError(f"c2st needs at least 2 real and 2 synthetic samples, got {len(real)} and {len(synthetic)}")
    r = real[rng.choice(len(real), n, replace=False)]
    s = synthetic[rng.choice(len(synthetic), n, replace=False)]
    x = np.concatenate([r, s])
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    cv = StratifiedKFold(n_splits=max(2, min(folds, n)), shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return float(np.mean(cross_val_score(clf, x, y, cv=cv, scoring="accuracy")))


def _distinct(name: str, x: np.ndarray) -> np.ndarray:
    distinct = np.unique(_as_2d(name, x), axis=0)
    if len(distinct) < 2:
        raise ValueError(f"{name}: the copy check needs at least 2 distinct real samples, got {len(distinct)}")
    return distinct


def nn_copy_rate(real: np.ndarray, synthetic: np.ndarray, percentile: float = 1.0) -> tuple[float, float]:
    """Fraction of synthetic samples at most as far from a real training sample as the closest real pairs are.

    The threshold is the ``percentile`` of the nearest-neighbour distances among the *distinct* real samples:
    exact duplicates in the real set are collapsed first, because with 1 % of real rows duplicated the 1st
    percentile would be 0 and no copy could ever be found. A synthetic sample counts as a likely copy when its
    distance to the nearest real sample is ``<=`` the threshold, so an exact copy (distance 0) always counts.

    Args:
        real: ``(n_real, d)`` features of the GAN's real training samples (at least 2 distinct).
        synthetic: ``(n_synth, d)`` features of generated samples.
        percentile: Percentile (0-100) of the real-to-real nearest-neighbour distances used as the threshold.

    Returns:
        ``(rate, threshold)``: the fraction in [0, 1] and the Euclidean distance threshold.
    """
    distinct = _distinct("real", real)
    synthetic = _as_2d("synthetic", synthetic)
    nn = NearestNeighbors(n_neighbors=2).fit(distinct)
    rr, _ = nn.kneighbors(distinct)  # column 0 is the sample itself; column 1 > 0 as the rows are distinct
    threshold = float(np.percentile(rr[:, 1], percentile))
    sr, _ = nn.kneighbors(synthetic, n_neighbors=1)
    return float(np.mean(sr[:, 0] <= threshold)), threshold


def copy_check(real: np.ndarray, synthetic: np.ndarray, percentile: float = 1.0) -> dict[str, Any]:
    """:func:`nn_copy_rate` with what a reader needs to trust it: the rule, the threshold, the real set's exact
    duplicates (collapsed before the threshold) and the synthetic samples that are exact copies of a real one."""
    real = _as_2d("real", real)
    synthetic = _as_2d("synthetic", synthetic)
    rate, threshold = nn_copy_rate(real, synthetic, percentile)
    distinct = np.unique(real, axis=0)
    nearest, _ = NearestNeighbors(n_neighbors=1).fit(distinct).kneighbors(synthetic)
    return {
        "rate": rate,
        "threshold": threshold,
        "rule": f"nearest real distance <= the {percentile:g}th percentile of distinct real-to-real distances",
        "real_exact_duplicates": int(len(real) - len(distinct)),
        "synthetic_exact_copies": int(np.sum(nearest[:, 0] == 0.0)),
    }


# ------------------------------------------------------------------------------------- C2ST with a matched class mix
def matched_counts(*label_sets: np.ndarray, minimum: int = 2) -> dict[int, int]:
    """Per class, the smallest count over the label sets; classes with fewer than ``minimum`` in any set are left out.

    Drawing these many samples of each class from every set gives all sets the same class mix, so a two-sample
    test cannot separate them by class alone (an EEG GAN makes equal numbers per class while real windows are
    ~3 % ictal: identical class-conditional distributions would still score 0.60-0.64 unmatched).
    """
    sets = [np.asarray(y, dtype=np.int64) for y in label_sets]
    classes = sorted(set.intersection(*(set(np.unique(y).tolist()) for y in sets))) if sets else []
    counts = {c: min(int(np.sum(y == c)) for y in sets) for c in classes}
    return {c: n for c, n in counts.items() if n >= minimum}


def _draw(x: np.ndarray, y: np.ndarray, counts: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``counts[c]`` rows of each class ``c``, drawn without replacement: ``(x, y)``."""
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c, n in counts.items()])
    return x[idx], y[idx]


def c2st_matched(
    a: np.ndarray, a_labels: np.ndarray, b: np.ndarray, b_labels: np.ndarray, counts: dict[int, int], seed: int
) -> tuple[float, dict[int, float]]:
    """C2ST of ``a`` vs ``b`` with ``counts[c]`` samples of class ``c`` from each: overall and per class.

    Returns:
        ``(accuracy, {class: accuracy})``; 0.5 = indistinguishable.
    """
    rng = np.random.default_rng(seed)
    xa, ya = _draw(_as_2d("a", a), np.asarray(a_labels), counts, rng)
    xb, yb = _draw(_as_2d("b", b), np.asarray(b_labels), counts, rng)
    overall = c2st_accuracy(xa, xb, seed=seed)
    return overall, {c: c2st_accuracy(xa[ya == c], xb[yb == c], seed=seed) for c in counts}


def c2st_with_reference(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    class_names: list[str] | tuple[str, ...],
    seed: int,
) -> dict[str, Any]:
    """Real (the GAN's training samples) vs synthetic, beside real vs real (validation vs train), on one scale.

    Both tests draw the same number of samples of each class (:func:`matched_counts` over the three sets), so the
    class mix cannot be told apart and the two accuracies differ only by what separates the sets; a class the
    validation samples lack is tested against the synthetic ones alone (``c2st_reference_classes`` lists the
    classes the reference covers). The reference
    says how far apart two *real* sets are in this feature space: recording or patient shift, and the embedder's
    memory of its own training samples (the features come from a classifier trained on the train split, so train
    samples sit where it fit them). A synthetic C2ST near the reference is as real as another real split.

    Args:
        train: ``(features, labels)`` of the real training samples.
        val: ``(features, labels)`` of the real validation samples (may be empty: no reference then).
        synthetic: ``(features, labels)`` of the generated samples.
        class_names: Names of the label values, for the per-class entries.
        seed: Seeds the draws and the folds.

    Returns:
        ``c2st_accuracy``, ``c2st_reference`` (None without two validation samples of a shared class),
        ``c2st_by_class`` (per class name: ``synthetic`` and ``reference``), ``c2st_per_class_n`` and
        ``c2st_reference_classes``.
    """
    (ft, yt), (fv, yv), (fs, ys) = train, val, synthetic
    shared = matched_counts(yt, yv, ys) if len(yv) else {}
    # a class the validation split lacks (EEG validation recordings without a seizure) is still tested, without
    # a reference of its own
    counts = shared | {c: n for c, n in matched_counts(yt, ys).items() if c not in shared}
    if not counts:
        raise ValueError("c2st needs at least 2 real and 2 synthetic samples of one class")
    reference, ref_by = c2st_matched(fv, yv, ft, yt, shared, seed) if shared else (None, {})
    accuracy, by_class = c2st_matched(fs, ys, ft, yt, counts, seed)
    return {
        "c2st_accuracy": accuracy,
        "c2st_reference": reference,
        "c2st_by_class": {
            class_names[c]: {"synthetic": by_class[c], "reference": ref_by.get(c)} for c in sorted(counts)
        },
        "c2st_per_class_n": {class_names[c]: n for c, n in sorted(counts.items())},
        "c2st_reference_classes": [class_names[c] for c in sorted(shared)],
    }


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (FID's formula, vigil's features)."""
    a = _as_2d("a", a)
    b = _as_2d("b", b)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # numerical noise of sqrtm on near-singular products
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


@dataclass(frozen=True)
class ArmScore:
    """One arm's test score, with its per-item labels and predictions when the arm has them (image arms do), so
    the gain's interval can resample the test items."""

    value: float
    y_true: np.ndarray | None = None
    y_pred: np.ndarray | None = None


def paired_bootstrap_gain(
    y_true: np.ndarray,
    real_preds: list[np.ndarray],
    synth_preds: list[np.ndarray],
    seed: int,
    n_boot: int = 2000,
    level: float = 0.95,
) -> list[float]:
    """Percentile interval of the mean (over seeds) balanced-accuracy gain, resampling the test items.

    Every arm predicted the same test items, so one resample of those items is applied to all of them (a paired
    bootstrap): the interval covers the test set's sampling noise, which the seed-to-seed sd does not, and which
    is all there is when the arms do not depend on the seed (a frozen-feature probe).
    """
    y = np.asarray(y_true)
    if not real_preds or len(real_preds) != len(synth_preds):
        raise ValueError(f"paired_bootstrap_gain needs one prediction per seed in each arm; got {len(real_preds)} "
                         f"and {len(synth_preds)}")  # fmt: skip
    for pred in (*real_preds, *synth_preds):
        if np.asarray(pred).shape != y.shape:
            raise ValueError(
                f"paired_bootstrap_gain: predictions of shape {np.asarray(pred).shape} for {y.shape} items"
            )
    idx = bootstrap_indices(len(y), n_boot, seed)  # one resample of the items for every arm: paired
    n_classes = int(y.max()) + 1 if len(y) else 0
    gains = np.mean(
        [
            resampled_balanced_accuracy(y, synth, idx, n_classes) - resampled_balanced_accuracy(y, real, idx, n_classes)
            for real, synth in zip(real_preds, synth_preds, strict=True)
        ],
        axis=0,
    )
    return percentile_interval(gains, level)


def gain_summary(
    real_only: list[float], with_synthetic: list[float], seeds: list[int], ci95: list[float] | None = None
) -> dict[str, Any]:
    """Paired gain of adding synthetic data, per seed and as mean ± sd, with a sentence for the report.

    A seed's gain is its real + synthetic score minus its real-only score (same split, same seed, same recipe).
    The verdict says "helped" or "hurt" only when the mean gain exceeds the seed-to-seed standard deviation
    (with a handful of seeds anything smaller is indistinguishable from training noise) and, when ``ci95`` (the
    test-item bootstrap interval of :func:`paired_bootstrap_gain`) is given, that interval excludes 0: arms that do
    not depend on the seed have sd 0, and only the test set's noise is left to judge them by.
    """
    if not (len(real_only) == len(with_synthetic) == len(seeds)) or not seeds:
        raise ValueError(
            f"gain_summary needs one score per seed in each arm; got {len(real_only)}, {len(with_synthetic)} "
            f"scores for {len(seeds)} seeds"
        )
    gains = np.asarray(with_synthetic, dtype=float) - np.asarray(real_only, dtype=float)
    mean = float(gains.mean())
    sd = float(gains.std(ddof=1)) if len(gains) > 1 else 0.0
    points = 100.0 * mean
    spread = f"sd {100 * sd:.1f} over {len(gains)} seed{'s' if len(gains) != 1 else ''}"
    if len(gains) > 1 and sd == 0.0:
        spread += " (the arms do not vary with the seed)"
    if ci95 is not None:
        spread += f"; 95 % interval over test images [{100 * ci95[0]:+.1f}, {100 * ci95[1]:+.1f}]"
    helped = len(gains) > 1 and mean > sd and (ci95 is None or ci95[0] > 0)
    hurt = len(gains) > 1 and -mean > sd and (ci95 is None or ci95[1] < 0)
    if helped:
        verdict = f"synthetic data helped by {points:.1f} points ({spread})"
    elif hurt:
        verdict = f"synthetic data hurt by {-points:.1f} points ({spread})"
    else:
        verdict = f"synthetic data did not help measurably: {points:+.1f} points, {spread}"
    return {
        "gain_mean": mean,
        "gain_sd": sd,
        "gain_ci95": ci95,
        "n_seeds": len(seeds),
        "per_seed": [
            {"seed": int(s), "real_only": float(r), "real_plus_synthetic": float(w), "gain": float(g)}
            for s, r, w, g in zip(seeds, real_only, with_synthetic, gains, strict=True)
        ],
        "verdict": verdict,
    }


def paired_gain(score: Callable[[int, bool], float | ArmScore], seeds: list[int]) -> dict[str, Any]:
    """Run both arms per seed (``score(seed, with_synthetic)`` trains and scores one) and summarise the gain.

    When every arm returns an :class:`ArmScore` with its test predictions, the gain also gets a paired bootstrap
    interval over the test items (seeded by the first seed).
    """
    real_only: list[ArmScore] = []
    with_synthetic: list[ArmScore] = []
    for s in seeds:
        real_only.append(_as_arm_score(score(s, False)))
        with_synthetic.append(_as_arm_score(score(s, True)))
    arms = real_only + with_synthetic
    ci95 = None
    if all(a.y_pred is not None and a.y_true is not None for a in arms):
        y_true = arms[0].y_true
        if any(not np.array_equal(a.y_true, y_true) for a in arms):
            raise ValueError("paired_gain: the arms were scored on different test items; the gain is not paired")
        ci95 = paired_bootstrap_gain(
            y_true, [a.y_pred for a in real_only], [a.y_pred for a in with_synthetic], seed=seeds[0]
        )
    return gain_summary([a.value for a in real_only], [a.value for a in with_synthetic], seeds, ci95)


def _as_arm_score(result: float | ArmScore) -> ArmScore:
    return result if isinstance(result, ArmScore) else ArmScore(float(result))


def synthetic_measures(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    raw: tuple[np.ndarray, np.ndarray],
    class_names: list[str] | tuple[str, ...],
    seed: int,
) -> dict[str, Any]:
    """Every distribution measure of the synthetic samples, under their metrics.json names.

    Args:
        train: ``(features, labels)`` of the GAN's real training samples, in the real-only classifier's space.
        val: ``(features, labels)`` of real validation samples, same space (the C2ST reference).
        synthetic: ``(features, labels)`` of the generated samples, same space.
        raw: ``(real, synthetic)`` inputs flattened to ``(n, d)`` (pixels, signal samples): the copy check again
            where no learned feature can hide a copy.
        class_names: Names of the label values.
        seed: Seeds every draw.
    """
    feats = copy_check(train[0], synthetic[0])
    pixels = copy_check(raw[0], raw[1])
    return {
        **c2st_with_reference(train, val, synthetic, class_names, seed),
        "nn_copy_rate": feats["rate"],
        "nn_copy_threshold": feats["threshold"],
        "nn_copy_rule": feats["rule"],
        "real_exact_duplicates": feats["real_exact_duplicates"],
        "synthetic_exact_copies": feats["synthetic_exact_copies"],
        "nn_copy_rate_raw": pixels["rate"],
        "nn_copy_threshold_raw": pixels["threshold"],
        "synthetic_exact_copies_raw": pixels["synthetic_exact_copies"],
        "frechet_distance_vigil_features": frechet_distance(train[0], synthetic[0]),
    }
