"""Placing EEG channels on the head for the scalp map, and saying why a montage gets none."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.explain.scalp import MIN_ELECTRODES, channel_position, electrode_positions, scalp_layout

CHBMIT = [
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4",
    "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ",
]  # fmt: skip


def test_bipolar_channels_sit_at_their_electrodes_midpoint() -> None:
    pos = electrode_positions()
    assert np.allclose(channel_position("FP1-F7", pos), (pos["FP1"] + pos["F7"]) / 2)
    assert np.allclose(channel_position("t8-p8-0", pos), (pos["T8"] + pos["P8"]) / 2)  # CHB-MIT duplicate suffix
    assert np.allclose(channel_position("EEG C3-REF", pos), pos["C3"])  # referential: the electrode itself
    assert np.allclose(channel_position("C3-A2", pos), pos["C3"])  # an ear reference is not where the signal is
    assert channel_position("ECG", pos) is None and channel_position("X1-X2", pos) is None


def test_the_double_banana_gives_a_map() -> None:
    labels, values, reason = scalp_layout(CHBMIT, np.arange(18.0))
    assert reason is None and len(labels) == 18 and values.tolist() == list(np.arange(18.0))


def test_channels_on_one_spot_are_averaged() -> None:
    labels, values, reason = scalp_layout(CHBMIT[:4] + ["T8-P8-0", "T8-P8-1"], np.array([1.0, 1, 1, 1, 2, 4]))
    assert reason is None and labels.keys() >= {"T8-P8-0/T8-P8-1"} and values[-1] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (["FP1-F7"], "1 of 1 channel(s) could be placed"),  # a single-channel clip
        (["ECG", "EMG", "RESP", "X1"], "0 of 4 channel(s)"),  # names MNE cannot place
        (["FP1-F7", "FP1-F7", "F7-T7", "T7-P7"], "at 3 distinct spot(s)"),  # 4 channels, 3 places
    ],
)
def test_a_montage_without_enough_placeable_electrodes_is_skipped_with_a_reason(
    channels: list[str], expected: str
) -> None:
    labels, values, reason = scalp_layout(channels, np.ones(len(channels)))
    assert not labels and values.size == 0
    assert reason is not None and expected in reason and f"at least {MIN_ELECTRODES}" in reason
    if channels[0] == "ECG":
        assert "not placeable: ECG, EMG, RESP, X1" in reason
