"""The quarantine list (``path, stage, reason``): the inputs a stage left out, and the one sentence that sums it up.

Every stage that rejects an input writes a row naming the file and the problem, and the run goes on with the rest.
When a stage is left with nothing, a bare "nothing usable; see quarantine.csv" sends the user digging through
hundreds of rows that mostly say the same thing; :func:`rejection_summary` names the most common reason and the
setting that changes it instead, so the run's last line says what to do (issue #12: 500 clips of 23.6 s all
failed a 30-s minimum duration nobody had set).

Settings are found in the reasons themselves: a reason that a setting can change names it as ``section.key``
(``ingest.min_duration_s``, ``quality.min_side_px``, ``label.window_s``), so the sentence never guesses.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from tasks.cache import StageResult

#: Columns of every ``quarantine.csv`` (contract: docs/architecture.md).
QUARANTINE_COLUMNS = ("path", "stage", "reason")

#: A setting named in a reason: ``<stage section>.<key>``.
_SETTING = re.compile(r"\b(?:ingest|quality|label|augment|synth|train|evaluate)\.[a-z_]+[a-z]\b")
#: Paths and numbers (sizes, seconds, counts) differ from file to file; reasons that differ only in them are one.
_PATH = re.compile(r"\S*/\S*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def reason_text(path: str, reason: str) -> str:
    """The reason without its leading ``<file>: `` (EEG reasons name the file by its path below the data folder)."""
    head, sep, rest = reason.partition(": ")
    if sep and head and (path == head or path.endswith("/" + head) or Path(path).name == Path(head).name):
        return rest
    return reason


def setting_in(reason: str) -> str | None:
    """The ``section.key`` setting a reason names, if any."""
    found = _SETTING.search(reason)
    return found.group(0) if found else None


def most_common_reason(rows: Iterable[Mapping[str, str]]) -> tuple[str, int, str | None] | None:
    """The most common reason among quarantine rows: ``(example reason, how many rows, setting or None)``.

    Reasons are compared without the file name and with paths and numbers blanked (``10 s of data`` and ``24 s of
    data`` are the same reason); the example is the first row's text of the most common kind (ties: the earliest).
    None when there are no rows.
    """
    texts = [reason_text(str(r.get("path", "")), str(r.get("reason", ""))) for r in rows]
    if not texts:
        return None
    kinds = [_NUMBER.sub("#", _PATH.sub("<path>", t)) for t in texts]
    counts = Counter(kinds)
    best = max(counts, key=lambda k: (counts[k], -kinds.index(k)))
    example = texts[kinds.index(best)]
    return example, counts[best], setting_in(example)


def rejection_summary(what: str, rows: list[Mapping[str, str]]) -> str:
    """One sentence for a stage left with nothing: ``what`` happened, the most common reason and its setting.

    Args:
        what: What was found unusable, e.g. ``"no usable EDF recordings under /data"``.
        rows: The quarantine rows that explain it.

    Returns:
        E.g. ``no usable EDF recordings under /data (5 left out); most common reason (5 of 5): "10 s of data,
        shorter than the minimum of 30 s; lower ingest.min_duration_s"; the setting that changes it:
        ingest.min_duration_s; quarantine.csv lists each``.
    """
    common = most_common_reason(rows)
    if common is None:
        return f"{what}; nothing was quarantined, so no file gave a reason"
    example, count, setting = common
    n = len(rows)
    how = f"; the setting that changes it: {setting}" if setting else ""
    return f'{what} ({n} left out); most common reason ({count} of {n}): "{example}"{how}; quarantine.csv lists each'


def collect_quarantine(stages: Mapping[str, StageResult | None]) -> pd.DataFrame:
    """Every stage's ``quarantine.csv`` in run order, failed stages included, as one ``path, stage, reason`` table.

    A stage that left out every input fails, yet keeps its cache entry with ``quarantine.csv`` (its record's
    ``path``), so the run's ``quarantine.csv`` and report still list every file and its reason.
    """
    frames = [
        pd.read_csv(st.dir / "quarantine.csv", dtype=str, keep_default_na=False)
        for st in stages.values()
        if st is not None and st.path and (st.dir / "quarantine.csv").is_file()
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(QUARANTINE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(QUARANTINE_COLUMNS)]
