"""The seizure report's plots: EEG around test seizures, alarm timelines, window ROC curves and spectra.

An EEG reader wants to see the signal, not only the numbers: snippets around each test seizure with the detector's
probability under them, and per-patient alarm timelines with the seizure onsets marked. Drawn with matplotlib's
object-oriented API like :mod:`tasks.report.plots` (no backend choice, no pyplot state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from tasks.report.plots import fig_to_png


def _draw_traces(ax: Any, traces: np.ndarray, t: np.ndarray, names: list[str]) -> None:
    """Stack ``traces`` (channels, T) in microvolts one under the other, labelled, with a scale mark."""
    step = 2.2 * float(np.percentile(np.abs(traces), 99.5)) + 1e-9  # seizures fit without overlapping
    for i, name in enumerate(names):
        ax.plot(t, traces[i] - i * step, lw=0.4, color="k")
        ax.text(t[0], -i * step, name, fontsize=7, ha="right", va="center")
    ax.text(t[-1], step / 2, f"{step / 2.2:.0f} µV", fontsize=7, ha="right")


def plot_snippets(
    scored: pd.DataFrame,
    seizures: pd.DataFrame,
    signals_dir: Path,
    channels: list[str],
    sfreq: float,
    threshold: float,
    max_plots: int = 6,
    pad_s: float = 60.0,
) -> list[bytes]:
    """EEG around each test seizure (the 4 most active channels) with the detector's probability underneath.

    Args:
        scored: Scored test windows (``recording_id``, ``start_s``, ``end_s``, ``score``).
        seizures: The ingest stage's seizure table (``recording_id``, ``seizure_id``, ``onset_s``, ``offset_s``).
        signals_dir: Folder of ``<recording_id>.npy`` arrays (channels, samples) in volts.
        channels: Channel names, in the arrays' row order.
        sfreq: Sampling rate of the arrays (Hz).
        threshold: The detector's decision threshold, drawn as a dashed line.
        max_plots: At most this many seizures.
        pad_s: Seconds of signal shown before the onset and after the offset.
    """
    out = []
    for _, sz in seizures[seizures["recording_id"].isin(scored["recording_id"])].head(max_plots).iterrows():
        rec = str(sz["recording_id"])
        data = np.load(signals_dir / f"{rec}.npy", mmap_mode="r")
        t0 = max(0.0, float(sz["onset_s"]) - pad_s)
        t1 = min(data.shape[1] / sfreq, float(sz["offset_s"]) + pad_s)
        a, b = int(t0 * sfreq), int(t1 * sfreq)
        ictal = np.asarray(data[:, int(sz["onset_s"] * sfreq) : int(sz["offset_s"] * sfreq)])
        picks = np.sort(np.argsort(-ictal.std(axis=1))[:4])
        fig = Figure(figsize=(9, 3.6))
        ax, axp = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        traces = np.asarray(data[picks, a:b]) * 1e6  # (4, T) in microvolts
        _draw_traces(ax, traces, np.arange(a, b) / sfreq, [channels[c] for c in picks])
        ax.axvspan(float(sz["onset_s"]), float(sz["offset_s"]), color="tab:red", alpha=0.15)
        ax.set(yticks=[], title=f"{rec}: seizure {sz['seizure_id']} ({sz['onset_s']:.0f}-{sz['offset_s']:.0f} s)")
        w = scored[(scored["recording_id"] == rec) & (scored["end_s"] >= t0) & (scored["start_s"] <= t1)]
        axp.plot((w["start_s"] + w["end_s"]) / 2, w["score"], color="tab:blue")
        axp.axhline(threshold, color="tab:orange", ls="--", lw=0.8)
        axp.set(ylim=(0, 1), ylabel="p(ictal)", xlabel="time in recording (s)")
        out.append(fig_to_png(fig))
    return out


def _shade_seizures(ax: Any, seizures: pd.DataFrame, sph_s: float, sop_s: float, t0: float, t1: float) -> None:
    """Onsets (black), each seizure's SOP (red) and SPH (grey) before it, in hours, where they meet [t0, t1]."""
    for _, sz in seizures.iterrows():
        on = float(sz["t_onset_s"])
        if on + 1 < t0 or on - sph_s - sop_s > t1:
            continue
        ax.axvspan((on - sph_s - sop_s) / 3600, (on - sph_s) / 3600, color="tab:red", alpha=0.12, lw=0)
        ax.axvspan((on - sph_s) / 3600, on / 3600, color="0.6", alpha=0.25, lw=0)
        ax.axvline(on / 3600, color="k", lw=1.2)


