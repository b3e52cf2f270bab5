"""Pre-trained CNN features + a linear classifier or SVM: the field's first recipe for a small labelled image set.

A candidate named ``<backbone>+linear`` (e.g. ``efficientnet_lite0+linear``) keeps the ImageNet backbone frozen,
embeds every image once (global-average-pooled features of the last stage), and fits a standardised, class-balanced
logistic regression on the train split with its regularisation chosen by stratified cross-validation on the train
split only (scikit-learn). The fitted scaler and regression are then folded into the backbone's own linear head, so
the candidate is one ordinary registry model (same ``weights.pt``, export, Grad-CAM and predict path as a fine-tuned
one) whose output equals the scikit-learn pipeline's probabilities. On ELPV the frozen Lite0 features with a
logistic regression measured 0.835 test accuracy at 160 px (issue #11's probe), as Deitsch et al. 2019's SVM on
hand-crafted features (82.4 %) and below a fine-tune.

A ``<backbone>+svm`` candidate is the seed's "CNN features + SVM": the same frozen features, a class-balanced SVM
whose kernel (linear or RBF) and ``C`` are chosen by stratified CV on the train split, and Platt scaling fitted on
cross-validated decision values (so probabilities and the 0.5 threshold mean what they mean for every other
candidate). A linear SVM folds into the linear head like the regression; an RBF SVM becomes a
:class:`models.layers.KernelHead` over its support vectors, recorded in ``weights.pt`` under ``head``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.layers import KernelHead

LINEAR_SUFFIX = "+linear"
#: Heads fitted on frozen features, by candidate suffix.
PROBES = ("linear", "svm")
#: Inverse regularisation strengths tried by cross-validation on the train split.
C_GRID = (0.01, 0.1, 1.0)
#: The SVM's kernels and C values tried by cross-validation on the train split (gamma: scikit-learn's "scale").
SVM_GRID = ({"kernel": ["linear"], "C": [0.01, 0.1]}, {"kernel": ["rbf"], "C": [1.0, 10.0]})


def split_candidate(name: str) -> tuple[str, str | None]:
    """``("efficientnet_lite0", "svm")`` for ``efficientnet_lite0+svm``; ``(name, None)`` for a plain model."""
    for probe in PROBES:
        if name.endswith(f"+{probe}"):
            return name[: -len(probe) - 1], probe
    return name, None


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
    groups: np.ndarray | None = None,
) -> tuple[GridSearchCV, float]:
    """Standardise + logistic regression, ``C`` chosen by stratified ``cv``-fold CV on these (train) rows only.

    ``groups`` (the image of each row, for tiles) keeps a group's rows in one fold. Returns the fitted search and
    its best cross-validated balanced accuracy.
    """
    folds = _cv_folds(labels, groups, cv, "linear probe", seed)
    pipe = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=2000, class_weight="balanced" if class_balanced else None),
    )
    search = GridSearchCV(
        pipe,
        {"logisticregression__C": list(C_GRID)},
        scoring="balanced_accuracy",
        cv=folds,
    )
    search.fit(features, labels, groups=groups, logisticregression__sample_weight=sample_weight)
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


def _rarest_folds(labels: np.ndarray, cv: int, what: str) -> int:
    if len(np.unique(labels)) < 2:
        raise ValueError(f"the {what} needs training images of at least 2 classes")
    folds = int(min(cv, np.bincount(labels)[np.unique(labels)].min()))
    if folds < 2:
        raise ValueError(
            f"the {what} needs at least 2 training images of every class; the rarest has {folds}: "
            f"add images or drop the +{what.split()[0]} candidate"
        )
    return folds


def _cv_folds(
    labels: np.ndarray, groups: np.ndarray | None, cv: int, what: str, seed: int
) -> StratifiedKFold | StratifiedGroupKFold:
    """Stratified folds over rows, or over ``groups`` when given: a tile's image-mates share its label and look
    alike, so with them on both sides of a fold the CV score would flatter the probe."""
    if groups is None:
        return StratifiedKFold(_rarest_folds(labels, cv, what), shuffle=True, random_state=seed)
    _, first = np.unique(groups, return_index=True)
    return StratifiedGroupKFold(_rarest_folds(labels[first], cv, what), shuffle=True, random_state=seed)


def fit_svm_probe(
    features: np.ndarray,
    labels: np.ndarray,
    sample_weight: np.ndarray,
    *,
    class_balanced: bool,
    seed: int,
    cv: int = 3,
    groups: np.ndarray | None = None,
) -> tuple[Pipeline, dict[str, Any], np.ndarray, float]:
    """Standardise + SVM, kernel and ``C`` chosen by stratified CV on these (train) rows; Platt-scaled.

    Multiclass uses one-vs-rest SVMs (one decision function per class, which a torch head can reproduce; libsvm's
    own one-vs-one votes cannot be). Returns the refitted pipeline, its chosen parameters, Platt coefficients
    ``(n_outputs, 2)`` fitted on cross-validated decision values, and the best CV balanced accuracy. ``groups``
    keeps a group's rows (an image's tiles) in one fold.
    """
    folds = _cv_folds(labels, groups, cv, "svm probe", seed)
    svc = SVC(class_weight="balanced" if class_balanced else None, gamma="scale")
    multiclass = len(np.unique(labels)) > 2
    model = OneVsRestClassifier(svc) if multiclass else svc
    prefix = "svm__estimator__" if multiclass else "svm__"
    grid = [{prefix + k: v for k, v in part.items()} for part in SVM_GRID]
    pipe = Pipeline([("scale", StandardScaler()), ("svm", model)])
    fit_params = {} if multiclass else {"svm__sample_weight": sample_weight}
    search = GridSearchCV(pipe, grid, scoring="balanced_accuracy", cv=folds)
    search.fit(features, labels, groups=groups, **fit_params)
    best = search.best_estimator_
    decision = cross_val_predict(
        clone(best), features, labels, groups=groups, cv=folds, method="decision_function", params=fit_params
    )
    decision = decision.reshape(len(labels), -1)
    targets = [labels == 1] if decision.shape[1] == 1 else [labels == k for k in range(decision.shape[1])]
    platt = []
    for column, target in zip(decision.T, targets, strict=True):
        sigmoid = LogisticRegression(C=1e6).fit(column[:, None], target.astype(int))
        platt.append((float(sigmoid.coef_[0, 0]), float(sigmoid.intercept_[0])))
    params = {k.removeprefix(prefix): v for k, v in search.best_params_.items()}
    return best, params, np.asarray(platt), float(search.best_score_)


def _svms(pipe: Pipeline) -> list[SVC]:
    model = pipe[-1]
    return list(model.estimators_) if isinstance(model, OneVsRestClassifier) else [model]


def svm_head(pipe: Pipeline, platt: np.ndarray, n_features: int, n_classes: int) -> nn.Module:
    """The fitted SVM(s) as a torch head on pooled features: a folded ``nn.Linear`` (linear kernel) or a
    :class:`~models.layers.KernelHead` (RBF); ``softmax(head(x))`` equals the Platt-scaled probabilities."""
    scaler, svms = pipe[0], _svms(pipe)
    if svms[0].kernel == "linear":
        w = np.vstack([m.coef_.reshape(-1) for m in svms]) * platt[:, :1]  # (K, F) on standardised inputs
        b = np.array([float(m.intercept_[0]) for m in svms]) * platt[:, 0] + platt[:, 1]
        weight = w / scaler.scale_
        bias = b - (w * (scaler.mean_ / scaler.scale_)).sum(axis=1)
        if n_classes == 2:
            weight, bias = np.vstack([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
        head = nn.Linear(n_features, n_classes)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(weight))
            head.bias.copy_(torch.as_tensor(bias))
        return head
    support = np.vstack([m.support_vectors_ for m in svms])
    dual = np.zeros((len(svms), len(support)))
    start = 0
    for k, m in enumerate(svms):  # each output uses its own block of support vectors
        n = len(m.support_vectors_)
        dual[k, start : start + n] = m.dual_coef_[0]
        start += n
    head = KernelHead(n_features, len(support), len(svms))
    values = {
        "mean": scaler.mean_,
        "scale": scaler.scale_,
        "support": support,
        "dual": dual,
        "intercept": [float(m.intercept_[0]) for m in svms],
        "gamma": float(svms[0]._gamma),
        "platt_a": platt[:, 0],
        "platt_b": platt[:, 1],
    }
    with torch.no_grad():
        for name, value in values.items():
            getattr(head, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))
    return head


def head_spec(head: nn.Module) -> dict[str, int] | None:
    """What :func:`tasks.image_classifier.load_model` needs to rebuild a kernel head (``None``: a plain linear)."""
    if not isinstance(head, KernelHead):
        return None
    n_outputs, n_support = head.dual.shape
    return {"kind": "kernel", "n_features": int(head.mean.numel()), "n_support": n_support, "n_outputs": n_outputs}


def svm_probe_summary(params: dict[str, Any], cv_score: float) -> dict[str, Any]:
    """What the fitted SVM reports in the train record: kernel, C and cross-validated balanced accuracy."""
    return {"svm_kernel": params["kernel"], "svm_c": float(params["C"]), "svm_cv_balanced_accuracy": cv_score}
