"""Is the synthetic data any good? Measures shared by the image and EEG synth stages.

All of them work on embeddings: the pre-logit features of vigil's own trained classifier (``forward_head(...,
pre_logits=True)``), because Inception weights (FID) cannot be downloaded here and a classifier trained on this
very data set is the feature space in which "looks like a defect" is defined. They are pure numpy / scikit-learn
functions so the tests can feed them hand-made point clouds.

- :func:`c2st_accuracy`: a classifier two-sample test (Lopez-Paz & Oquab, 2017): cross-validated accuracy of a
  logistic regression telling real from synthetic; 0.5 means the two sets are indistinguishable in this space.
- :func:`nn_copy_rate`: memorisation check. A synthetic sample is a likely copy when its nearest real training
  sample is closer than the 1st percentile of real-to-real nearest-neighbour distances, i.e. closer than almost
  any two distinct real samples are to each other.
- :func:`frechet_distance`: the FID formula (Heusel et al., 2017) on vigil's own features, *not* comparable to
  published FIDs.
- :func:`gain_summary`: the paired real-only vs real + synthetic comparison over seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


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


def nn_copy_rate(real: np.ndarray, synthetic: np.ndarray, percentile: float = 1.0) -> tuple[float, float]:
    """Fraction of synthetic samples closer to a real training sample than real samples are to each other.

    Args:
        real: ``(n_real, d)`` embeddings of the GAN's real training samples (at least 2).
        synthetic: ``(n_synth, d)`` embeddings of generated samples.
        percentile: Percentile (0-100) of the real-to-real nearest-neighbour distances used as the threshold.

    Returns:
        ``(rate, threshold)``: the fraction in [0, 1] and the Euclidean distance threshold.
    """
    real = _as_2d("real", real)
    synthetic = _as_2d("synthetic", synthetic)
    if len(real) < 2:
        raise ValueError(f"nn_copy_rate needs at least 2 real samples, got {len(real)}")
    nn = NearestNeighbors(n_neighbors=2).fit(real)
    rr, _ = nn.kneighbors(real)  # column 0 is the sample itself
    threshold = float(np.percentile(rr[:, 1], percentile))
    sr, _ = nn.kneighbors(synthetic, n_neighbors=1)
    return float(np.mean(sr[:, 0] < threshold)), threshold


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


def gain_summary(real_only: list[float], with_synthetic: list[float], seeds: list[int]) -> dict[str, Any]:
    """Paired gain of adding synthetic data, per seed and as mean ± sd, with a sentence for the report.

    A seed's gain is its real + synthetic score minus its real-only score (same split, same seed, same recipe).
    The verdict says "helped" or "hurt" only when the mean gain exceeds the seed-to-seed standard deviation;
    with a handful of seeds anything smaller is indistinguishable from training noise.
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
    if len(gains) > 1 and mean > sd:
        verdict = f"synthetic data helped by {points:.1f} points (sd {100 * sd:.1f} over {len(gains)} seeds)"
    elif len(gains) > 1 and -mean > sd:
        verdict = f"synthetic data hurt by {-points:.1f} points (sd {100 * sd:.1f} over {len(gains)} seeds)"
    else:
        verdict = (
            f"synthetic data did not help measurably: {points:+.1f} points, sd {100 * sd:.1f} over "
            f"{len(gains)} seed{'s' if len(gains) != 1 else ''}"
        )
    return {
        "gain_mean": mean,
        "gain_sd": sd,
        "n_seeds": len(seeds),
        "per_seed": [
            {"seed": int(s), "real_only": float(r), "real_plus_synthetic": float(w), "gain": float(g)}
            for s, r, w, g in zip(seeds, real_only, with_synthetic, gains, strict=True)
        ],
        "verdict": verdict,
    }


def paired_gain(score: Callable[[int, bool], float], seeds: list[int]) -> dict[str, Any]:
    """Run both arms per seed (``score(seed, with_synthetic)`` trains and scores one) and summarise the gain."""
    real_only: list[float] = []
    with_synthetic: list[float] = []
    for s in seeds:
        real_only.append(score(s, False))
        with_synthetic.append(score(s, True))
    return gain_summary(real_only, with_synthetic, seeds)


def embedding_measures(real: np.ndarray, synthetic: np.ndarray, seed: int) -> dict[str, float]:
    """C2ST accuracy, copy rate (and its threshold) and Fréchet distance of two embedding sets, metrics.json names."""
    copy_rate, copy_threshold = nn_copy_rate(real, synthetic)
    return {
        "c2st_accuracy": c2st_accuracy(real, synthetic, seed=seed),
        "nn_copy_rate": copy_rate,
        "nn_copy_threshold": copy_threshold,
        "frechet_distance_vigil_features": frechet_distance(real, synthetic),
    }
