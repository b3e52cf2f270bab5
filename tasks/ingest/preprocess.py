"""Preprocess an accepted EEG recording into a float32 array: causal band-pass and notch, then polyphase resampling.

:func:`preprocess_recording` turns one EDF into a ``.npy`` of the common channels at one sampling rate, in chunks,
so memory stays flat however long the recording is; its docstring says why the filters are causal.
:func:`preprocess_for_stage` applies the ingest stage's settings to one recording and turns a bad file into its
quarantine reason; it depends on no other recording, so :mod:`tasks.ingest.fanout` can run it anywhere.
:func:`drop_failed` then moves the recordings that failed into the discovery's quarantine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Literal

import mne
import numpy as np
from scipy import signal

from tasks.config import EegIngestConfig
from tasks.edf import (
    EdfHeaderError,
    channel_key,
    file_channels,
    header_secrets,
    open_raw,
    read_edf_header,
    scrub,
)
from tasks.ingest.discovery import Discovery, quarantine_row


@dataclass(frozen=True)
class RecordingMeta:
    """What :func:`preprocess_recording` wrote.

    Attributes:
        path: The EDF read.
        out_path: The ``.npy`` written: float32, shape (n_channels, n_samples), volts, C order.
        channels: Channel names in the array's row order (the requested names).
        sfreq_in: Sampling rate of the EDF in Hz.
        sfreq_out: Sampling rate of the array in Hz.
        n_samples: Samples per channel in the array.
        l_freq: High-pass corner in Hz (``None``: none).
        h_freq: Low-pass corner in Hz (``None``: none, because it was at or above the input's Nyquist frequency).
        notch_hz: Mains frequency notched out (with its harmonics below Nyquist), ``None`` for no notch.
        filter: Human-readable description of the filter chain, for reports and ``model.pt``.
    """

    path: Path
    out_path: Path
    channels: list[str]
    sfreq_in: float
    sfreq_out: float
    n_samples: int
    l_freq: float | None
    h_freq: float | None
    notch_hz: float | None
    filter: str

    @property
    def duration_s(self) -> float:
        """Length of the array in seconds."""
        return self.n_samples / self.sfreq_out


# ----------------------------------------------------------------------------------------------------- filters
def line_frequency(
    data: np.ndarray, sfreq: float, *, candidates: Sequence[float] = (50.0, 60.0), min_ratio_db: float = 10.0
) -> float | None:
    """Detect mains interference: the candidate frequency whose spectral peak stands out most from its neighbours.

    Welch's PSD (4-s Hann segments, 0.25 Hz bins), averaged over channels; a candidate counts if the largest bin
    within +-0.5 Hz of it exceeds the median of the bins 1.5-5 Hz away on both sides by ``min_ratio_db``. Mains
    pickup is a narrow line, EEG near 50-60 Hz is broad, so the ratio separates them without knowing the country.

    Args:
        data: (n_channels, n_samples) signal, any unit.
        sfreq: Sampling rate in Hz.
        candidates: Mains frequencies to test, in Hz.
        min_ratio_db: How far the peak must stand out, in dB.

    Returns:
        The detected frequency in Hz, or ``None`` if no candidate stands out (or the data are too short).
    """
    data = np.atleast_2d(np.asarray(data, dtype=np.float64))
    nperseg = int(min(data.shape[1], round(4 * sfreq)))
    if nperseg < sfreq:  # less than 1 s: no usable resolution
        return None
    freqs, psd = signal.welch(data, fs=sfreq, nperseg=nperseg, axis=1)
    psd = psd.mean(axis=0)
    best, best_db = None, min_ratio_db
    for f0 in candidates:
        if f0 + 5 >= sfreq / 2:
            continue
        peak = psd[np.abs(freqs - f0) <= 0.5].max()
        side = psd[(np.abs(freqs - f0) >= 1.5) & (np.abs(freqs - f0) <= 5)]
        ref = np.median(side)
        if ref <= 0:
            continue
        ratio_db = 10 * np.log10(peak / ref)
        if ratio_db > best_db:
            best, best_db = float(f0), ratio_db
    return best


def _resample_ratio(sfreq_in: float, sfreq_out: float) -> tuple[int, int]:
    """(up, down) with sfreq_out = sfreq_in * up / down, as a fraction of small integers (polyphase resampling)."""
    exact = Fraction(sfreq_out).limit_denominator(10**6) / Fraction(sfreq_in).limit_denominator(10**6)
    approx = exact.limit_denominator(1000)
    if abs(approx - exact) > 1e-4 * exact:
        raise ValueError(
            f"resampling {sfreq_in:g} Hz to {sfreq_out:g} Hz needs a ratio of small integers (found {approx}, off by "
            f"{float(abs(approx - exact) / exact):.2g}); choose an sfreq_out that is"
        )
    return approx.numerator, approx.denominator


def _design_filter(
    sfreq_in: float,
    sfreq_out: float,
    l_freq: float | None,
    h_freq: float | None,
    notch_hz: float | None,
    order: int,
    notch_q: float = 30.0,
) -> tuple[np.ndarray | None, float | None, str]:
    """The filter cascade as second-order sections, the low-pass actually applied, and a description."""
    sections, parts = [], []
    if l_freq is not None:
        sections.append(signal.butter(order, l_freq, btype="highpass", fs=sfreq_in, output="sos"))
        parts.append(f"high-pass {l_freq:g} Hz")
    applied_h = None
    if h_freq is not None and h_freq < 0.5 * sfreq_in:
        sections.append(signal.butter(order, h_freq, btype="lowpass", fs=sfreq_in, output="sos"))
        parts.append(f"low-pass {h_freq:g} Hz")
        applied_h = h_freq
    text = f"causal Butterworth order {order} " + ", ".join(parts) if parts else "no band-pass"
    if notch_hz is not None:
        limit = 0.5 * min(sfreq_in, sfreq_out) - 1.0
        lines = [k * notch_hz for k in range(1, 20) if k * notch_hz < limit]
        for f in lines:
            b, a = signal.iirnotch(f, notch_q, fs=sfreq_in)
            sections.append(signal.tf2sos(b, a))
        text += f"; causal IIR notch Q={notch_q:g} at {', '.join(f'{f:g}' for f in lines)} Hz"
    up, down = _resample_ratio(sfreq_in, sfreq_out)
    if up != down:
        text += f"; polyphase resampling {sfreq_in:g} -> {sfreq_out:g} Hz (scipy resample_poly, up {up}, down {down})"
    sos = np.vstack(sections) if sections else None
    return sos, applied_h, text


def filter_resample_stream(
    read: Callable[[int, int], np.ndarray],
    n_in: int,
    sos: np.ndarray | None,
    up: int,
    down: int,
    chunk: int,
    init_samples: int = 256,
) -> Iterator[tuple[int, np.ndarray]]:
    """Filter and resample a long signal chunk by chunk, giving the same result as doing it in one go.

    The IIR cascade runs causally with its state carried from chunk to chunk (``sosfilt`` ``zi``), so chunk
    borders leave no trace. It starts in the steady state for the mean of the first ``init_samples`` samples (read
    separately, so the start does not depend on the chunk size): a DC offset then does not ring through the
    first seconds, as it would from a zero state or from a noisy first sample.

    ``resample_poly`` is not stateful, so each output block is computed from the filtered input with ``pad``
    samples of context on both sides (more than the polyphase filter's half-length) and block borders fall on
    multiples of ``down``, where input and output grids meet; the output equals ``resample_poly`` over the whole
    filtered signal (including its zero-padded ends), to float rounding.
    Memory: one chunk plus 2 x ``pad`` samples per channel.

    Args:
        read: ``read(start, stop)`` returns input samples [start, stop) as (n_channels, stop - start).
        n_in: Input length in samples.
        sos: Second-order sections at the input rate, or ``None``.
        up, down: Resampling factors (output rate = input rate x up / down).
        chunk: Input samples per read (rounded up to a multiple of ``down``, at least 2 x pad + down).
        init_samples: Samples averaged for the filter's initial state (about a second is plenty).

    Yields:
        ``(output_start, block)``: consecutive, non-overlapping (n_channels, k) float64 blocks covering
        ``ceil(n_in * up / down)`` output samples.
    """
    resample = up != down
    pad = down * math.ceil((10 * max(up, down) / up + 2) / down) if resample else 0
    chunk = max(down * math.ceil(chunk / down), 2 * pad + down)
    n_out = -(-n_in * up // down)
    zi = None
    if sos is not None:
        level = np.asarray(read(0, max(1, min(n_in, init_samples))), dtype=np.float64).mean(axis=1)
        zi = signal.sosfilt_zi(sos)[:, None, :] * level[None, :, None]  # (sections, C, 2)
    buf: np.ndarray | None = None
    buf_start = emitted = 0
    for a in range(0, n_in, chunk):
        b = min(a + chunk, n_in)
        x = np.asarray(read(a, b), dtype=np.float64)
        if sos is not None:
            x, zi = signal.sosfilt(sos, x, axis=1, zi=zi)
        buf = x if buf is None else np.concatenate([buf, x], axis=1)
        last = b == n_in
        end = n_in if last else (b - pad) // down * down
        if end <= emitted:
            continue
        seg_lo = max(0, emitted - pad)  # a multiple of down, like emitted and pad
        seg = buf[:, seg_lo - buf_start : (n_in if last else end + pad) - buf_start]
        if resample:
            y, o_seg = signal.resample_poly(seg, up, down, axis=1), seg_lo * up // down
        else:
            y, o_seg = seg, seg_lo
        o0, o1 = emitted * up // down, (n_out if last else end * up // down)
        yield o0, y[:, o0 - o_seg : o1 - o_seg]
        emitted = end
        keep = max(0, emitted - pad)
        buf, buf_start = buf[:, keep - buf_start :], keep


def _detect_line(raw: mne.io.BaseRaw, picks: list[str], sfreq: float) -> float | None:
    """:func:`line_frequency` on six 10-s excerpts spread over the recording (cheap, and robust to one bad stretch)."""
    seg = int(min(raw.n_times, round(10 * sfreq)))
    starts = sorted({int(s) for s in np.linspace(0, raw.n_times - seg, 6)})
    data = np.concatenate([raw.get_data(picks=picks, start=s, stop=s + seg) for s in starts], axis=1)
    return line_frequency(data, sfreq)


def preprocess_recording(
    path: Path,
    channels: Sequence[str],
    out_path: Path,
    *,
    sfreq_out: float = 256.0,
    l_freq: float | None = 0.5,
    h_freq: float | None = None,
    notch: float | Literal["auto"] | None = "auto",
    order: int = 4,
    chunk_s: float = 60.0,
) -> RecordingMeta:
    """Write one EDF's ``channels`` as a float32 (n_channels, n_samples) ``.npy`` in volts at ``sfreq_out``.

    Filter design: IIR Butterworth high-pass and low-pass (order ``order`` each) and IIR notches at the mains
    frequency and its harmonics, run **causally** with the state carried across chunks, then polyphase
    resampling (:func:`filter_resample_stream`). Why causal rather than zero-phase: (1) it is exact in chunks,
    with no overlap to tune and no seams, in one pass; (2) it is the filter a bedside or implanted device can run,
    so models are trained on what they will see online; (3) a zero-phase filter runs backwards too and smears
    each seizure's onset into the preceding seconds, which leaks the answer into preictal and interictal windows.
    The cost is phase delay: for the defaults at 256 Hz, about 2-8 ms at 5-20 Hz, 23 ms at 3 Hz and up to 0.4 s
    at 1 Hz, against 4-s windows and one-second label resolution.

    Memory stays flat: the EDF is read with ``mne.io.read_raw_edf(preload=False)`` ``chunk_s`` seconds at a time,
    and the output file is created (header and full size) with ``np.lib.format.open_memmap`` but filled with
    positioned writes of each block's rows rather than through the mapping: pages touched through a mapping
    count towards the process's resident memory while it is mapped, and the kernel maps read-around neighbours
    with them (about 30 MB extra measured on an 8-h recording, against none with plain writes). The array is
    written under ``<name>.partial`` and renamed when complete, so a crash never leaves a file that looks
    finished.

    Args:
        path: The EDF file (read-only).
        channels: Channel names to write, in this order (matched ignoring case and surrounding spaces; a repeated
            name resolves to its first signal).
        out_path: The ``.npy`` to write (its folder is created).
        sfreq_out: Output sampling rate in Hz.
        l_freq: High-pass corner in Hz (``None``: no high-pass; DC and drift stay).
        h_freq: Low-pass corner in Hz; ``None`` means min(70, 0.45 x sfreq_out). Skipped when at or above the
            input's Nyquist frequency (nothing to remove; resampling band-limits anyway).
        notch: Mains frequency in Hz, ``"auto"`` (detect 50 or 60 Hz with :func:`line_frequency`; no notch if
            neither stands out), or ``None``.
        order: Butterworth order of each of the high- and low-pass filters.
        chunk_s: Seconds of input processed at a time.

    Returns:
        What was written (rates, filter description, sample count).

    Raises:
        EdfHeaderError: If the header is corrupt or the file truncated.
        ValueError: If MNE cannot read the file, a channel is missing, or the filter settings are impossible;
            the message names the file or the setting.
    """
    path, out_path = Path(path), Path(out_path)
    h = _checked_low_pass(path, channels, sfreq_out, l_freq, h_freq)
    raw, picks = _open_picks(path, channels)
    sfreq_in = float(raw.info["sfreq"])
    notch_hz = _notch_hz(notch, raw, picks, sfreq_in)
    up, down = _resample_ratio(sfreq_in, sfreq_out)
    sos, applied_h, description = _design_filter(sfreq_in, sfreq_out, l_freq, h, notch_hz, order)

    n_in, chunk = int(raw.n_times), max(1, int(round(chunk_s * sfreq_in)))
    n_out = -(-n_in * up // down)
    read = partial(_read_picks, raw, picks)
    stream = filter_resample_stream(read, n_in, sos, up, down, chunk, init_samples=int(sfreq_in))
    _write_npy(path, out_path, stream, len(channels), n_out)
    return RecordingMeta(
        path=path,
        out_path=out_path,
        channels=[str(n).strip() for n in channels],
        sfreq_in=sfreq_in,
        sfreq_out=sfreq_in * up / down,
        n_samples=n_out,
        l_freq=l_freq,
        h_freq=applied_h,
        notch_hz=notch_hz,
        filter=description,
    )


def _read_picks(raw: mne.io.BaseRaw, picks: list[str], start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of ``picks``, in volts, as (n_picks, stop - start)."""
    return raw.get_data(picks=picks, start=start, stop=stop)


def _checked_low_pass(
    path: Path, channels: Sequence[str], sfreq_out: float, l_freq: float | None, h_freq: float | None
) -> float:
    """The low-pass corner in Hz (``None`` resolved to min(70, 0.45 x sfreq_out)) after checking the settings;
    a ``ValueError`` names the impossible one."""
    if not channels:
        raise ValueError(f"{path}: no channels requested")
    if not sfreq_out > 0:
        raise ValueError(f"sfreq_out={sfreq_out}: must be > 0 Hz")
    h = min(70.0, 0.45 * sfreq_out) if h_freq is None else float(h_freq)
    if h >= 0.5 * sfreq_out:
        raise ValueError(f"h_freq={h:g} Hz: must be below the output Nyquist frequency {0.5 * sfreq_out:g} Hz")
    if l_freq is not None and not 0 < l_freq < h:
        raise ValueError(f"l_freq={l_freq:g} Hz: must be > 0 and below h_freq={h:g} Hz")
    return h


def _open_picks(path: Path, channels: Sequence[str]) -> tuple[mne.io.BaseRaw, list[str]]:
    """The checked, lazily opened recording and MNE's names of ``channels`` in it (matched by
    :func:`tasks.edf.channel_key`; a repeated name resolves to its first signal)."""
    header = read_edf_header(path)
    secrets = header_secrets(path)
    try:
        raw = open_raw(path)
    except Exception as exc:
        # ``from None``: the chained original could quote the header's identifying fields.
        text = scrub(str(exc), secrets, keep=[str(path), path.name])  # only MNE's words can quote the header
        raise ValueError(f"{path}: MNE cannot read it ({type(exc).__name__}: {text})") from None
    by_key = {ch.key: ch for ch in file_channels(header, raw.ch_names).usable}
    missing = [n for n in channels if channel_key(n) not in by_key]
    if missing:
        raise ValueError(
            f"{path}: lacks channel(s) {', '.join(missing)} (it has {', '.join(by_key[k].name for k in by_key)})"
        )
    return raw, [by_key[channel_key(n)].mne_name for n in channels]


def _notch_hz(
    notch: float | Literal["auto"] | None, raw: mne.io.BaseRaw, picks: list[str], sfreq_in: float
) -> float | None:
    """The mains frequency to notch out: detected for ``"auto"``, none for ``None``, else ``notch`` checked."""
    if notch == "auto":
        return _detect_line(raw, picks, sfreq_in)
    if notch is None:
        return None
    notch_hz = float(notch)
    if not 0 < notch_hz < 0.5 * sfreq_in:
        raise ValueError(f"notch={notch}: must be between 0 and the input Nyquist {0.5 * sfreq_in:g} Hz")
    return notch_hz


def _write_npy(
    path: Path, out_path: Path, stream: Iterator[tuple[int, np.ndarray]], n_channels: int, n_out: int
) -> None:
    """Write the stream's (n_channels, k) blocks as a float32 (n_channels, n_out) ``.npy``, via ``.partial``.

    The file is created (header and full size) with ``open_memmap`` but filled with positioned writes: pages
    touched through a mapping would count towards resident memory (see :func:`preprocess_recording`).
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    created = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_channels, n_out))
    data_offset = created.offset  # bytes of .npy header; rows follow, C order
    del created
    try:
        written = 0
        with tmp.open("r+b") as fh:
            for o0, block in stream:
                if not np.isfinite(block).all():
                    raise ValueError(f"{path}: non-finite values after filtering near output sample {o0}")
                rows = np.ascontiguousarray(block, dtype="<f4")
                for c, row in enumerate(rows):  # row c of the (C, n_out) array starts at c * n_out samples
                    fh.seek(data_offset + 4 * (c * n_out + o0))
                    fh.write(row.data)
                written = o0 + block.shape[1]
        if written != n_out:
            raise RuntimeError(f"{path}: wrote {written} of {n_out} samples (a bug in the chunking)")
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def preprocess_for_stage(
    path: Path, recording_id: str, channels: Sequence[str], out_dir: Path, cfg: EegIngestConfig
) -> RecordingMeta | str:
    """:func:`preprocess_recording` of one accepted recording with the stage's settings, into
    ``signal_path(out_dir, recording_id)``; a bad file's error becomes its quarantine reason instead of a raise.

    It depends on no other recording (ids are unique, so no two calls write the same file), so it can run in any
    process that reads ``path`` and writes ``out_dir``.

    Args:
        path: The EDF file.
        recording_id: Its id (names the output file).
        channels: The common channel set, in array row order.
        out_dir: The stage's output folder.
        cfg: The ingest settings (``sfreq``, ``l_freq``, ``h_freq``, ``notch``).

    Returns:
        What was written, or the reason the recording is quarantined (header, MNE, channel or filter errors).
    """
    try:
        return preprocess_recording(
            Path(path),
            channels,
            signal_path(out_dir, recording_id),
            sfreq_out=cfg.sfreq,
            l_freq=cfg.l_freq,
            h_freq=cfg.h_freq,
            notch=cfg.notch,
        )
    except (EdfHeaderError, ValueError, OSError) as exc:
        return str(exc)


def drop_failed(discovery: Discovery, outcomes: Sequence[RecordingMeta | str]) -> Discovery:
    """The discovery without the recordings whose preprocessing failed; they join the quarantine, in order.

    Args:
        discovery: What :func:`~tasks.ingest.discovery.discover_recordings` (or
            :func:`~tasks.ingest.discovery.settle_discovery`) returned.
        outcomes: :func:`preprocess_for_stage` of each of ``discovery.recordings``, same order.

    Returns:
        A new :class:`~tasks.ingest.discovery.Discovery`; ``discovery`` is left as it was.

    Raises:
        ValueError: If ``outcomes`` does not hold one outcome per recording.
    """
    if len(outcomes) != len(discovery.recordings):
        raise ValueError(f"{len(outcomes)} preprocessing outcomes for {len(discovery.recordings)} recordings")
    kept = [rec for rec, out in zip(discovery.recordings, outcomes, strict=True) if not isinstance(out, str)]
    failed = [quarantine_row(rec.path, out) for rec, out in zip(discovery.recordings, outcomes, strict=True)
              if isinstance(out, str)]  # fmt: skip
    return Discovery(kept, [*discovery.quarantine, *failed], list(discovery.notes), list(discovery.channels))


# ---------------------------------------------------------------------------------------------------- tables
def signal_path(out_dir: Path, recording_id: str) -> Path:
    """Where a recording's preprocessed array lives: ``<out_dir>/signals/<recording_id>.npy``."""
    return Path(out_dir) / "signals" / f"{recording_id}.npy"
