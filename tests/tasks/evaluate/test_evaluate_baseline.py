import numpy as np
import pytest

from tasks.evaluate.baseline import (
    baseline_scores,
    extract_features,
    feature_length,
    fit_baseline,
    image_features,
)
from tasks.metrics import binary_metrics, multiclass_metrics


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _texture(rng: np.random.Generator, kind: int, size: int = 40) -> np.ndarray:
    """uint8 grey image: 0 = noise, 1 = stripes of random angle/period/phase, 2 = vertical-ish stripes."""
    noise = rng.normal(0.0, 0.15, (size, size))
    if kind == 0:
        return np.clip((0.5 + noise) * 255, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    angle = rng.uniform(0, np.pi) if kind == 1 else rng.uniform(-0.2, 0.2)
    period = rng.uniform(5, 9)
    wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform(0, 2 * np.pi))
    return np.clip((0.5 + 0.3 * wave + noise) * 255, 0, 255).astype(np.uint8)


def _dataset(rng: np.random.Generator, n: int, kinds: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    y = np.arange(n) % len(kinds)
    return [_texture(rng, kinds[c]) for c in y], y


# --------------------------------------------------------------------------------------------- features
@pytest.mark.parametrize("shape", [(20, 30), (64, 200), (300, 300), (301, 157, 3), (48, 48, 1), (48, 48, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_image_features_fixed_length_any_size_dtype_channels(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: type
) -> None:
    unit = rng.random(shape)
    image = unit.astype(dtype) if dtype is np.float32 else (unit * np.iinfo(dtype).max).astype(dtype)
    f = image_features(image)
    assert f.shape == (feature_length(),) and f.dtype == np.float32
    assert np.isfinite(f).all()


@pytest.mark.parametrize("kwargs", [{"hog_cell": 16}, {"lbp_points": 16, "lbp_radius": 2}, {"lbp_grid": 0}])
def test_feature_length_follows_parameters(rng: np.random.Generator, kwargs: dict) -> None:
    image = (rng.random((50, 70)) * 255).astype(np.uint8)
    length = {k: v for k, v in kwargs.items() if k != "lbp_radius"}
    assert image_features(image, **kwargs).shape == (feature_length(**length),)


def test_features_are_scale_and_reader_invariant(rng: np.random.Generator) -> None:
    grey8 = _texture(rng, 1, size=60)
    f8 = image_features(grey8)
    # The same picture as uint16 (x257 maps 255 -> 65535), as float in [0, 1] and as a grey RGB image.
    np.testing.assert_allclose(image_features(grey8.astype(np.uint16) * 257), f8, atol=1e-5)
    np.testing.assert_allclose(image_features(grey8 / 255.0), f8, atol=1e-5)
    np.testing.assert_allclose(image_features(np.repeat(grey8[:, :, None], 3, axis=2)), f8, atol=1e-5)
    # ...while a different texture gives different features.
    assert not np.allclose(image_features(_texture(rng, 0, size=60)), f8, atol=1e-3)


def test_colour_channels_change_features(rng: np.random.Generator) -> None:
    grey = _texture(rng, 1, size=60)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=2)
    swapped = rgb[:, :, ::-1]
    # Grey for HOG/LBP is order-free; the per-channel statistics (the last 6 values) keep the colour.
    np.testing.assert_allclose(image_features(rgb)[:-6], image_features(swapped)[:-6], atol=1e-5)
    assert not np.allclose(image_features(rgb)[-6:], image_features(swapped)[-6:])


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.full((10, 10), 2.0), "in \\[0, 1\\]"),
        (np.zeros((10, 10), np.int16), "unsupported image dtype"),
        (np.zeros((10, 10, 2), np.uint8), "grey \\(H, W\\) or colour"),
        (np.zeros((10,), np.uint8), "grey \\(H, W\\) or colour"),
    ],
)
def test_image_features_rejects_bad_images(image: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        image_features(image)


def test_image_features_rejects_oversized_hog_cell() -> None:
    with pytest.raises(ValueError, match="hog_cell=100"):
        image_features(np.zeros((32, 32), np.uint8), hog_cell=100)


def test_extract_features_stack_list_and_parallel(rng: np.random.Generator) -> None:
    images, _ = _dataset(rng, 6, (0, 1))
    X = extract_features(images)
    assert X.shape == (6, feature_length()) and X.dtype == np.float32
    np.testing.assert_array_equal(extract_features(np.stack(images)), X)
    np.testing.assert_array_equal(extract_features(images, n_jobs=2), X)
    np.testing.assert_array_equal(X[2], image_features(images[2]))
    assert extract_features([]).shape == (0, feature_length())


# --------------------------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def stripes_vs_noise() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images, y = _dataset(rng, 120, (0, 1))
    X = extract_features(images)
    return X[:80], y[:80], X[80:], y[80:]


def test_baseline_learns_stripes_vs_noise(stripes_vs_noise: tuple) -> None:
    X_tr, y_tr, X_te, y_te = stripes_vs_noise
    model = fit_baseline(X_tr, y_tr, seed=0, pca_components=16)
    assert set(model.best_params_) == {"svc__C", "svc__gamma"}
    score = baseline_scores(model, X_te)
    assert score.shape == (len(y_te),)
    m = binary_metrics(y_te, score, 0.0)
    assert m["accuracy"] > 0.9 and m["roc_auc"] > 0.95


def test_baseline_is_deterministic_for_a_seed(stripes_vs_noise: tuple) -> None:
    X_tr, y_tr, X_te, _ = stripes_vs_noise
    a = fit_baseline(X_tr, y_tr, seed=3, pca_components=16, c_grid=(0.1, 10))
    b = fit_baseline(X_tr, y_tr, seed=3, pca_components=16, c_grid=(0.1, 10))
    assert a.best_params_ == b.best_params_
    np.testing.assert_array_equal(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(baseline_scores(a, X_te), baseline_scores(b, X_te))


def test_baseline_sample_weight_silences_mislabelled_samples(stripes_vs_noise: tuple) -> None:
    X_tr, y_tr, X_te, y_te = stripes_vs_noise
    # Every stripes sample again, twice, labelled "noise": at full weight they outvote the true labels.
    stripes = X_tr[y_tr == 1]
    X_bad = np.concatenate([X_tr, stripes, stripes])
    y_bad = np.concatenate([y_tr, np.zeros(2 * len(stripes), int)])
    w = np.concatenate([np.ones(len(y_tr)), np.full(2 * len(stripes), 1e-6)])
    kwargs = dict(seed=0, pca_components=16, c_grid=(1.0,), class_weight=None)
    weighted = fit_baseline(X_bad, y_bad, sample_weight=w, **kwargs)
    unweighted = fit_baseline(X_bad, y_bad, **kwargs)
    acc_w = binary_metrics(y_te, baseline_scores(weighted, X_te), 0.0)["accuracy"]
    acc_u = binary_metrics(y_te, baseline_scores(unweighted, X_te), 0.0)["accuracy"]
    assert acc_w > 0.9 and acc_u < 0.7


def test_baseline_multiclass_scores(rng: np.random.Generator) -> None:
    images, y = _dataset(rng, 90, (0, 1, 2))
    X = extract_features(images)
    model = fit_baseline(X[:60], y[:60], seed=0, pca_components=16, c_grid=(1.0, 10.0))
    scores = baseline_scores(model, X[60:])
    assert scores.shape == (30, 3)
    assert multiclass_metrics(y[60:], scores, ["noise", "stripes", "vertical"])["accuracy"] > 0.8


def test_fit_baseline_validates_input(stripes_vs_noise: tuple) -> None:
    X_tr, y_tr, _, _ = stripes_vs_noise
    with pytest.raises(ValueError, match="fewer than cv=3"):
        fit_baseline(X_tr[:4], np.array([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="at least two classes"):
        fit_baseline(X_tr[:6], np.zeros(6, int))
    with pytest.raises(ValueError, match="sample_weight"):
        fit_baseline(X_tr, y_tr, sample_weight=np.ones(3))
    bad = X_tr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_baseline(bad, y_tr)
