"""The report stage: metrics.json, a self-contained report.html, and the same headline content as Prefect artifacts.

People read runs in two places: a browser opening ``report.html`` (no server needed: every plot is an inlined PNG)
and the Prefect UI (markdown with ``data:`` PNGs renders there, ``file://`` links do not). Both are built here from
the same numbers, so they can never disagree.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tasks.image_io import load_image  # noqa: E402


def vigil_version() -> str:
    try:
        return metadata.version("vigil")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def dataset_slug(source: str, root: str | None) -> str:
    """``elpv``, ``sim``, or the data folder's name plus a 6-character hash of its absolute path."""
    if source in ("elpv", "sim"):
        return source
    path = Path(root or "data").resolve()
    name = path.stem if path.is_file() else path.name
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:6]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "data"
    return f"{slug}-{digest}"


def fig_to_png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def plot_learning_curves(history: list[dict]) -> bytes:
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
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
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(class_names), 1.0 + 0.9 * len(class_names)))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig_to_png(fig)


def plot_roc(curves: dict[str, dict]) -> bytes | None:
    curves = {k: v for k, v in curves.items() if v and v.get("fpr")}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4, 4))
    for name, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the test split")
    ax.legend(loc="lower right")
    return fig_to_png(fig)


def plot_worst(worst: list[dict], size: int = 96) -> bytes | None:
    if not worst:
        return None
    n = len(worst)
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2.0), squeeze=False)
    for ax, item in zip(axes[0], worst, strict=True):
        img = load_image(item["path"], size, 3)
        ax.imshow(img)
        score = item["score"]
        s = f"{score:.2f}" if isinstance(score, float) else "/".join(f"{v:.2f}" for v in score)
        ax.set_title(f"{item['true']}\nscore {s}", fontsize=7)
        ax.axis("off")
    return fig_to_png(fig)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


HEADLINE_KEYS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "threshold")


def headline_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Rows ``metric | model | baseline`` for the headline table (markdown, HTML and the table artifact)."""
    test = metrics.get("test", {})
    base = metrics.get("baseline", {})
    return [{"metric": k, "model": _fmt(test.get(k)), "baseline": _fmt(base.get(k))} for k in HEADLINE_KEYS]


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def read_png(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def grid_png(path: Path) -> bytes | None:
    """Re-encode the augmentation grid (it may be 16-bit or grey) as a plain 8-bit PNG."""
    if not path.is_file():
        return None
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    ok, buf = cv2.imencode(".png", img)
    return buf.tobytes() if ok else None


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.err{background:#fee;border:1px solid #c33;padding:.8em}.warn{color:#a60}
img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
"""


def render_html(title: str, sections: list[tuple[str, str]]) -> str:
    """A single self-contained HTML file; ``sections`` are (heading, HTML body) pairs."""
    parts = [f"<h2>{html.escape(h)}</h2>\n{body}" for h, body in sections]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "</body></html>"
    )


def img_tag(png: bytes | None, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='{png_data_uri(png)}'>" if png else ""


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def publish_report_link(report_url: str | None, key: str, description: str) -> None:
    """A link artifact to the served ``report.html``; only when a ``vigil server`` serves the runs folder."""
    if report_url:
        from prefect.artifacts import create_link_artifact

        create_link_artifact(link=report_url, link_text="report.html", key=key, description=description)


def plot_gain(per_seed: list[dict[str, Any]], metric: str = "test balanced accuracy") -> bytes:
    """Paired bars per seed: the real-only arm beside the real + synthetic arm."""
    x = np.arange(len(per_seed))
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(per_seed), 3.0))
    ax.bar(x - 0.2, [r["real_only"] for r in per_seed], 0.4, label="real only")
    ax.bar(x + 0.2, [r["real_plus_synthetic"] for r in per_seed], 0.4, label="real + synthetic")
    lo = min(min(r["real_only"], r["real_plus_synthetic"]) for r in per_seed)
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.set_xticks(x, [str(r["seed"]) for r in per_seed])
    ax.set(xlabel="seed", ylabel=metric, title="Real only vs real + synthetic")
    ax.legend(loc="lower right", fontsize=8)
    return fig_to_png(fig)


SYNTHETIC_KEYS = ("tstr_balanced_accuracy", "gain_mean", "gain_sd", "c2st_accuracy", "nn_copy_rate")
_SYNTHETIC_MEANING = {
    "tstr_balanced_accuracy": "trained on synthetic only, tested on real (0.5 = no class information)",
    "gain_mean": "real + synthetic minus real only, mean over seeds (0.02 = two points)",
    "gain_sd": "standard deviation of that gain over seeds",
    "c2st_accuracy": "real vs synthetic told apart by a classifier (0.5 = indistinguishable)",
    "nn_copy_rate": "synthetic samples closer to a real training sample than real samples are to each other",
}


def synthetic_section(synthetic: dict[str, Any], extra_html: str = "") -> tuple[str, str, list[str]]:
    """HTML and markdown for the synthetic-data section: verdict, the five numbers, per-seed table and plot."""
    rows = [{"measure": k, "value": _fmt(synthetic.get(k)), "meaning": _SYNTHETIC_MEANING[k]} for k in SYNTHETIC_KEYS]
    rows.append(
        {
            "measure": "frechet_distance_vigil_features",
            "value": _fmt(synthetic.get("frechet_distance_vigil_features")),
            "meaning": str(synthetic.get("feature_space", "")),
        }
    )
    seeds = [
        {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in synthetic.get("per_seed", [])
    ]
    recipe = synthetic.get("gain_recipe", {})
    text = (
        f"<p><b>{html.escape(str(synthetic.get('verdict', '')))}</b>. {synthetic.get('n_added', 0)} synthetic "
        f"samples added ({html.escape(str(synthetic.get('classes')))} classes, ratio {synthetic.get('ratio')}); "
        f"comparison arms: {html.escape(json.dumps(recipe))}. The headline test metrics are the real + synthetic "
        "model's; the real-only model's are under synthetic.real_only in metrics.json.</p>"
    )
    gain = plot_gain(synthetic["per_seed"]) if synthetic.get("per_seed") else None
    body = text + html_table(rows) + html_table(seeds) + img_tag(gain, "gain per seed") + extra_html
    md = ["## Synthetic data", str(synthetic.get("verdict", "")), markdown_table(rows)]
    if gain:
        md.append(f"![gain]({png_data_uri(gain)})")
    return "Synthetic data (GAN)", body, md
