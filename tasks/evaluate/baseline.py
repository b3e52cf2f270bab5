"""The classical baseline: hand-crafted texture features + an RBF support vector machine.

It answers "does deep learning beat classical machine learning here?" on the same splits as the CNN. Deitsch et al.
(2019, "Automatic classification of defective photovoltaic module cells in electroluminescence images", Solar
Energy 185) report 82.44 % accuracy for their SVM on ELPV with a 75/25 split; this one is a lighter variant of the
same idea (global HOG + LBP + intensity statistics instead of dense KAZE/VGG descriptors with a bag-of-words).

The features are computed on a fixed working size so every image gives a vector of the same length, whatever its
original size, dtype or channel count; the SVM is tuned by stratified cross-validation on the training split only,
so the validation and test splits stay untouched for threshold choice and reporting.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from joblib import Parallel, delayed
from skimage.feature import hog, local_binary_pattern
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

WORK_SIZE = 128
"""Side of the square working image in pixels.

HOG's length depends on the image size, and an SVM needs fixed-length vectors, so every image is resized to
``WORK_SIZE`` × ``WORK_SIZE`` first. On ELPV (300 px cells, stratified 75/25 split, 3-fold CV on the training part
only) 192 px scored lower than 128 px and took longer, and 32 px HOG cells (a 4 × 4 grid) beat 16 and 8 px cells:
coarse HOG keeps the edge layout (busbars, crack direction) without drowning the LBP and intensity features in
thousands of noisy gradient bins.
"""

_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
_HIST_BINS = 16


# --------------------------------------------------------------------------------------------- preprocessing
def _to_unit_grey(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``image`` to float32 in [0, 1] and split it into (grey ``(H, W)``, channels ``(H, W, C)``).

    Integers are divided by their dtype's maximum, so a uint16 image that is a uint8 one times 257 gives the same
    features. Grey is the mean of the channels rather than a luminance formula, because OpenCV reads BGR and PIL
    RGB: an order-free mix gives the same HOG/LBP features whichever reader produced the array.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # alpha carries no defect information
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or min(img.shape[:2]) < 2:
        raise ValueError(
            f"expected a grey (H, W) or colour (H, W, 3) image at least 2 px a side, got shape {img.shape}"
        )
    if img.dtype == bool:
        unit = img.astype(np.float32)
    elif np.issubdtype(img.dtype, np.unsignedinteger):
        unit = img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
    elif np.issubdtype(img.dtype, np.floating):
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        if not np.isfinite(img).all() or lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float image values must be finite and in [0, 1], got range [{lo}, {hi}]; "
                "scale it (skimage.util.img_as_float) or pass the integer image"
            )
        unit = img.astype(np.float32)
    else:
        raise ValueError(f"unsupported image dtype {img.dtype}; use uint8, uint16 or float in [0, 1]")
    channels = unit if unit.ndim == 3 else unit[:, :, None]
    return channels.mean(axis=2), channels


def _resize(grey: np.ndarray, size: int) -> np.ndarray:
    # INTER_AREA averages when shrinking (no aliasing of fine cracks into noise); cubic when enlarging.
    interp = cv2.INTER_AREA if min(grey.shape) >= size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(grey, (size, size), interpolation=interp), 0.0, 1.0)


# --------------------------------------------------------------------------------------------- feature groups
def _hog(grey: np.ndarray, cell: int) -> np.ndarray:
    """Histograms of oriented gradients (Dalal & Triggs, CVPR 2005): local edge layout, e.g. crack lines."""
    return hog(
        grey,
        orientations=9,
        pixels_per_cell=(cell, cell),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        feature_vector=True,
    )


def _lbp(grey: np.ndarray, points: int, radius: int, grid: int) -> np.ndarray:
    """Uniform LBP histograms (Ojala, Pietikäinen & Mäenpää, TPAMI 2002): micro-texture, grey-scale invariant.

    One histogram for the whole image plus one per cell of a ``grid`` × ``grid`` layout, so texture that differs
    between regions (a dark, inactive corner) is not averaged away.
    """
    # LBP compares neighbours by value, so float round-off between "equal" pixels would flip bits (skimage warns
    # about float input). 16-bit codes avoid that and keep the contrast of dark 12-bit images stored as uint16.
    codes = local_binary_pattern((grey * 65535).round().astype(np.uint16), points, radius, method="uniform")
    n_bins = points + 2  # P + 1 uniform patterns plus one bin for all non-uniform ones
    regions = [codes]
    h, w = codes.shape
    for i in range(grid):
        for j in range(grid):
            regions.append(codes[i * h // grid : (i + 1) * h // grid, j * w // grid : (j + 1) * w // grid])
    hists = [np.bincount(r.ravel().astype(np.int64), minlength=n_bins) / r.size for r in regions]
    return np.concatenate(hists)


def _moments(x: np.ndarray) -> list[float]:
    mean = float(x.mean())
    std = float(x.std())
    if std < 1e-8:  # flat image: skewness and excess kurtosis of a constant are defined here as 0
        return [mean, std, 0.0, 0.0]
    z = (x - mean) / std
    z2 = z * z  # products, not z**3 / z**4: float pow is ~10x slower and this runs once per image
    return [mean, std, float(np.mean(z2 * z)), float(np.mean(z2 * z2) - 3.0)]


def _intensity(grey: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Global intensity and gradient statistics: dark (inactive) areas and overall contrast."""
    flat = grey.ravel()
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy).ravel()
    hist = np.histogram(flat, bins=_HIST_BINS, range=(0.0, 1.0))[0] / flat.size
    # Always three channel slots: a grey image fills them with its own stats (what grey -> RGB would give), so
    # the feature length does not depend on the channel count.
    ch = channels.reshape(-1, channels.shape[2])
    ch_mean = np.resize(ch.mean(axis=0), 3)
    ch_std = np.resize(ch.std(axis=0), 3)
    return np.concatenate(
        [
            _moments(flat),
            np.percentile(flat, _PERCENTILES),
            hist,
            [mag.mean(), mag.std(), *np.percentile(mag, (50, 90, 99))],
            ch_mean,
            ch_std,
        ]
    )


