"""The synthetic-data part of a report: its metrics.json section and its HTML / markdown section.

Both flows measure the GAN's samples the same way (the synth stage's usefulness experiment writes
``synthetic.json`` into its record's folder), so both reports show them the same way.
"""

from __future__ import annotations

import html
import json
from typing import Any

from tasks.cache import StageResult
from tasks.report.common import fmt, html_table, img_tag, markdown_table, png_data_uri
from tasks.report.plots import plot_gain

#: Record key of the synth stage's usefulness experiment in a flow's ``stages`` dict.
USEFULNESS = "synth-usefulness"

#: The synth record's summary fields that metrics.json publishes under ``synthetic.gan`` (in the record's order).
#: The record may carry more (the GAN's last losses, the class choice and ratio the train stage reads); those
#: stay out, so metrics.json keeps one shape whatever the stages hand each other.
GAN_SUMMARY_KEYS = (
    "model",
    "device",
    "image_size",
    "gan_train_images",
    "gan_train_windows",
    "gan_train_by_class",
    "generated_by_class",
    "n_generated",
    "steps",
    "resumed_from_step",
    "gan_seconds",
    "task",
    "seconds",
)

SYNTHETIC_KEYS = (
    "tstr_balanced_accuracy",
    "gain_mean",
    "gain_sd",
    "gain_ci95",
    "c2st_accuracy",
    "c2st_reference",
    "nn_copy_rate",
    "nn_copy_rate_raw",
)
_SYNTHETIC_MEANING = {
    "tstr_balanced_accuracy": "trained on synthetic only, tested on real (0.5 = no class information)",
    "gain_mean": "real + synthetic minus real only, mean over seeds (0.02 = two points)",
    "gain_sd": "standard deviation of that gain over seeds",
    "gain_ci95": "95 % paired-bootstrap interval of gain_mean over the test images (one resample for every arm): "
    "the test set's noise, all there is when the arms do not vary with the seed",
    "c2st_accuracy": "real (train) vs synthetic told apart by a classifier, same class mix (0.5 = indistinguishable)",
    "c2st_reference": "the same test on real validation vs real train samples: how far apart two real sets are",
    "nn_copy_rate": "synthetic samples at most as close to a real training sample as the closest distinct real "
    "pairs (1st percentile; threshold nn_copy_threshold)",
    "nn_copy_rate_raw": "the same copy check on raw pixels / signal samples (threshold nn_copy_threshold_raw)",
}


def synthetic_metrics(usefulness: StageResult, synth: StageResult | None) -> dict[str, Any]:
    """metrics.json's ``synthetic`` section: the experiment's ``synthetic.json`` plus the GAN's facts as ``gan``."""
    synthetic = json.loads((usefulness.dir / "synthetic.json").read_text())
    if synth is not None and not synth.error:
        synthetic["gan"] = {k: v for k, v in synth.summary.items() if k in GAN_SUMMARY_KEYS}
    return synthetic


def _cell(value: Any) -> str:
    """A value of the measures table: an interval as ``[lo, hi]`` with 4 decimals, anything else by :func:`fmt`."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.4f}, {value[1]:.4f}]"
    return fmt(value)


def synthetic_section(synthetic: dict[str, Any], extra_html: str = "") -> tuple[str, str, list[str]]:
    """HTML and markdown for the synthetic-data section: verdict, the numbers, C2ST per class, per-seed table, plot."""
    shown = [k for k in SYNTHETIC_KEYS if k != "gain_ci95" or synthetic.get(k)]  # EEG arms carry no interval
    rows = [{"measure": k, "value": _cell(synthetic.get(k)), "meaning": _SYNTHETIC_MEANING[k]} for k in shown]
    rows.append(
        {
            "measure": "frechet_distance_vigil_features",
            "value": fmt(synthetic.get("frechet_distance_vigil_features")),
            "meaning": str(synthetic.get("feature_space", "")),
        }
    )
    by_class = []  # the C2ST per class, synthetic vs train beside validation vs train
    for name, values in (synthetic.get("c2st_by_class") or {}).items():
        row = {"class": name, "n per side": (synthetic.get("c2st_per_class_n") or {}).get(name)}
        by_class.append(row | {f"c2st {k}": fmt(v) for k, v in values.items()})
    seeds = [
        {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in synthetic.get("per_seed", [])
    ]
    recipe = synthetic.get("gain_recipe", {})
    real_only = (
        "the real-only model's are under synthetic.real_only in metrics.json"
        if synthetic.get("real_only")
        else "no real-only copy of that recipe was trained (synth.real_only_headline=false), so the paired "
        "comparison arms below are the answer"
    )
    text = (
        f"<p><b>{html.escape(str(synthetic.get('verdict', '')))}</b>. {synthetic.get('n_added', 0)} synthetic "
        f"samples added ({html.escape(str(synthetic.get('classes')))} classes, ratio {synthetic.get('ratio')}); "
        f"comparison arms: {html.escape(json.dumps(recipe))}. The headline test metrics are the real + synthetic "
        f"model's; {real_only}.</p>"
    )
    gain = plot_gain(synthetic["per_seed"]) if synthetic.get("per_seed") else None
    tables = html_table(rows) + (html_table(by_class) if by_class else "") + html_table(seeds)
    body = text + tables + img_tag(gain, "gain per seed") + extra_html
    md = ["## Synthetic data", str(synthetic.get("verdict", "")), markdown_table(rows)]
    if gain:
        md.append(f"![gain]({png_data_uri(gain)})")
    return "Synthetic data (GAN)", body, md
