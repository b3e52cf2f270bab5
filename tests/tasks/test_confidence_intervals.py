"""Exact intervals: Clopper-Pearson for proportions, Poisson for rates."""

from __future__ import annotations

import pytest

from tasks.confidence_intervals import clopper_pearson, poisson_rate_interval


def test_clopper_pearson_and_poisson_known_values() -> None:
    assert clopper_pearson(9, 9) == [pytest.approx(0.025 ** (1 / 9)), 1.0]
    assert clopper_pearson(0, 5) == [0.0, pytest.approx(1 - 0.025 ** (1 / 5))]
    assert clopper_pearson(0, 0) is None
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.1871, abs=1e-4) and high == pytest.approx(0.8129, abs=1e-4)
    with pytest.raises(ValueError, match="within"):
        clopper_pearson(3, 2)
    low, high = poisson_rate_interval(0, 2.0)
    assert low == 0.0 and high == pytest.approx(3.6889 / 2.0, abs=1e-4)  # 3.69 events for none seen
    low, high = poisson_rate_interval(10, 5.0)
    assert low == pytest.approx(4.7954 / 5, abs=1e-4) and high == pytest.approx(18.3904 / 5, abs=1e-4)
    assert poisson_rate_interval(3, 0.0) is None