def image_features(
    image: np.ndarray,
    hog_cell: int = 32,
    lbp_points: int = 8,
    lbp_radius: int = 1,
    lbp_grid: int = 2,
    size: int = WORK_SIZE,
) -> np.ndarray:
    """A fixed-length hand-crafted feature vector for one image.

    The image is scaled to [0, 1] (integers by their dtype's maximum), reduced to grey, and resized to ``size`` ×
    ``size`` so the vector's length depends only on the parameters, not on the image. Then:

    - HOG (Dalal & Triggs 2005), 9 orientations, ``hog_cell`` px cells, 2 × 2 blocks, L2-Hys: edge and line
      layout such as cracks and broken fingers;
    - uniform LBP histograms (Ojala et al. 2002) with ``lbp_points`` neighbours on radius ``lbp_radius``, globally
      and on a ``lbp_grid`` × ``lbp_grid`` grid: micro-texture;
    - intensity statistics on the working image (so gradient statistics do not depend on the resolution): mean,
      std, skewness, excess kurtosis, percentiles, a 16-bin histogram, Sobel gradient-magnitude mean/std/
      percentiles, and per-channel mean/std of the original (a grey image repeats its own values in all three
      slots, so grey and colour images give vectors of the same length).

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` colour image (``(H, W, 1)`` and ``(H, W, 4)`` are accepted),
            uint8, uint16 or float in [0, 1], any size.
        hog_cell: HOG cell side in pixels of the working image; must be at most ``size // 2``. The default 32 won
            repeated cross-validation on ELPV's training split over 16 (balanced accuracy 0.79 vs 0.77).
        lbp_points: LBP neighbours P.
        lbp_radius: LBP radius R in pixels of the working image.
        lbp_grid: LBP spatial grid side; 0 for the global histogram only.
        size: working image side in pixels (see :data:`WORK_SIZE`).

    Returns:
        ``(F,)`` float32 vector; see :func:`feature_length` for F.

    Raises:
        ValueError: unsupported shape or dtype, a float image outside [0, 1], or a HOG cell too large for ``size``.
    """
    if hog_cell < 1 or size // hog_cell < 2:
        raise ValueError(f"hog_cell={hog_cell} needs at least 2 cells across the {size} px working image")
    grey, channels = _to_unit_grey(image)
    work = _resize(grey, size)
    return np.concatenate(
        [
            _hog(work, hog_cell),
            _lbp(work, lbp_points, lbp_radius, lbp_grid),
            _intensity(work, channels),
        ]
    ).astype(np.float32)


