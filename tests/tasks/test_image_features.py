"""Frozen ImageNet features + a cross-validated logistic regression or SVM, as the backbone's own head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_image_classifier import _table

import tasks.image_classifier as classifier
from models.layers import KernelHead
from tasks.config import AugmentConfig, TrainConfig
from tasks.image_augmentation import build_pipeline
from tasks.image_features import fit_linear_probe, fit_svm_probe, fold_into_head, split_candidate, svm_head


@pytest.mark.parametrize("n_classes", [2, 3])
def test_folded_head_reproduces_the_scikit_learn_probabilities(n_classes: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (60, 5)).astype(np.float32)
    y = np.arange(60) % n_classes
    x[:, 0] += y  # something to learn
    search, cv_score = fit_linear_probe(x, y, np.ones(60), class_balanced=True, seed=0)
    head = torch.nn.Linear(5, n_classes)
    fold_into_head(search, head, n_classes)
    with torch.no_grad():
        ours = torch.softmax(head(torch.from_numpy(x)), dim=1).numpy()
    assert np.allclose(ours, search.predict_proba(x), atol=1e-5)
    assert 0.0 <= cv_score <= 1.0


@pytest.mark.parametrize(("n_classes", "ring"), [(2, False), (2, True), (3, True)])
def test_svm_head_reproduces_the_platt_scaled_svm(n_classes: int, ring: bool) -> None:
    """A ring (class = distance from the centre) needs the RBF kernel; a shifted blob is linear."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (90, 4)).astype(np.float32)
    if ring:
        x[:, 2:] *= 0.1  # two quiet dimensions
        radius = np.linalg.norm(x[:, :2], axis=1)
        y = np.digitize(radius, np.quantile(radius, np.linspace(0, 1, n_classes + 1)[1:-1]))
    else:
        y = np.arange(90) % n_classes
        x[:, 0] += 3 * y
    pipe, params, platt, cv_score = fit_svm_probe(x, y, np.ones(90), class_balanced=True, seed=0)
    assert params["kernel"] == ("rbf" if ring else "linear") and cv_score > 1.5 / n_classes  # well above chance
    head = svm_head(pipe, platt, 4, n_classes)
    assert isinstance(head, KernelHead) == ring
    with torch.no_grad():
        logits = head(torch.from_numpy(x)).numpy()
    decision = pipe.decision_function(x).reshape(90, -1)
    expected = platt[:, 0] * decision + platt[:, 1]
    if n_classes == 2:
        expected = np.hstack([np.zeros_like(expected), expected])
    assert np.allclose(logits, expected, atol=1e-3)
    assert (logits.argmax(1) == pipe.predict(x)).mean() > 0.9  # Platt moves the boundary a little at most


def test_probe_refuses_a_class_without_training_images() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_linear_probe(np.zeros((4, 2)), np.zeros(4, dtype=int), np.ones(4), class_balanced=True, seed=0)


def test_split_candidate() -> None:
    assert split_candidate("efficientnet_lite0+linear") == ("efficientnet_lite0", "linear")
    assert split_candidate("efficientnet_lite0+svm") == ("efficientnet_lite0", "svm")
    assert split_candidate("resnet_fast") == ("resnet_fast", None)


def test_a_linear_probe_candidate_trains_and_loads_as_its_backbone(tmp_path: Path) -> None:
    table = _table(tmp_path, n_per_class=12)
    out = tmp_path / "out"
    out.mkdir()
    cfg = TrainConfig(model="efficientnet_lite0+linear", image_size=32, batch_size=8, patience=None)
    result = classifier.train_classifier(
        table, ["good", "crack"], cfg, build_pipeline(AugmentConfig(), 0), 0, out, None
    )
    assert result.fit.history[0]["linear_c"] in (0.01, 0.1, 1.0)
    model, meta = classifier.load_model(result.weights_path)
    assert meta["arch"] == meta["pretrained"] == "efficientnet_lite0" and meta["candidate"] == cfg.model
    predictions = pd.read_csv(result.predictions_path)
    assert np.allclose(predictions[["prob_0", "prob_1"]].sum(axis=1), 1.0, atol=1e-5)


def test_a_probe_without_shipped_weights_is_refused(tmp_path: Path) -> None:
    table = _table(tmp_path)
    cfg = TrainConfig(model="efficientnet_lite0+linear", image_size=32, pretrained=False)
    with pytest.raises(ValueError, match="linear probe needs a backbone with shipped ImageNet weights"):
        classifier.train_classifier(
            table, ["good", "crack"], cfg, build_pipeline(AugmentConfig(), 0), 0, tmp_path, None
        )


def test_an_svm_candidate_trains_and_loads_back_with_its_kernel_head(tmp_path: Path) -> None:
    table = _table(tmp_path, n_per_class=12)
    out = tmp_path / "out"
    out.mkdir()
    cfg = TrainConfig(model="efficientnet_lite0+svm", image_size=32, batch_size=8, patience=None)
    result = classifier.train_classifier(
        table, ["good", "crack"], cfg, build_pipeline(AugmentConfig(), 0), 0, out, None
    )
    row = result.fit.history[0]
    assert row["svm_kernel"] in ("linear", "rbf") and 0.0 <= row["svm_cv_balanced_accuracy"] <= 1.0
    model, meta = classifier.load_model(result.weights_path)
    assert meta["candidate"] == cfg.model and (meta["head"] is None) == (row["svm_kernel"] == "linear")
    predictions = pd.read_csv(result.predictions_path)
    assert np.allclose(predictions[["prob_0", "prob_1"]].sum(axis=1), 1.0, atol=1e-5)