def plot_alarm_timelines(
    oof: pd.DataFrame, leading: pd.DataFrame, sph_s: float, sop_s: float, max_recordings: int = 40
) -> list[bytes]:
    """Per test recording, as it was scored (whole, in time order, by the fold model that never saw it): the raw
    and causally smoothed preictal probability, the fold's threshold, the alarms, every seizure onset, and the
    SOP (red) and SPH (grey) before each onset.

    Args:
        oof: Scored test windows (``recording_id``, ``t_start_s``, ``t_end_s``, ``score``, ``threshold``; with
            ``smoothed`` and ``alarm`` from the evaluate stage).
        leading: The label stage's seizures (``t_onset_s`` on the patient timeline, ``timeline``).
        sph_s: Seizure prediction horizon (s).
        sop_s: Seizure occurrence period (s).
        max_recordings: At most this many recordings are drawn, those with seizures first.
    """
    order = oof.groupby("recording_id")["pred_label"].max().sort_values(ascending=False, kind="stable").index
    out = []
    for rec in list(order)[:max_recordings]:
        part = oof[oof["recording_id"] == rec].sort_values("t_end_s")
        t = part["t_end_s"].to_numpy(dtype=float)
        hours = t / 3600
        fig = Figure(figsize=(9, 2.2))
        ax = fig.subplots()
        tl = str(part["timeline"].iloc[0]) if "timeline" in part else None
        seizures = leading if tl is None else leading[leading["timeline"].astype(str) == tl]
        _shade_seizures(ax, seizures, sph_s, sop_s, t[0], t[-1])
        ax.scatter(hours, part["score"], s=1.5, color="tab:blue", alpha=0.35, label="window score")
        if "smoothed" in part:  # NaN during each recording's warm-up (read back from csv as empty)
            smoothed = pd.to_numeric(part["smoothed"], errors="coerce")
            ax.plot(hours, smoothed, color="tab:blue", lw=1.0, label="smoothed (causal)")
        ax.step(hours, part["threshold"], color="tab:orange", lw=0.9, where="post", label="fold threshold")
        if "alarm" in part:
            alarms = hours[part["alarm"].astype(str).isin(["True", "true", "1"]).to_numpy()]
            ax.plot(alarms, np.full(alarms.shape, 0.97), "v", color="tab:red", ms=6, label="alarm")
        ax.set(
            xlim=(hours[0], hours[-1]),
            ylim=(0, 1),
            xlabel="hours on the patient timeline",
            ylabel="p(preictal)",
            title=f"{rec}: alarms (red: SOP, grey: SPH before each onset, black: onset)",
        )
        ax.legend(loc="upper left", fontsize=6, ncols=4)
        out.append(fig_to_png(fig))
    return out


def plot_rocs(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes | None:
    """Window ROC curves from ``name -> (labels, scores)``; names with a single class are skipped (None if all)."""
    curves = {k: v for k, v in curves.items() if len(np.unique(v[0])) == 2}
    if not curves:
        return None
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Window ROC")
    ax.legend(loc="lower right", fontsize=8)
    return fig_to_png(fig)


def plot_spectra(spectra: dict[str, Any]) -> bytes | None:
    """Mean log power spectrum per class, real vs synthetic windows (Welch, averaged over channels)."""
    if not spectra:
        return None
    fig = Figure(figsize=(4.2 * len(spectra), 3.0))
    axes = fig.subplots(1, len(spectra), squeeze=False)
    for ax, (name, sp) in zip(axes[0], spectra.items(), strict=True):
        ax.plot(sp["freqs"], sp["real"], label="real")
        ax.plot(sp["freqs"], sp["synthetic"], label="synthetic", linestyle="--")
        ax.set(xlabel="Hz", ylabel="log10 power (normalised units)", title=name)
        ax.legend(fontsize=8)
    return fig_to_png(fig)