def feature_length(hog_cell: int = 32, lbp_points: int = 8, lbp_grid: int = 2, size: int = WORK_SIZE) -> int:
    """Length F of :func:`image_features`' vector for these parameters (LBP radius does not change it)."""
    blocks = size // hog_cell - 1
    n_intensity = 4 + len(_PERCENTILES) + _HIST_BINS + 5 + 6
    return blocks * blocks * 4 * 9 + (1 + lbp_grid * lbp_grid) * (lbp_points + 2) + n_intensity


def extract_features(
    images: Sequence[np.ndarray] | np.ndarray,
    n_jobs: int = 1,
    hog_cell: int = 32,
    lbp_points: int = 8,
    lbp_radius: int = 1,
    lbp_grid: int = 2,
    size: int = WORK_SIZE,
) -> np.ndarray:
    """:func:`image_features` for many images.

    Args:
        images: a sequence of images (sizes may differ) or an ``(N, H, W[, C])`` array.
        n_jobs: parallel workers (joblib processes; ``-1`` for all cores). 1 runs in-process, which is the right
            choice inside a task runner that already parallelises.
        hog_cell, lbp_points, lbp_radius, lbp_grid, size: see :func:`image_features`.

    Returns:
        ``(N, F)`` float32 matrix.
    """
    kwargs = dict(hog_cell=hog_cell, lbp_points=lbp_points, lbp_radius=lbp_radius, lbp_grid=lbp_grid, size=size)
    items = list(images)
    if not items:
        return np.zeros((0, feature_length(hog_cell, lbp_points, lbp_grid, size)), dtype=np.float32)
    if n_jobs == 1:
        rows = [image_features(im, **kwargs) for im in items]
    else:
        # Batches of images per call keep the per-task pickling overhead small next to the work.
        rows = Parallel(n_jobs=n_jobs, batch_size=32)(delayed(image_features)(im, **kwargs) for im in items)
    return np.stack(rows).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------- model
