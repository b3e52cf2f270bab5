"""False-significance rate of the prediction p-values over 1,000 random-score seeds (issue 12).

Feeds random window scores (and, second, a handful of random alarms) through the real scoring path on the
leave-one-seizure-out layout of the calibration test, and prints how often each p-value falls below 0.05 (the
nominal rate is 5 %), beside the pre-#12 Schelter formula (rate = false alarms / interictal hours, an approximation
of the landed code on the new layout) on the same runs.

Run from the repository root: ``python bench/eeg_pvalue_calibration.py`` (about 30 s on 2 quiet cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "tasks" / "evaluate")]

from test_prediction_significance import _chance_run, loso  # noqa: E402

from tasks.evaluate.prediction_scoring import score_layout  # noqa: E402
from tasks.evaluate.prediction_significance import schelter_p_value  # noqa: E402


def _rates(runs: list[dict]) -> tuple[float, float, float]:
    p = np.array([r["p_value"] for r in runs])
    surrogate = np.array([r["p_value_surrogate"] for r in runs])
    old = np.array(
        [
            schelter_p_value(r["n_seizures"], r["n_predicted"], r["n_false_alarms"] / r["interictal_h"], 600.0)
            for r in runs
        ]
    )
    return float((p < 0.05).mean()), float((surrogate < 0.05).mean()), float((old < 0.05).mean())


def main() -> None:
    layout = loso.__wrapped__()
    random_scores = [_chance_run(layout, seed) for seed in range(1000)]
    zero_fa = np.mean([r["n_false_alarms"] == 0 for r in random_scores])
    p, surrogate, old = _rates(random_scores)
    print(f"random scores: p<.05 {p:.3f}, surrogate {surrogate:.3f}, old formula {old:.3f}, zero-FA {zero_fa:.3f}")
    n = len(layout["test"])
    few = []
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        scores = np.zeros(n)
        scores[rng.integers(0, n, 1 + rng.poisson(3))] = 1.0
        few.append(score_layout(layout["test_layout"], scores, 0.5, 600.0, 120.0, 1, n_surrogates=100, seed=seed))
    lucky = np.mean([r["n_false_alarms"] == 0 and r["n_predicted"] > 0 for r in few])
    p, surrogate, old = _rates(few)
    print(f"few alarms: p<.05 {p:.3f}, surrogate {surrogate:.3f}, old formula {old:.3f}, lucky {lucky:.3f}")


if __name__ == "__main__":
    main()
