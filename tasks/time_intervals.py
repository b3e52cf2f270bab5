"""Unions of time intervals in seconds: merging, measuring, intersecting and subtracting them.

Seizure-detection events are merged decision periods and seizure-prediction scoring measures monitored,
interictal and warning time, all as sorted, disjoint ``(start_s, end_s)`` intervals. Pure numpy, no pandas.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

#: Float slack when comparing times in seconds (window times are sample counts / sfreq).
EPS_S = 1e-6


def merge_intervals(intervals: np.ndarray) -> list[tuple[float, float]]:
    """Union of ``(n, 2)`` intervals as a sorted list of disjoint ``(start, end)`` pairs."""
    iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    iv = iv[iv[:, 1] > iv[:, 0]]
    if not len(iv):
        return []
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    ends = np.maximum.accumulate(iv[:, 1])
    new = np.concatenate([[True], iv[1:, 0] > ends[:-1] + EPS_S])
    starts = iv[new, 0]
    stops = np.maximum.reduceat(iv[:, 1], np.flatnonzero(new))
    return [(float(a), float(b)) for a, b in zip(starts, stops, strict=True)]


def as_intervals(intervals: Iterable[Sequence[float]]) -> np.ndarray:
    """Any ``(start, end)`` pairs as a sorted, disjoint ``(n, 2)`` float64 array (their union)."""
    merged = merge_intervals(np.asarray(list(intervals), dtype=np.float64).reshape(-1, 2))
    return np.asarray(merged, dtype=np.float64).reshape(-1, 2)


def measure_below(disjoint: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Measure of ``disjoint`` (sorted, disjoint intervals) below each time in ``t``."""
    if not len(disjoint):
        return np.zeros_like(t, dtype=np.float64)
    lengths = disjoint[:, 1] - disjoint[:, 0]
    before = np.concatenate([[0.0], np.cumsum(lengths)])
    j = np.searchsorted(disjoint[:, 0], t, side="right") - 1
    inside = np.clip(t - disjoint[np.maximum(j, 0), 0], 0.0, lengths[np.maximum(j, 0)])
    return np.where(j >= 0, before[np.maximum(j, 0)] + inside, 0.0)


def overlap_measure(a: np.ndarray, b: np.ndarray) -> float:
    """Measure of the intersection of two unions of sorted, disjoint intervals."""
    if not len(a) or not len(b):
        return 0.0
    return float(np.sum(measure_below(b, a[:, 1]) - measure_below(b, a[:, 0])))


def subtract_intervals(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intervals of ``a`` minus ``b`` (both sorted and disjoint)."""
    out = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b[(b[:, 1] > lo) & (b[:, 0] < hi)] if len(b) else []:
            if blo > cur:
                out.append((cur, blo))
            cur = max(cur, bhi)
        if hi > cur:
            out.append((cur, hi))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)
