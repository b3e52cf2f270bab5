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


def plot_alarm_timelines(oof: pd.DataFrame, leading: pd.DataFrame, sph_s: float, sop_s: float) -> list[bytes]:
    """Per patient: out-of-fold preictal probability over the patient timeline, thresholds and onsets.

    Args:
        oof: Out-of-fold scored windows (``patient``, ``t_start_s``, ``score``, ``pred_label``, ``threshold``,
            ``lead_seizure_id``).
        leading: The label stage's leading seizures (``seizure_id``, ``t_onset_s`` on the patient timeline).
        sph_s: Seizure prediction horizon (s): the gap between the warning period and the onset.
        sop_s: Seizure occurrence period (s): the warning period, shaded.
    """
    out = []
    for patient, part in oof.groupby("patient"):
        part = part.sort_values("t_start_s")
        fig = Figure(figsize=(9, 2.4))
        ax = fig.subplots()
        hours = part["t_start_s"] / 3600
        ax.scatter(hours, part["score"], s=2, c=np.where(part["pred_label"] == 1, "tab:red", "tab:blue"))
        ax.plot(hours, part["threshold"], color="tab:orange", lw=0.8, label="fold threshold")
        for _, sz in leading[leading["seizure_id"].isin(part["lead_seizure_id"])].iterrows():
            ax.axvline(float(sz["t_onset_s"]) / 3600, color="k", lw=1)
            ax.axvspan(
                (sz["t_onset_s"] - sph_s - sop_s) / 3600, (sz["t_onset_s"] - sph_s) / 3600, color="tab:red", alpha=0.08
            )
        ax.set(
            ylim=(0, 1),
            xlabel="hours on the patient timeline",
            ylabel="p(preictal)",
            title=f"{patient}: out-of-fold scores (red: preictal windows; shaded: SOP; black: onset)",
        )
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
