"""Seizure intervals from what comes with an EDF file: a BIDS-style events sidecar or the file's EDF+ annotations.

The CHB-MIT summary, the first source in precedence, is parsed by :mod:`tasks.ingest.chbmit`; which source a
recording uses is decided per file by :mod:`tasks.ingest.inspection`. Sources, in order of precedence:

* **CHB-MIT summary** (``chbNN-summary.txt``, :mod:`tasks.ingest.chbmit`).
* **Sidecar** ``<stem>_events.tsv`` (BIDS also names it after the stem without its ``_eeg`` suffix,
  :func:`events_sidecar`): columns ``onset`` and ``duration`` in seconds and ``trial_type`` or ``eventType``; a
  row whose type contains "seiz" or "sz" (any case) is a seizure (:func:`read_events_tsv`). A negative or
  non-numeric onset, or a seizure without a positive duration, quarantines the recording: a timing error would
  shift every label of that file.
* **EDF+ annotations** whose description contains "seiz" or "sz" (any case) (:func:`annotation_seizures`).
  Zero-duration "start"/"end" pairs are joined; a lone zero-duration marker is left out with a note.
* Otherwise the recording is seizure-free.

Overlapping seizure intervals are merged (:func:`merge_intervals`).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from pathlib import Path

#: Source of a recording's seizures, in order of precedence.
SOURCES = ("chbmit-summary", "events-tsv", "edf-annotations", "none")

_SEIZURE = re.compile(r"seiz|sz", re.IGNORECASE)
_START_WORD = re.compile(r"start|onset|begin", re.IGNORECASE)
_END_WORD = re.compile(r"end|offset|stop", re.IGNORECASE)
_EVENT_TYPE_COLUMNS = ("trial_type", "eventtype")


# ------------------------------------------------------------------------------------------------- seizures
class EventsFileError(ValueError):
    """An events sidecar that cannot be trusted; the message names the tsv, the row and the problem."""


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """Sorted union of intervals, and how many merges it took."""
    out: list[tuple[float, float]] = []
    merges = 0
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
            merges += 1
        else:
            out.append((start, end))
    return out, merges


def read_events_tsv(path: Path) -> list[tuple[float, float]]:
    """Seizures from a BIDS-style events sidecar (tab-separated, header row).

    Columns: ``onset`` and ``duration`` in seconds from the recording's start, and ``trial_type`` and/or
    ``eventType`` (any case); a row whose type contains "seiz" or "sz" (any case) is a seizure. Every onset must
    be a number >= 0 (a bad onset anywhere means the file's clock cannot be trusted); seizure rows need a duration
    > 0; other rows may say ``n/a`` (BIDS allows it).

    Args:
        path: The ``*_events.tsv`` file.

    Returns:
        Seizures as (onset_s, offset_s), sorted, overlapping ones merged.

    Raises:
        EventsFileError: Naming the tsv, the row (1-based data row and file line) and the problem; also for a file
            that is not UTF-8 or is separated by ``;`` or ``,`` instead of tabs.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM and CRLF line ends are fine
    except UnicodeDecodeError as exc:
        raise EventsFileError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 (tab-separated)") from None
    rows = [(i, row) for i, row in enumerate(csv.reader(lines, delimiter="\t"), start=1) if any(c.strip() for c in row)]
    if not rows:
        raise EventsFileError(f"{path}: empty; expected a header with onset, duration and trial_type or eventType")
    header = [c.strip().lower() for c in rows[0][1]]
    if len(header) == 1 and (sep := next((d for d in ";," if d in header[0]), None)):
        raise EventsFileError(
            f"{path}: its header {rows[0][1][0].strip()!r} is separated by {sep!r}, not tabs; an events file is "
            "tab-separated (BIDS): save it with tabs between the columns"
        )
    missing = [c for c in ("onset", "duration") if c not in header]
    types = [header.index(c) for c in _EVENT_TYPE_COLUMNS if c in header]
    if missing or not types:
        need = missing + ([] if types else ["trial_type or eventType"])
        raise EventsFileError(f"{path}: no {', '.join(need)} column (it has {', '.join(header)})")
    i_onset, i_duration = header.index("onset"), header.index("duration")
    seizures = []
    for n, (lineno, row) in enumerate(rows[1:], start=1):
        where = f"{path}: row {n} (line {lineno})"
        if len(row) != len(header):
            raise EventsFileError(f"{where} has {len(row)} columns but the header has {len(header)}")
        is_seizure = any(_SEIZURE.search(row[i]) for i in types)
        onset_text, duration_text = row[i_onset].strip(), row[i_duration].strip()
        try:
            onset = float(onset_text)
        except ValueError:
            raise EventsFileError(f"{where}: onset {onset_text!r} is not a number of seconds") from None
        if not math.isfinite(onset) or onset < 0:
            raise EventsFileError(
                f"{where}: onset {onset_text} is negative or not finite; onsets count from the file's start"
            )
        if not is_seizure and duration_text.lower() == "n/a":
            continue
        try:
            duration = float(duration_text)
        except ValueError:
            raise EventsFileError(f"{where}: duration {duration_text!r} is not a number of seconds") from None
        if not math.isfinite(duration) or duration < 0 or (is_seizure and duration == 0):
            raise EventsFileError(
                f"{where}: duration {duration_text} {'of a seizure ' if is_seizure else ''}must be a number "
                f"{'> 0' if is_seizure else '>= 0'}"
            )
        if is_seizure:
            seizures.append((onset, onset + duration))
    return merge_intervals(seizures)[0]


def annotation_seizures(
    annotations: Iterable[tuple[float, float, str]], name: str
) -> tuple[list[tuple[float, float]], list[str]]:
    """Seizures from EDF+ annotations (description with "seiz"/"sz"); zero-duration start/end markers paired.

    Args:
        annotations: ``(onset_s, duration_s, description)`` as written in the file
            (:func:`tasks.edf.read_edf_annotations`: not cropped to the data, so a seizure past the end is seen).
        name: The file, as messages name it.

    Returns:
        The seizures (merged, sorted) and notes on markers left out or merged.
    """
    intervals, notes = [], []
    pending: float | None = None
    for onset, duration, description in annotations:
        if not _SEIZURE.search(description):
            continue
        onset, duration = float(onset), float(duration)
        if duration > 0:
            intervals.append((onset, onset + duration))
        elif _END_WORD.search(description) and pending is not None:
            intervals.append((pending, onset))
            pending = None
        elif _START_WORD.search(description) and pending is None:
            pending = onset
        else:
            notes.append(
                f"{name}: seizure annotation at {onset:g} s has no duration and no matching start/end; left out"
            )
    if pending is not None:
        notes.append(f"{name}: seizure start annotation at {pending:g} s has no end; left out")
    merged, merges = merge_intervals(iv for iv in intervals if iv[1] > iv[0])
    if merges:
        notes.append(f"{name}: {merges} overlapping seizure annotation(s) merged")
    return merged, notes


def events_sidecar(path: Path) -> Path | None:
    """``<stem>_events.tsv``, or BIDS's ``<stem minus _eeg/_ieeg>_events.tsv``, if one exists."""
    stems = [path.stem]
    for suffix in ("_eeg", "_ieeg"):
        if path.stem.lower().endswith(suffix):
            stems.append(path.stem[: -len(suffix)])
    for stem in stems:
        candidate = path.with_name(f"{stem}_events.tsv")
        if candidate.is_file():
            return candidate
    return None
