"""Which test images the image explain stage shows, and for which class it explains them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.explain.images import choose_examples, predicted_classes


def test_the_run_threshold_decides_two_classes_and_argmax_more() -> None:
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.8, 0.2]])
    assert predicted_classes(probs, threshold=0.25).tolist() == [1, 1, 0]
    assert predicted_classes(probs, threshold=None).tolist() == [0, 1, 0]
    assert predicted_classes(np.array([[0.2, 0.3, 0.5]]), threshold=0.1).tolist() == [2]


def test_most_confident_correct_and_wrong_per_class() -> None:
    test = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d", "e", "f"],
            "label": [0, 0, 0, 1, 1, 1],
            "prob_1": [0.1, 0.3, 0.9, 0.95, 0.6, 0.2],
        }
    ).assign(prob_0=lambda t: 1 - t["prob_1"])
    picked = choose_examples(test, n_classes=2, threshold=0.5, per_class=1)
    assert picked["sample_id"].tolist() == ["a", "c", "d", "f"]
    assert picked["kind"].tolist() == ["correct", "wrong", "correct", "wrong"]
    assert picked["predicted"].tolist() == [0, 1, 1, 0]
    assert np.allclose(picked["confidence"], [0.9, 0.9, 0.95, 0.8])
    assert len(choose_examples(test, n_classes=2, threshold=0.5, per_class=0)) == 0
