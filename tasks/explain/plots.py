"""The explain stage's pictures: image overlays, EEG attribution under the trace, and the scalp map.

Drawn with matplotlib's object-oriented API (``Figure`` + ``savefig``, the Agg canvas) like the report's plots: no
backend is chosen and no pyplot state is touched. The stage writes the PNGs into its cache entry; the report
inlines them.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def fig_to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at 90 dpi, cropped to its content."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _show(ax: Any, image: np.ndarray) -> None:
    """An ``(H, W, C)`` image in [0, 1], grey or RGB."""
    ax.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_overlays(
    images: np.ndarray, gradcams: np.ndarray, limes: np.ndarray, titles: list[str], kinds: list[str]
) -> bytes:
    """One column per image: the image, its Grad-CAM overlay (what spoke for the explained class) and its LIME
    overlay (superpixels for the class in red, against it in blue).

    Args:
        images: ``(N, H, W, C)`` in [0, 1], as the model saw them before normalisation.
        gradcams: ``(N, H, W)`` Grad-CAM maps (ReLU'd, upsampled to the image).
        limes: ``(N, H, W)`` LIME weights per pixel (its superpixel's weight).
        titles: One title per image (true and predicted class, confidence).
        kinds: ``correct`` or ``wrong`` per image (wrong ones get a red title).
    """
    n = len(images)
    fig = Figure(figsize=(1.9 * n + 0.6, 6.0))
    axes = fig.subplots(3, n, squeeze=False)
    for j in range(n):
        _show(axes[0][j], images[j])
        axes[0][j].set_title(titles[j], fontsize=7, color="tab:red" if kinds[j] == "wrong" else "black")
        _show(axes[1][j], images[j])
        cam = gradcams[j] / (gradcams[j].max() + 1e-12)
        axes[1][j].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        _show(axes[2][j], images[j])
        lim = float(np.abs(limes[j]).max()) or 1.0
        axes[2][j].imshow(limes[j], cmap="bwr", alpha=0.5, vmin=-lim, vmax=lim)
    axes[0][0].set_ylabel("image", fontsize=8)
    axes[1][0].set_ylabel("Grad-CAM", fontsize=8)
    axes[2][0].set_ylabel("LIME", fontsize=8)
    return fig_to_png(fig)


def plot_deletion(curves: dict[str, np.ndarray]) -> bytes:
    """Mean deletion curves (explained class probability vs fraction of pixels removed), one line per order."""
    fig = Figure(figsize=(4.2, 3.0))
    ax = fig.subplots()
    for name, curve in curves.items():
        ax.plot(np.linspace(0, 1, len(curve)), curve, label=name)
    ax.set(xlabel="fraction of pixels removed", ylabel="probability of the explained class", ylim=(0, 1))
    ax.set_title("Deletion (lower area = more faithful map)", fontsize=9)
    ax.legend(fontsize=8)
    return fig_to_png(fig)


def plot_eeg_attribution(
    traces: np.ndarray, attribution: np.ndarray, channels: list[str], sfreq: float, start_s: float, title: str
) -> bytes:
    """An EEG window (channels stacked, microvolts) with its attribution drawn under it, channel by channel.

    Args:
        traces: ``(C, T)`` signal in volts.
        attribution: ``(C, T)`` attribution toward "seizure" (same shape), drawn as |attribution| on one shared scale.
        channels: Channel names in row order.
        sfreq: Sampling rate (Hz).
        start_s: Window start in the recording (s).
        title: Figure title.
    """
    n_chans, n_times = traces.shape
    t = start_s + np.arange(n_times) / sfreq
    fig = Figure(figsize=(9, 2.0 + 0.32 * n_chans))
    ax, axa = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    uv = traces * 1e6
    step = 2.2 * float(np.percentile(np.abs(uv), 99.5)) + 1e-9
    for i, name in enumerate(channels):
        ax.plot(t, uv[i] - i * step, lw=0.4, color="k")
        ax.text(t[0], -i * step, name + " ", fontsize=6, ha="right", va="center")
    ax.text(t[-1], step / 2, f"{step / 2.2:.0f} µV", fontsize=7, ha="right")
    ax.set(yticks=[], title=title)
    mag = np.abs(attribution)
    axa.imshow(
        mag, aspect="auto", cmap="magma", extent=(t[0], t[-1] + 1 / sfreq, n_chans - 0.5, -0.5), interpolation="none"
    )
    axa.set_yticks(range(n_chans), channels, fontsize=5)
    axa.set(xlabel="time in recording (s)", ylabel="|attribution|")
    return fig_to_png(fig)


def plot_scalp_map(importance: np.ndarray, info: Any, title: str) -> bytes:
    """Channel importance on the head through MNE's ``plot_topomap`` (``info`` carries the positions)."""
    from mne.viz import plot_topomap  # MNE's plotting imports take ~0.5 s: only when a map is drawn

    fig = Figure(figsize=(3.6, 3.2))
    ax = fig.subplots()
    image, _ = plot_topomap(importance, info, axes=ax, show=False, cmap="magma", contours=0)
    fig.colorbar(image, ax=ax, shrink=0.7, label="share of |attribution|")
    ax.set_title(title, fontsize=9)
    return fig_to_png(fig)
