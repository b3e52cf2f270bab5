"""The explain stage for EEG: which channels and moments made the detector call a window a seizure.

The detector is explained on the test windows it flagged: seizure windows whose probability reached the decision
threshold (true detections), most confident first; when none did, the highest-scoring seizure windows, and the
report says so. Attribution toward the "seizure" output comes from captum — integrated gradients (Sundararajan et
al. 2017) from a flat baseline (zero: the recording's median after normalisation), or occlusion of short pieces of
one channel at a time — and is drawn under the EEG trace. Summed over time and windows it gives each channel's share
of the attribution, drawn on the head through MNE (:mod:`tasks.explain.scalp` places bipolar channels at their
electrodes' midpoint, or says why no map can be drawn).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients, Occlusion
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.registry import create_model
from tasks.cache import StageCache, StageResult, run_stage, stage_key
from tasks.config import EegExplainConfig
from tasks.eeg_windows import load_windows
from tasks.explain.plots import plot_eeg_attribution, plot_scalp_map
from tasks.explain.scalp import scalp_info, scalp_layout
from tasks.rundir import RunContext

SEIZURE = 1  # the detector's output index for "ictal"


def pick_windows(scored: pd.DataFrame, threshold: float, n: int) -> tuple[pd.DataFrame, str]:
    """Up to ``n`` test windows to explain, and one sentence saying which they are.

    ``scored`` holds the test windows with ``ictal`` (0/1) and the detector's ``score``.
    """
    ictal = scored[scored["ictal"] == 1]
    detected = ictal[ictal["score"] >= threshold]
    if len(detected):
        return detected.nlargest(n, "score"), f"seizure windows the detector flagged (p >= {threshold:.3f})"
    if len(ictal):
        return ictal.nlargest(n, "score"), (
            f"no test seizure window reached the threshold {threshold:.3f}; the highest-scoring seizure windows"
        )
    return ictal, "the test recordings hold no seizure window"


def attribute(model: torch.nn.Module, x: torch.Tensor, cfg: EegExplainConfig, sfreq: float) -> np.ndarray:
    """Attribution ``(N, C, T)`` of each window in ``x`` toward the seizure output (captum; see the module doc)."""
    baseline = torch.zeros_like(x)
    if cfg.method == "integrated_gradients":
        ig = IntegratedGradients(model)
        attr = ig.attribute(x, baselines=baseline, target=SEIZURE, n_steps=cfg.ig_steps, internal_batch_size=64)
    else:
        width = max(1, min(x.shape[-1], int(round(cfg.occlusion_s * sfreq))))
        attr = Occlusion(model).attribute(
            x, sliding_window_shapes=(1, width), strides=(1, max(1, width // 2)), baselines=0.0, target=SEIZURE
        )
    return attr.detach().float().numpy()


def channel_importance(attr: np.ndarray) -> np.ndarray:
    """Each channel's share of the total |attribution| over time and windows (sums to 1; uniform when all zero)."""
    per_channel = np.abs(attr).sum(axis=(0, 2))
    total = per_channel.sum()
    return per_channel / total if total > 0 else np.full(len(per_channel), 1.0 / len(per_channel))


