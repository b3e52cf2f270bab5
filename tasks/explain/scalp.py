"""Where an EEG channel sits on the head, so channel importance can be drawn as a scalp map through MNE.

Channel names are matched, case-insensitively, against MNE's ``standard_1020`` montage (older names such as T3/T5
included). A bipolar channel ``A-B`` (CHB-MIT's double banana: ``FP1-F7``, ``T8-P8-0``, ...) sits at the midpoint
of its two electrodes, where the potential difference it records arises; a referential channel (``C3``, ``EEG C3-REF``,
``C3-A2``: ear and mastoid references A1/A2/M1/M2 are not where the signal comes from) sits at its electrode. Tokens
that are not electrodes (``EEG``, ``REF``, a numeric suffix) are ignored. Channels that land on the same spot are
averaged. A map is drawn only with at least :data:`MIN_ELECTRODES` distinct places; otherwise the reason is returned
and the report states it (a single-channel clip has no scalp distribution to show).
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache

import numpy as np

#: Fewest distinct scalp positions a map is drawn from (fewer cannot show a distribution over the head).
MIN_ELECTRODES = 4
_REFERENCES = {"A1", "A2", "M1", "M2"}


@lru_cache(maxsize=1)
def electrode_positions() -> dict[str, np.ndarray]:
    """Upper-case electrode name -> 3-D head position (m) of MNE's standard 10-20 montage."""
    import mne  # MNE's import costs ~0.6 s: only when an EEG run is explained

    builtin = mne.channels.get_builtin_montages()
    name = "standard_1020" if "standard_1020" in builtin else "colin27_1020"  # MNE 1.14 renames it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MNE 1.13 announces the rename
        montage = mne.channels.make_standard_montage(name)
    return {k.upper(): np.asarray(v, dtype=float) for k, v in montage.get_positions()["ch_pos"].items()}


def channel_position(name: str, positions: dict[str, np.ndarray]) -> np.ndarray | None:
    """The head position of one channel (see the module docstring), or None when it cannot be placed."""
    tokens = [t for t in re.split(r"[-\s_]+", name.strip().upper()) if t]
    electrodes = [t for t in tokens if t in positions]
    active = [t for t in electrodes if t not in _REFERENCES]
    if len(electrodes) == 2 and len(active) == 2:
        return (positions[active[0]] + positions[active[1]]) / 2.0
    if len(active) == 1 and len(electrodes) <= 2:
        return positions[active[0]]
    return None


def scalp_layout(channels: list[str], importance: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, str | None]:
    """Positions and importance for a scalp map, or the reason none can be drawn.

    Args:
        channels: Channel names in the model's order.
        importance: One value per channel.

    Returns:
        ``(positions, values, reason)``: ``positions`` maps a label (the channel name, or names joined by ``/``
        when several share a spot) to its 3-D position, ``values`` the importance there (averaged over a spot's
        channels); ``reason`` is None when a map can be drawn, else one sentence saying why not.
    """
    positions = electrode_positions()
    spots: dict[tuple[float, ...], list[int]] = {}
    for i, name in enumerate(channels):
        pos = channel_position(name, positions)
        if pos is not None:
            spots.setdefault(tuple(np.round(pos, 5)), []).append(i)
    placed = sum(len(v) for v in spots.values())
    if len(spots) < MIN_ELECTRODES:
        unplaced = [c for i, c in enumerate(channels) if not any(i in v for v in spots.values())]
        shown = ", ".join(unplaced[:6]) + (" ..." if len(unplaced) > 6 else "")
        reason = (
            f"scalp map skipped: {placed} of {len(channels)} channel(s) could be placed on the 10-20 head at "
            f"{len(spots)} distinct spot(s); a map needs at least {MIN_ELECTRODES}"
        )
        return {}, np.zeros(0), reason + (f" (not placeable: {shown})" if unplaced else "")
    labels = {"/".join(channels[i] for i in idx): np.asarray(spot) for spot, idx in spots.items()}
    values = np.array([float(np.mean(importance[idx])) for idx in spots.values()])
    return labels, values, None


def scalp_info(positions: dict[str, np.ndarray], sfreq: float):  # -> mne.Info
    """An ``mne.Info`` of EEG channels at ``positions`` (head coordinates), as ``plot_topomap`` takes it."""
    import mne

    info = mne.create_info(list(positions), sfreq, "eeg")
    info.set_montage(mne.channels.make_dig_montage(ch_pos=positions, coord_frame="head"))
    return info
