"""The report's plots, drawn as PNG bytes ready to inline into report.html and the markdown artifact.

Figures are built with matplotlib's object-oriented API (``Figure`` plus ``savefig``), which renders through the
Agg canvas without choosing a process-wide backend or touching pyplot's global figure list: importing this module
changes nothing, and a report drawn inside a Prefect worker leaves no open figures behind.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tasks.image_io import load_image


def fig_to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at 90 dpi, cropped to its content."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def plot_learning_curves(history: list[dict]) -> bytes:
    """Train and validation loss, and validation (balanced) accuracy, per epoch."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2)
    axes[0].plot(epochs, [h["train_loss"] for h in history], label="train")
    axes[0].plot(epochs, [h["val_loss"] for h in history], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="Loss")
    axes[0].legend()
    axes[1].plot(epochs, [h["val_accuracy"] for h in history], label="accuracy")
    axes[1].plot(epochs, [h["val_balanced_accuracy"] for h in history], label="balanced accuracy")
    axes[1].set(xlabel="epoch", ylim=(0, 1), title="Validation")
    axes[1].legend()
    return fig_to_png(fig)


def plot_confusion(matrix: list[list[int]], class_names: list[str], title: str) -> bytes:
    """A confusion matrix (rows: true class, columns: predicted) with the counts written in the cells."""
    m = np.asarray(matrix)
    fig = Figure(figsize=(1.2 + 0.9 * len(class_names), 1.0 + 0.9 * len(class_names)))
    ax = fig.subplots()
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig_to_png(fig)


def plot_roc(curves: dict[str, dict]) -> bytes | None:
    """ROC curves from precomputed ``{"fpr", "tpr", "auc"}`` dicts; None when no curve has points."""
    curves = {k: v for k, v in curves.items() if v and v.get("fpr")}
    if not curves:
        return None
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    for name, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the test split")
    ax.legend(loc="lower right")
    return fig_to_png(fig)


def plot_worst(worst: list[dict], size: int = 96) -> bytes | None:
    """The most confident test errors side by side, each titled with its true class and score(s)."""
    if not worst:
        return None
    n = len(worst)
    fig = Figure(figsize=(1.6 * n, 2.0))
    axes = fig.subplots(1, n, squeeze=False)
    for ax, item in zip(axes[0], worst, strict=True):
        img = load_image(item["path"], size, 3)
        ax.imshow(img)
        score = item["score"]
        s = f"{score:.2f}" if isinstance(score, float) else "/".join(f"{v:.2f}" for v in score)
        ax.set_title(f"{item['true']}\nscore {s}", fontsize=7)
        ax.axis("off")
    return fig_to_png(fig)


def plot_gain(per_seed: list[dict[str, Any]], metric: str = "test balanced accuracy") -> bytes:
    """Paired bars per seed: the real-only arm beside the real + synthetic arm."""
    x = np.arange(len(per_seed))
    fig = Figure(figsize=(1.6 + 0.9 * len(per_seed), 3.0))
    ax = fig.subplots()
    ax.bar(x - 0.2, [r["real_only"] for r in per_seed], 0.4, label="real only")
    ax.bar(x + 0.2, [r["real_plus_synthetic"] for r in per_seed], 0.4, label="real + synthetic")
    lo = min(min(r["real_only"], r["real_plus_synthetic"]) for r in per_seed)
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.set_xticks(x, [str(r["seed"]) for r in per_seed])
    ax.set(xlabel="seed", ylabel=metric, title="Real only vs real + synthetic")
    ax.legend(loc="lower right", fontsize=8)
    return fig_to_png(fig)
