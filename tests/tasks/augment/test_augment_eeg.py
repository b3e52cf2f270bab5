"""The EEG augment stage's plot: a PNG drawn without pyplot, so no global matplotlib backend is chosen."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tasks.augment.eeg import plot_examples


def test_plot_examples_is_a_png() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    png = plot_examples(x, [x * 0.5, -x], 64.0, ["a", "b", "c", "d"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_importing_and_plotting_never_loads_pyplot() -> None:
    code = (
        "import sys, numpy as np; from tasks.augment.eeg import plot_examples; "
        "plot_examples(np.ones((2, 64), np.float32), [np.zeros((2, 64), np.float32)], 64.0, ['a', 'b']); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
