"""The compress stage in the run directory, metrics.json and the report: model files, the variant table, a verdict.

Shared by both flows' reports: the defect flow has one model (``compress.<variant>``), the EEG flow one per task
(``compress.<task>.<variant>``, models under ``<task>/``). The verdict says what the numbers show, including when
int8 did not pay (a model too small to gain), instead of claiming a gain.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from tasks.cache import StageResult
from tasks.report.common import ReportDoc, html_table, markdown_table
from tasks.rundir import copy_file

MODEL_FILES = ("model.onnx", "model.int8.onnx")
KEYS = ("size_bytes", "latency_ms_b1", "latency_ms_b32", "accuracy", "balanced_accuracy", "roc_auc", "max_abs_diff")


def read_compress(stage: StageResult, folder: str = "") -> dict[str, Any]:
    """``compress.json`` of the stage entry (``folder``: the EEG task's subfolder), or {} when absent."""
    path = stage.dir / folder / "compress.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def compress_metrics(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{variant: {size_bytes, latency_ms_b1, latency_ms_b32, accuracy, balanced_accuracy, roc_auc, max_abs_diff,
    threads}}`` of one model's ``compress.json``."""
    return {name: {k: row.get(k) for k in (*KEYS, "threads")} for name, row in document.get("variants", {}).items()}


def copy_models(stage: StageResult, run_dir: Path, folder: str = "") -> None:
    """``model.onnx`` and ``model.int8.onnx`` beside the run's ``model.pt`` (copies: the run never points into the
    cache)."""
    for name in MODEL_FILES:
        src = stage.dir / folder / name
        if src.is_file():
            (run_dir / folder).mkdir(parents=True, exist_ok=True)
            copy_file(src, run_dir / folder / name)


def verdict(variants: dict[str, dict[str, Any]], parity_tolerance: float = 1e-4) -> str:
    """One paragraph on what the numbers show: size, batch-1 speed against fp32 torch, accuracy and parity."""
    t, o, q = variants.get("fp32_torch"), variants.get("fp32_onnx"), variants.get("int8_onnx")
    if not (t and o and q):
        return "No compression measurements."
    ratio = q["size_bytes"] / o["size_bytes"]
    speed_torch = t["latency_ms_b1"] / q["latency_ms_b1"]
    speed_onnx = o["latency_ms_b1"] / q["latency_ms_b1"]
    acc = None if q["accuracy"] is None or t["accuracy"] is None else q["accuracy"] - t["accuracy"]
    parts = [
        f"int8 ONNX is {ratio:.2f} of the fp32 ONNX file",
        f"batch-1 latency {q['latency_ms_b1']:.2f} ms vs {t['latency_ms_b1']:.2f} ms fp32 torch ({speed_torch:.1f}x) "
        f"and {o['latency_ms_b1']:.2f} ms fp32 ONNX ({speed_onnx:.1f}x), {t.get('threads')} threads",
    ]
    if acc is not None:
        parts.append(f"test accuracy {acc * 100:+.1f} points against fp32 torch")
    parity = o.get("max_abs_diff")
    if parity is not None:
        ok = "within" if parity <= parity_tolerance else "ABOVE"
        parts.append(f"fp32 ONNX parity max |Δp| {parity:.1e} ({ok} {parity_tolerance:g})")
    text = "; ".join(parts) + "."
    if speed_onnx < 1.2 or ratio > 1 / 3:
        text += (
            " int8 does not pay here against fp32 ONNX Runtime (a small network or a CPU without fast int8 "
            "kernels): the measured numbers stand instead of a claimed gain."
        )
    return text + " Timings are medians of repeated passes on a machine that may be shared."


def variant_rows(variants: dict[str, dict[str, Any]], task: str | None = None) -> list[dict[str, str]]:
    """Table rows, one per variant."""

    def f(v: Any, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    rows = []
    for name, r in variants.items():
        row = {"task": task} if task else {}
        rows.append(
            row
            | {
                "variant": name,
                "size (KiB)": f(None if r.get("size_bytes") is None else r["size_bytes"] / 1024, ".0f"),
                "batch 1 (ms)": f(r.get("latency_ms_b1"), ".2f"),
                "batch 32 (ms)": f(r.get("latency_ms_b32"), ".1f"),
                "accuracy": f(r.get("accuracy"), ".4f"),
                "balanced": f(r.get("balanced_accuracy"), ".4f"),
                "ROC AUC": f(r.get("roc_auc"), ".4f"),
                "max |Δp|": f(r.get("max_abs_diff"), ".1e"),
            }
        )
    return rows


def compress_section(doc: ReportDoc, per_model: dict[str, dict[str, dict[str, Any]]]) -> None:
    """The report's compression section: the variant table and a verdict per model (``""`` for the one model of
    the defect flow, else the EEG task name)."""
    rows, texts = [], []
    for task, variants in per_model.items():
        rows += variant_rows(variants, task or None)
        texts.append((f"{task}: " if task else "") + verdict(variants))
    body = "".join(f"<p>{html.escape(t)}</p>" for t in texts) + html_table(rows)
    files = "model.onnx and model.int8.onnx (classes, threshold and preprocessing in their metadata) beside model.pt"
    doc.add(
        "Compression",
        body + f"<p>{html.escape(files)}.</p>",
        "## Compression\n" + "\n\n".join(texts) + "\n\n" + markdown_table(rows),
    )
