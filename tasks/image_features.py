"""Pre-trained CNN features + a linear classifier: the field's first recipe for a small labelled image set.

A candidate named ``<backbone>+linear`` (e.g. ``efficientnet_lite0+linear``) keeps the ImageNet backbone frozen,
embeds every image once (global-average-pooled features of the last stage), and fits a standardised, class-balanced
logistic regression on the train split with its regularisation chosen by stratified cross-validation on the train
split only (scikit-learn). The fitted scaler and regression are then folded into the backbone's own linear head, so
the candidate is one ordinary registry model (same ``weights.pt``, export, Grad-CAM and predict path as a fine-tuned
one) whose output equals the scikit-learn pipeline's probabilities. On ELPV the frozen Lite0 features with a
logistic regression measured 0.835 test accuracy at 160 px (issue #11's probe), as Deitsch et al. 2019's SVM on
hand-crafted features (82.4 %) and below a fine-tune.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, Dataset

LINEAR_SUFFIX = "+linear"
#: Inverse regularisation strengths tried by cross-validation on the train split.
C_GRID = (0.01, 0.1, 1.0)


def split_candidate(name: str) -> tuple[str, bool]:
    """``("efficientnet_lite0", True)`` for ``efficientnet_lite0+linear``; ``(name, False)`` for a plain model."""
    if name.endswith(LINEAR_SUFFIX):
        return name[: -len(LINEAR_SUFFIX)], True
    return name, False


@torch.inference_mode()
def embed(model: nn.Module, data: Dataset, batch_size: int) -> np.ndarray:
    """Pooled pre-logit features ``(N, F)`` of every item of ``data`` (eval mode, no augmentation)."""
    model.eval()
    out = []
    for x, *_ in DataLoader(data, batch_size=batch_size, shuffle=False):
        out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def fit_linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    sample_weight: np.ndarray,
    *,
    class_balanced: bool,
    seed: int,
    cv: int = 3,
) -> tuple[GridSearchCV, float]:
    """Standardise + logistic regression, ``C`` chosen by stratified ``cv``-fold CV on these (train) rows only.

    Returns the fitted search and its best cross-validated balanced accuracy.
    """
    if len(np.unique(labels)) < 2:
        raise ValueError("the linear probe needs training images of at least 2 classes")
    folds = int(min(cv, np.bincount(labels)[np.unique(labels)].min()))
    if folds < 2:
        raise ValueError(
            f"the linear probe needs at least 2 training images of every class; the rarest has {folds}: "
            "add images or drop the +linear candidate"
        )
    pipe = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=2000, class_weight="balanced" if class_balanced else None),
    )
    search = GridSearchCV(
        pipe,
        {"logisticregression__C": list(C_GRID)},
        scoring="balanced_accuracy",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
    )
    search.fit(features, labels, logisticregression__sample_weight=sample_weight)
    return search, float(search.best_score_)


def fold_into_head(search: GridSearchCV, head: nn.Linear, n_classes: int) -> None:
    """Write the scaler + logistic regression into ``head`` so ``softmax(head(z))`` equals ``predict_proba(z)``.

    Binary regression gives one score ``w·x + b`` for class 1: the head gets logits ``(0, w·x + b)``, whose softmax
    is the sigmoid. Standardisation ``x = (z - mu) / sigma`` folds into ``w' = w / sigma``,
    ``b' = b - w·(mu / sigma)``.
    """
    scaler, lr = search.best_estimator_[0], search.best_estimator_[-1]
    if len(lr.classes_) != n_classes:
        raise ValueError(
            f"the linear probe saw {len(lr.classes_)} of {n_classes} classes in training; "
            "every class needs train images"
        )
    w = lr.coef_ / scaler.scale_  # (K, F)
    b = lr.intercept_ - (lr.coef_ * (scaler.mean_ / scaler.scale_)).sum(axis=1)  # (K,)
    if n_classes == 2:
        w = np.vstack([np.zeros_like(w), w])
        b = np.concatenate([[0.0], b])
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype))


def linear_probe_summary(search: GridSearchCV, cv_score: float) -> dict[str, float]:
    """What the fitted probe reports in the train record: its chosen C and cross-validated balanced accuracy."""
    return {"linear_c": float(search.best_params_["logisticregression__C"]), "linear_cv_balanced_accuracy": cv_score}
