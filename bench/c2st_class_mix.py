"""How much of a C2ST is class mix? Identical class-conditional distributions, the EEG GAN's class mix (50 %
ictal) against the real one (3 % ictal): the plain C2ST vs the class-matched one with its real-vs-real reference.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/c2st_class_mix.py`` (seconds). Gaussian features, 16-d; class 1
shifted by ``--shift`` in every feature (how far a detector's features put ictal from interictal windows).
"""

from __future__ import annotations

import argparse

import numpy as np

from tasks.synth.usefulness import c2st_accuracy, c2st_with_reference


def _draw(rng: np.random.Generator, n0: int, n1: int, shift: float, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([rng.normal(0.0, 1.0, (n0, d)), rng.normal(shift, 1.0, (n1, d))])
    return x, np.r_[np.zeros(n0, dtype=int), np.ones(n1, dtype=int)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--shift", type=float, default=1.0)
    args = parser.parse_args()
    plain, matched, reference = [], [], []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        train, val, synth = (
            _draw(rng, 1940, 60, args.shift),
            _draw(rng, 970, 30, args.shift),
            _draw(rng, 60, 60, args.shift),
        )
        plain.append(c2st_accuracy(train[0], synth[0], seed=seed))
        out = c2st_with_reference(train, val, synth, ("interictal", "ictal"), seed=seed)
        matched.append(out["c2st_accuracy"])
        reference.append(out["c2st_reference"])
    for name, values in (
        ("plain C2ST", plain),
        ("class-matched C2ST", matched),
        ("reference (val vs train)", reference),
    ):
        print(f"{name:26s} mean {np.mean(values):.3f}  sd {np.std(values, ddof=1):.3f}  over {args.seeds} seeds")


if __name__ == "__main__":
    main()
