"""The augment stage for EEG: save the augmentation pipeline of the ``augment`` section and show what it does.

The transforms themselves live on the ground floor (:mod:`tasks.eeg_augmentation`), because training applies them
too: this stage writes ``augment.json`` and a plot of augmented copies of one ictal window, and keeps its section in
its record (``summary["config"]``) so the train stage rebuilds the same pipeline from the record
(:func:`tasks.eeg_augmentation.eeg_augment_from_record`) without reading this stage's config.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import EegAugmentConfig
from tasks.eeg_augmentation import augmentation_examples, build_eeg_augment_from_config
from tasks.rundir import RunContext


def plot_examples(x: np.ndarray, examples: list[np.ndarray], sfreq: float, channels: list[str]) -> bytes:
    """PNG of the first three channels of ``x`` and of each augmented copy, side by side.

    Drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot), so no global backend has to be chosen.
    """
    picks = list(range(min(3, x.shape[0])))
    fig = Figure(figsize=(3 * (1 + len(examples)), 2.6))
    axes = fig.subplots(1, 1 + len(examples), sharey=True)
    t = np.arange(x.shape[1]) / sfreq
    for ax, (title, w) in zip(
        axes, [("original", x)] + [(f"augmented {i + 1}", e) for i, e in enumerate(examples)], strict=True
    ):
        scale = 4 * float(np.std(x[picks])) + 1e-12
        for j, c in enumerate(picks):
            ax.plot(t, w[c] - j * scale, lw=0.5, color="k")
        ax.set(title=title, xlabel="s", yticks=[])
    axes[0].set_yticks([-j * scale for j in range(len(picks))], [channels[c] for c in picks])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return buf.getvalue()


def _example_window(label: StageResult, ingest: StageResult) -> np.ndarray:
    """The first ictal window (the first window when none is ictal), ``(n_chans, window_samples)`` float32."""
    windows = pd.read_csv(label.dir / "windows.csv", dtype={"recording_id": str})
    ictal = windows[windows["ictal"] == 1]
    row = (ictal if len(ictal) else windows).iloc[0]
    n = int(label.summary["window_samples"])
    signal = np.load(ingest.dir / "signals" / f"{row['recording_id']}.npy", mmap_mode="r")
    return np.asarray(signal[:, int(row["start_sample"]) : int(row["start_sample"]) + n], dtype=np.float32)


@task(name="augment", cache_policy=NO_CACHE)
def augment_eeg_task(*, cfg: EegAugmentConfig, ctx: RunContext, ingest: StageResult, label: StageResult) -> StageResult:
    """Save the EEG augmentation pipeline (``augment.json``) and a plot of augmented copies of an ictal window.

    The record's summary holds ``transforms`` (class names, in order) and ``config`` (this section as a dict), from
    which training rebuilds the pipeline.
    """
    key = stage_key("augment", cfg, ctx.seed, label.key)

    def build(out: Path) -> dict:
        sfreq = float(label.summary["sfreq"])
        config = cfg.model_dump(mode="json")
        aug = build_eeg_augment_from_config(config, sfreq)
        (out / "augment.json").write_text(json.dumps(aug.to_dict(), indent=2, default=str))
        x = _example_window(label, ingest)
        examples = augmentation_examples(x, aug, [ctx.seed * 1000 + i for i in range(3)])
        (out / "examples.png").write_bytes(plot_examples(x, examples, sfreq, ingest.summary["channels"]))
        return {"transforms": [type(t).__name__ for t in aug.transforms], "config": config}

    result = run_stage(StageCache(ctx.cache_root), "augment", key, build, ctx.refreshes("augment"))
    get_run_logger().info("augment: %s", ", ".join(result.summary.get("transforms", [])) or "none")
    return result