def load_detector(weights_path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The detector of a train-stage ``weights.pt`` (safe ``weights_only`` load), in eval mode, with its record."""
    record = torch.load(weights_path, map_location="cpu", weights_only=True)
    model = create_model(record["arch"], **record["kwargs"])
    model.load_state_dict(record["state_dict"])
    return model.eval(), record


def _scalp(importance: np.ndarray, channels: list[str], sfreq: float, out: Path) -> str | None:
    """Draw ``scalp.png`` when the channels can be placed; else return the reason."""
    positions, values, reason = scalp_layout(channels, importance)
    if reason is None:
        title = "Share of attribution per scalp position"
        (out / "scalp.png").write_bytes(plot_scalp_map(values, scalp_info(positions, sfreq), title))
    return reason


def explain_eeg(
    weights_path: Path,
    scored: pd.DataFrame,
    threshold: float,
    signals_dir: Path,
    cfg: EegExplainConfig,
    out: Path,
) -> dict[str, Any]:
    """Attribute the detector in ``weights_path`` on flagged test windows of ``scored``; write ``explain.json``,
    ``window_<i>.png`` (trace with attribution under it) and ``scalp.png`` (or the reason it is missing) to ``out``."""
    model, record = load_detector(weights_path)
    channels, sfreq = list(record["channels"]), float(record["sfreq"])
    n_samples = int(record["kwargs"]["n_times"])
    chosen, which = pick_windows(scored, threshold, cfg.max_windows)
    result: dict[str, Any] = {"method": cfg.method, "windows_from": which, "n_windows": len(chosen)}
    result["scalp_map_skipped"] = f"scalp map skipped: no window to explain ({which})"
    result["windows"] = [
        {"window_id": str(r.window_id), "recording_id": str(r.recording_id), "start_s": float(r.start_s)}
        | {"score": float(r.score)}
        for r in chosen.itertuples()
    ]
    if len(chosen):
        x = torch.from_numpy(load_windows(chosen, signals_dir, n_samples, record["normalize"]))
        attr = attribute(model, x, cfg, sfreq)
        for i, r in enumerate(chosen.itertuples()):
            raw = np.load(signals_dir / f"{r.recording_id}.npy", mmap_mode="r")
            traces = np.asarray(raw[:, int(r.start_sample) : int(r.start_sample) + n_samples], dtype=np.float32)
            title = f"{r.recording_id} at {r.start_s:.0f} s: p(seizure) {r.score:.2f}"
            (out / f"window_{i}.png").write_bytes(
                plot_eeg_attribution(traces, attr[i], channels, sfreq, float(r.start_s), title)
            )
        importance = channel_importance(attr)
        result["channel_importance"] = {c: round(float(v), 4) for c, v in zip(channels, importance, strict=True)}
        order = np.argsort(-importance)
        result["top_channels"] = [channels[i] for i in order[:3]]
        result["scalp_map_skipped"] = _scalp(importance, channels, sfreq, out)
    result["settings"] = cfg.model_dump(mode="json")
    (out / "explain.json").write_text(json.dumps(result, indent=2))
    return result


@task(name="explain", cache_policy=NO_CACHE)
def explain_eeg_task(
    *,
    cfg: EegExplainConfig,
    ctx: RunContext,
    ingest: StageResult,
    train_detection: StageResult,
    evaluate: StageResult,
) -> StageResult:
    """Attribution over channels and time on the detector's flagged test windows, and its scalp map; cached.

    Args:
        cfg: The explain section (method, how many windows, integration steps).
        ctx: The run's context.
        ingest: The ingest stage's record (``signals/<recording>.npy``, the signals drawn).
        train_detection: The detection training record (``weights.pt``: architecture, channels, normalisation).
        evaluate: The evaluate stage's record (``detection_scored.csv`` and the decision threshold).
    """
    logger = get_run_logger()
    key = stage_key("explain", ingest.key, train_detection.key, evaluate.key, cfg)

    def build(out: Path) -> dict[str, Any]:
        evaluation = json.loads((evaluate.dir / "evaluation.json").read_text())
        scored = pd.read_csv(
            evaluate.dir / "detection_scored.csv",
            dtype={"recording_id": str, "patient": str, "seizure_id": str, "window_id": str},
            keep_default_na=False,
        )
        threshold = float(evaluation["detection"]["threshold"])
        result = explain_eeg(train_detection.dir / "weights.pt", scored, threshold, ingest.dir / "signals", cfg, out)
        keys = ("method", "n_windows", "top_channels", "scalp_map_skipped")
        return {k: result.get(k) for k in keys}

    result = run_stage(StageCache(ctx.cache_root), "explain", key, build, ctx.refreshes("explain"))
    logger.info("explain: %s%s", result.summary, " (cached)" if result.cached else "")
    return result