def _checked_training_data(X_train: np.ndarray, y_train: np.ndarray, cv: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X float64 (N, F), y (N,))``, or a ValueError that says what is wrong and what to change."""
    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X_train must be (N, F) and y_train (N,), got {X.shape} and {y.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X_train contains NaN or inf; check the feature extraction")
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"the baseline needs at least two classes in y_train, got only {classes.tolist()}")
    if counts.min() < cv:
        raise ValueError(
            f"class {classes[np.argmin(counts)]!r} has {counts.min()} training samples, fewer than cv={cv} folds; "
            "lower cv or add data"
        )
    return X, y


def _svm_pipeline(
    shape: tuple[int, int],
    cv: int,
    pca_components: int | float | None,
    seed: int,
    class_weight: str | dict | None,
) -> Pipeline:
    """StandardScaler → PCA (unless ``None``) → RBF SVC, for features of ``shape`` (N, F) searched with ``cv`` folds."""
    steps: list[tuple[str, Any]] = [("scale", StandardScaler())]
    if pca_components is not None:
        if isinstance(pca_components, numbers.Integral):
            # A fold's training part has about N (cv - 1) / cv rows; PCA cannot keep more components than that.
            pca_components = max(1, min(int(pca_components), shape[1], shape[0] * (cv - 1) // cv - 1))
        # Randomised SVD for a component count is ~10x faster than a full SVD and, seeded, just as repeatable.
        solver = "randomized" if isinstance(pca_components, numbers.Integral) else "full"
        steps.append(("pca", PCA(n_components=pca_components, svd_solver=solver, random_state=seed)))
    steps.append(("svc", SVC(kernel="rbf", class_weight=class_weight)))
    return Pipeline(steps)


def fit_baseline(
    X_train: np.ndarray,
    y_train: np.ndarray,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
    cv: int = 3,
    c_grid: Sequence[float] = (0.1, 1, 10),
    gamma_grid: Sequence[float | str] = ("scale",),
    class_weight: str | dict | None = "balanced",
    n_jobs: int = 1,
    pca_components: int | float | None = 128,
) -> GridSearchCV:
    """Fit StandardScaler → PCA → RBF SVC, choosing C and gamma by stratified k-fold CV on the training split.

    Scaling puts HOG, LBP and intensity features on one footing for the RBF kernel; PCA drops the near-duplicate
    HOG dimensions, which speeds the kernel up and regularises; ``class_weight="balanced"`` and the
    balanced-accuracy score keep the minority (defective) class from being ignored. No Platt probabilities (SVC's
    default; its ``probability`` flag is deprecated since scikit-learn 1.9): they cost an extra internal CV and the
    flow only needs a ranking score for threshold choice and ROC AUC (:func:`baseline_scores`).

    Args:
        X_train: ``(N, F)`` features from :func:`extract_features`.
        y_train: ``(N,)`` labels (0/1 or class indices).
        sample_weight: optional ``(N,)`` per-sample weights (e.g. to down-weight synthetic images); multiplied by
            the class weights inside the SVC.
        seed: seeds the fold shuffle and PCA, so a seed gives the same model.
        cv: number of folds; every class needs at least ``cv`` samples.
        c_grid: SVC ``C`` values to try.
        gamma_grid: SVC ``gamma`` values to try (``"scale"`` = 1 / (F' · var), a good default after scaling).
        class_weight: SVC ``class_weight``.
        n_jobs: parallel CV fits.
        pca_components: PCA ``n_components`` (an int, or a float in (0, 1) = fraction of variance to keep), or
            ``None`` for no PCA.

    Returns:
        The fitted ``GridSearchCV``: predict with it directly; ``best_params_``, ``best_score_`` (mean CV balanced
        accuracy) and ``cv_results_`` describe the search.

    Raises:
        ValueError: mismatched shapes, non-finite features, or a class with fewer than ``cv`` samples.
    """
    X, y = _checked_training_data(X_train, y_train, cv)
    search = GridSearchCV(
        _svm_pipeline(X.shape, cv, pca_components, seed, class_weight),
        param_grid={"svc__C": list(c_grid), "svc__gamma": list(gamma_grid)},
        scoring="balanced_accuracy",
        cv=StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed),
        n_jobs=n_jobs,
        refit=True,
        error_score="raise",
    )
    fit_params = {}
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y.shape:
            raise ValueError(f"sample_weight must be (N,) = {y.shape}, got {w.shape}")
        fit_params["svc__sample_weight"] = w
    # The matrices are small (N up to a few thousand), so multi-threaded BLAS buys little and, when the cores are
    # shared (parallel CV fits, other Prefect tasks), its spinning threads made each PCA ~100x slower in tests.
    with threadpool_limits(limits=1, user_api="blas"):
        return search.fit(X, y, **fit_params)


def baseline_scores(model: Any, X: np.ndarray) -> np.ndarray:
    """Continuous scores from a fitted baseline, for threshold choice and ROC AUC like the CNN's.

    Args:
        model: the result of :func:`fit_baseline` (anything with ``decision_function`` and ``classes_``).
        X: ``(N, F)`` features.

    Returns:
        Binary: ``(N,)`` signed distance to the SVM boundary, positive toward ``model.classes_[1]`` (class 1 for
        0/1 labels); its natural threshold is 0, so pass ``center=0.0`` to ``choose_threshold``. Multiclass:
        ``(N, C)`` one-vs-rest decision values, columns in ``model.classes_`` order.
    """
    with threadpool_limits(limits=1, user_api="blas"):  # see fit_baseline
        return np.asarray(model.decision_function(np.asarray(X, dtype=np.float64)), dtype=np.float64)
