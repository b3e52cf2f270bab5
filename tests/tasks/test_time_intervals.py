"""Unions of time intervals: merge, measure, intersect and subtract, on hand-made intervals."""

from __future__ import annotations

import numpy as np

from tasks.time_intervals import as_intervals, measure_below, merge_intervals, overlap_measure, subtract_intervals


def test_merge_joins_overlapping_and_touching_intervals_and_drops_empty_ones() -> None:
    merged = merge_intervals(np.array([[5.0, 7.0], [0.0, 2.0], [2.0, 3.0], [6.0, 9.0], [4.0, 4.0]]))
    assert merged == [(0.0, 3.0), (5.0, 9.0)]
    assert merge_intervals(np.zeros((0, 2))) == []
    np.testing.assert_array_equal(as_intervals([(1.0, 2.0), (0.0, 1.5)]), [[0.0, 2.0]])
    assert as_intervals([]).shape == (0, 2)


def test_measures_of_unions() -> None:
    a = as_intervals([(0.0, 10.0), (20.0, 30.0)])
    np.testing.assert_allclose(measure_below(a, np.array([-1.0, 5.0, 15.0, 25.0, 40.0])), [0.0, 5.0, 10.0, 15.0, 20.0])
    assert overlap_measure(a, as_intervals([(5.0, 25.0)])) == 10.0
    assert overlap_measure(a, np.zeros((0, 2))) == 0.0


def test_subtract_cuts_holes_and_keeps_the_rest() -> None:
    a = as_intervals([(0.0, 10.0), (20.0, 30.0)])
    out = subtract_intervals(a, as_intervals([(2.0, 4.0), (8.0, 22.0)]))
    np.testing.assert_array_equal(out, [[0.0, 2.0], [4.0, 8.0], [22.0, 30.0]])
    np.testing.assert_array_equal(subtract_intervals(a, np.zeros((0, 2))), a)
