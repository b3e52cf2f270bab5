"""Read CHB-MIT ``chbNN-summary.txt`` files: sampling rate, channel lists, file times and seizure times.

The CHB-MIT Scalp EEG Database (Shoeb 2009; Goldberger et al. 2000, PhysioNet) gives its seizure annotations
only in one plain-text summary per patient. The format drifts between patients, and a reader has to cope with:

* one seizure written as ``Seizure Start Time: 417 seconds`` (no number) or ``Seizure 1 Start Time: ...``;
* ``Channels changed:`` blocks between file records: each file uses the channel list in force at that point;
* duplicated channel names (chb05 lists ``T8-P8`` as channel 15 and 23) and placeholder channels named ``-``;
* clock times past midnight written as ``24:21:32`` or wrapped to ``00:21:39``/``1:21:39``, so file start
  times are turned into seconds since the first file's start by counting days;
* summaries that promise more data than an EDF holds (the test fixtures' 2-s stubs, or truncated downloads):
  :func:`attach_seizures` clips a seizure that runs past the data to the data's end and leaves out one that
  starts after it, each with a reason.

Errors name the summary file and line (``chb05-summary.txt line 42: seizure 2 has an end time before its
start``) because a malformed annotation silently shifting labels would poison every later stage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

# A next file that starts at most this much before the previous one ended is taken as overlapping on the
# same day (a clock glitch), not as starting a day later.
_OVERLAP_TOLERANCE_S = 60
_DAY_S = 86400
_PLACEHOLDERS = frozenset({"", "-", "."})

_RE_RATE = re.compile(r"^Data Sampling Rate:\s*([0-9]+(?:\.[0-9]*)?)\s*Hz$", re.IGNORECASE)
_RE_CHANNELS = re.compile(r"^(Channels in EDF Files|Channels changed)\s*:$", re.IGNORECASE)
_RE_CHANNEL = re.compile(r"^Channel\s+(\d+)\s*:\s*(.*)$", re.IGNORECASE)
_RE_FILE = re.compile(r"^File Name:\s*(\S.*)$", re.IGNORECASE)
_RE_START = re.compile(r"^File Start Time:\s*(.*)$", re.IGNORECASE)
_RE_END = re.compile(r"^File End Time:\s*(.*)$", re.IGNORECASE)
_RE_COUNT = re.compile(r"^Number of Seizures in File:\s*(.*)$", re.IGNORECASE)
_RE_SEIZURE = re.compile(r"^Seizure\s*(\d+)?\s*(Start|End)\s*Time\s*:\s*(.*)$", re.IGNORECASE)
_RE_SECONDS = re.compile(r"^([0-9]+(?:\.[0-9]*)?)\s*(?:seconds?|secs?|s)?$", re.IGNORECASE)
_RE_CLOCK = re.compile(r"^(\d{1,3}):(\d{1,2}):(\d{1,2})$")
_RE_SEPARATOR = re.compile(r"^\*+$")


class ChbmitSummaryError(ValueError):
    """A summary file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class ChannelList:
    """One channel list of a summary ("Channels in EDF Files:" or a later "Channels changed:" block).

    Attributes:
        line: 1-based line of the block's header.
        listed: Channel names as listed, in order (duplicates and placeholders included), so that index ``i``
            is EDF signal ``i``.
        channels: The usable names: first occurrence of each, placeholders (``-``) left out, in order.
        duplicates: ``(name, channel_number, first_channel_number)`` for each repeated name (1-based numbers as
            in the summary); the repeat is left out of ``channels``.
        placeholders: 1-based numbers of placeholder channels (named ``-`` or ``.`` or empty).
    """

    line: int
    listed: tuple[str, ...]
    channels: tuple[str, ...]
    duplicates: tuple[tuple[str, int, int], ...] = ()
    placeholders: tuple[int, ...] = ()


@dataclass(frozen=True)
class SummaryFile:
    """One ``File Name:`` record of a summary.

    Attributes:
        name: EDF file name as given (``chb05_06.edf``).
        line: 1-based line of its ``File Name:``.
        start_clock, end_clock: Clock times exactly as written (``None`` when the record has none, as in chb24).
        start_s, end_s: Seconds since the first timed file's start, with midnight wraps resolved (``None``
            without clock times).
        n_seizures: The number of seizures in the file.
        seizures: (start_s, end_s) of each seizure, seconds from the file's start.
        channel_list: Index into :attr:`ChbmitSummary.channel_lists` of the list in force (``None`` if the
            summary lists no channels before this file).
    """

    name: str
    line: int
    start_clock: str | None
    end_clock: str | None
    start_s: float | None
    end_s: float | None
    n_seizures: int
    seizures: tuple[tuple[float, float], ...]
    channel_list: int | None

    @property
    def duration_s(self) -> float | None:
        """Length of the file according to the summary's clock times, in seconds (``None`` without them)."""
        if self.start_s is None or self.end_s is None:
            return None
        return self.end_s - self.start_s


@dataclass(frozen=True)
class ChbmitSummary:
    """A parsed ``chbNN-summary.txt``.

    Attributes:
        path: The summary file.
        sfreq: Sampling rate in Hz (``None`` if the summary does not say).
        channel_lists: Channel lists in order of appearance.
        files: File records in order of appearance.
        notes: Things a reader should know but that are not errors (duplicated channels, ignored lines).
    """

    path: Path
    sfreq: float | None
    channel_lists: tuple[ChannelList, ...]
    files: tuple[SummaryFile, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def file(self, name: str) -> SummaryFile:
        """The record of file ``name`` (e.g. ``chb05_06.edf``); ``KeyError`` listing a few known names."""
        for record in self.files:
            if record.name == name:
                return record
        known = ", ".join(r.name for r in self.files[:5])
        raise KeyError(f"{self.path.name}: no record for {name!r} (it lists {len(self.files)} files: {known}, ...)")

    def channels_for(self, record: SummaryFile) -> ChannelList | None:
        """The channel list in force for ``record`` (``None`` if the summary lists none before it)."""
        return None if record.channel_list is None else self.channel_lists[record.channel_list]


class SeizurePastData(NamedTuple):
    """A seizure annotated past the end of a recording's data: clipped to the data, or left out, and why.

    Attributes:
        start_s: Annotated onset, seconds from the file's start.
        end_s: Annotated offset.
        clipped_end_s: The end of the data where the seizure was clipped; ``None`` when it was left out (it starts
            at or after the end of the data, so nothing of it is in the file).
        reason: One sentence naming the file, the seizure and what was done.
    """

    start_s: float
    end_s: float
    clipped_end_s: float | None
    reason: str


def parse_clock(text: str) -> int:
    """Seconds since midnight of ``H:MM:SS`` (hours may exceed 23, as in CHB-MIT's ``24:21:32``).

    Raises:
        ValueError: If ``text`` is not a clock time with minutes and seconds below 60.
    """
    match = _RE_CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a clock time H:MM:SS")
    h, m, s = (int(g) for g in match.groups())
    if m >= 60 or s >= 60:
        raise ValueError(f"{text!r} has minutes or seconds of 60 or more")
    return h * 3600 + m * 60 + s


@dataclass
class _OpenFile:
    """A file record being read."""

    name: str
    line: int
    channel_list: int | None
    start_clock: str | None = None
    end_clock: str | None = None
    start_raw: int | None = None
    end_raw: int | None = None
    count: int | None = None
    count_line: int = 0
    seizures: list[tuple[float, float]] = field(default_factory=list)
    pending: tuple[int, float, int] | None = None  # (seizure number, start seconds, line)


def parse_chbmit_summary(path: Path) -> ChbmitSummary:
    """Parse a CHB-MIT ``chbNN-summary.txt``.

    Args:
        path: The summary file.

    Returns:
        Sampling rate, channel lists and file records (clock times, seconds since the first file's start,
        seizures in seconds from each file's start).

    Raises:
        ChbmitSummaryError: On a malformed known line (bad clock time or number, a seizure end before its
            start, an end without a start, a seizure count that disagrees with the seizures listed, a
            duplicated file name); the message gives the file name and line number.
    """
    path = Path(path)
    reader = _SummaryReader(path.name)
    for lineno, raw_line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        line = raw_line.strip()
        if line and not _RE_SEPARATOR.match(line):
            reader.read_line(lineno, line)
    reader.close_file()
    reader.close_block()
    return ChbmitSummary(
        path=path,
        sfreq=reader.sfreq,
        channel_lists=tuple(reader.lists),
        files=tuple(reader.files),
        notes=tuple(reader.notes),
    )


class _SummaryReader:
    """One pass over a summary's lines: the channel block or file record being read, and those already closed."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.sfreq: float | None = None
        self.lists: list[ChannelList] = []
        self.files: list[SummaryFile] = []
        self.notes: list[str] = []
        self.block: dict | None = None  # channel block being read
        self.current: _OpenFile | None = None
        self.timing = _Timing(where)

    def fail(self, lineno: int, message: str) -> ChbmitSummaryError:
        return ChbmitSummaryError(f"{self.where} line {lineno}: {message}")

    def close_block(self) -> None:
        if self.block is not None:
            self.lists.append(_make_channel_list(self.block, self.where, self.notes))
            self.block = None

    def close_file(self) -> None:
        """Check the file record being read (seizures paired and counted), place it in time and keep it."""
        if self.current is None:
            return
        rec = self.current
        if rec.pending is not None:
            number, _, lineno = rec.pending
            raise self.fail(lineno, f"seizure {number} of {rec.name} has a start time but no end time")
        if rec.count is None:
            rec.count = len(rec.seizures)
            if rec.seizures:
                self.notes.append(f"{self.where} line {rec.line}: {rec.name} has no 'Number of Seizures in File'; "
                                  f"counted {len(rec.seizures)} from its seizure lines")  # fmt: skip
        elif rec.count != len(rec.seizures):
            raise self.fail(rec.count_line, f"{rec.name} says {rec.count} seizures but lists {len(rec.seizures)}")
        start_s, end_s = self.timing.place(rec)
        self.files.append(
            SummaryFile(
                name=rec.name,
                line=rec.line,
                start_clock=rec.start_clock,
                end_clock=rec.end_clock,
                start_s=start_s,
                end_s=end_s,
                n_seizures=rec.count,
                seizures=tuple(rec.seizures),
                channel_list=rec.channel_list,
            )
        )
        self.current = None

    def read_line(self, lineno: int, line: str) -> None:
        """One stripped, non-empty, non-separator line: the rate, a channel block, or a file record's line."""
        if m := _RE_RATE.match(line):
            self.sfreq = float(m.group(1))
            return
        if _RE_CHANNELS.match(line):
            self.close_file()
            self.close_block()
            self.block = {"line": lineno, "entries": []}
            return
        if m := _RE_CHANNEL.match(line):
            if self.block is None:
                raise self.fail(lineno, f"{line!r} outside a 'Channels in EDF Files:' or 'Channels changed:' block")
            self.block["entries"].append((int(m.group(1)), m.group(2).strip(), lineno))
            return
        if m := _RE_FILE.match(line):
            self.close_file()
            self.close_block()
            name = m.group(1).strip()
            if any(f.name == name for f in self.files):
                raise self.fail(lineno, f"{name} is listed twice")
            channel_list = len(self.lists) - 1 if self.lists else None
            self.current = _OpenFile(name=name, line=lineno, channel_list=channel_list)
            return
        if self.current is None:
            if _RE_START.match(line) or _RE_END.match(line) or _RE_COUNT.match(line) or _RE_SEIZURE.match(line):
                raise self.fail(lineno, f"{line!r} before any 'File Name:' line")
            self.notes.append(f"{self.where} line {lineno}: ignored {line!r}")
            return
        self._file_line(self.current, lineno, line)

    def _file_line(self, current: _OpenFile, lineno: int, line: str) -> None:
        """A line inside a file record: its start or end clock time, its seizure count or a seizure time."""
        if m := _RE_START.match(line):
            current.start_clock = m.group(1).strip()
            current.start_raw = _clock(current.start_clock, lambda msg, n=lineno: self.fail(n, msg))
        elif m := _RE_END.match(line):
            current.end_clock = m.group(1).strip()
            current.end_raw = _clock(current.end_clock, lambda msg, n=lineno: self.fail(n, msg))
        elif m := _RE_COUNT.match(line):
            if not m.group(1).strip().isdigit():
                raise self.fail(lineno, f"number of seizures {m.group(1).strip()!r} is not a whole number")
            current.count, current.count_line = int(m.group(1)), lineno
        elif m := _RE_SEIZURE.match(line):
            _seizure_line(current, m, lineno, self.fail)
        else:
            self.notes.append(f"{self.where} line {lineno}: ignored {line!r}")


def _clock(text: str, fail: Callable[[str], ChbmitSummaryError]) -> int:
    try:
        return parse_clock(text)
    except ValueError as exc:
        raise fail(f"bad clock time: {exc}") from exc


def _seizure_line(
    rec: _OpenFile, m: re.Match[str], lineno: int, fail: Callable[[int, str], ChbmitSummaryError]
) -> None:
    """Pair ``Seizure [N] Start/End Time: S seconds`` lines into (start, end) seizures of ``rec``."""
    number = int(m.group(1)) if m.group(1) else None
    kind = m.group(2).lower()
    value = _RE_SECONDS.match(m.group(3).strip())
    label = f"seizure {number if number is not None else len(rec.seizures) + 1}"
    if not value:
        raise fail(lineno, f"{label} {kind} time {m.group(3).strip()!r} is not a number of seconds")
    seconds = float(value.group(1))
    if kind == "start":
        if rec.pending is not None:
            raise fail(lineno, f"{label} starts before seizure {rec.pending[0]} (line {rec.pending[2]}) has ended")
        expected = len(rec.seizures) + 1
        if number is not None and number != expected:
            raise fail(lineno, f"seizure {number} of {rec.name} follows {expected - 1} seizures; expected {expected}")
        rec.pending = (expected, seconds, lineno)
        return
    if rec.pending is None:
        raise fail(lineno, f"{label} has an end time but no start time")
    pending_number, start, _ = rec.pending
    if number is not None and number != pending_number:
        raise fail(lineno, f"seizure {number} end time follows seizure {pending_number}'s start time")
    if seconds <= start:
        raise fail(lineno, f"seizure {pending_number} has an end time before its start ({seconds:g} <= {start:g} s)")
    if rec.seizures and start < rec.seizures[-1][1]:
        raise fail(lineno, f"seizure {pending_number} starts before seizure {pending_number - 1} ends")
    rec.seizures.append((start, seconds))
    rec.pending = None


class _Timing:
    """Turns clock times into seconds since the first timed file's start, resolving midnight wraps.

    A file starts on the day of the previous file's end unless its clock time would put it more than
    ``_OVERLAP_TOLERANCE_S`` before that end; then it starts on the following day(s). Recording gaps longer than
    a day cannot be seen in clock times and are not recovered.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.origin: int | None = None
        self.prev_end: int | None = None

    def place(self, rec: _OpenFile) -> tuple[float | None, float | None]:
        if rec.start_raw is None:
            return None, None
        start = rec.start_raw
        if self.prev_end is not None:
            day = (self.prev_end // _DAY_S) * _DAY_S
            start = day + rec.start_raw % _DAY_S  # time of day; "25:10:05" is 01:10:05
            while start < self.prev_end - _OVERLAP_TOLERANCE_S:
                start += _DAY_S
        if self.origin is None:
            self.origin = start
        end = None
        if rec.end_raw is not None:
            # End clocks count on from the start's clock (23:21:32 -> 24:21:32) or wrap (00:21:39 -> 1:21:39):
            # either way the file lasts the clock difference modulo a day.
            end = start + (rec.end_raw - rec.start_raw) % _DAY_S
        self.prev_end = end if end is not None else start
        return float(start - self.origin), None if end is None else float(end - self.origin)


def _make_channel_list(block: dict, where: str, notes: list[str]) -> ChannelList:
    listed, channels, duplicates, placeholders = [], [], [], []
    first: dict[str, int] = {}
    for expected, (number, name, lineno) in enumerate(block["entries"], start=1):
        if number != expected:
            raise ChbmitSummaryError(f"{where} line {lineno}: channel {number} where channel {expected} was expected")
        listed.append(name)
        if name in _PLACEHOLDERS:
            placeholders.append(number)
        elif name in first:
            duplicates.append((name, number, first[name]))
            notes.append(
                f"{where} line {lineno}: channel {number} {name!r} duplicates channel {first[name]}; "
                f"keeping channel {first[name]}"
            )
        else:
            first[name] = number
            channels.append(name)
    if not listed:
        raise ChbmitSummaryError(f"{where} line {block['line']}: channel block lists no channels")
    return ChannelList(
        line=block["line"],
        listed=tuple(listed),
        channels=tuple(channels),
        duplicates=tuple(duplicates),
        placeholders=tuple(placeholders),
    )


def attach_seizures(
    record: SummaryFile, n_seconds_in_data: float
) -> tuple[list[tuple[float, float]], list[SeizurePastData]]:
    """The seizures of ``record`` inside the data: one that runs past the data's end is clipped to it, one that
    starts at or after the end is left out; both are listed with a reason.

    Why clip rather than drop: the part of a seizure that is in the file is ictal EEG. Dropping the seizure whole
    would turn those seconds into seizure-free data for training and scoring (a truncated download or a summary
    that promises more data than the file holds would silently mislabel them). The clipped seizure claims no
    offset beyond what the data show: it ends where the data end.

    Args:
        record: A file record from :func:`parse_chbmit_summary` (or built from a sidecar or EDF+ annotations).
        n_seconds_in_data: Length of the data actually read, in seconds (``raw.n_times / sfreq``).

    Returns:
        ``(kept, past)``: the seizures as (start_s, end_s) inside the data (clipped ones included), and every
        seizure that was clipped or left out, with a reason naming the file.
    """
    kept: list[tuple[float, float]] = []
    past: list[SeizurePastData] = []
    promised = record.duration_s
    promise = f"; the summary gives the file {promised:g} s" if promised is not None else ""
    end_of_data = float(n_seconds_in_data)
    for i, (start, end) in enumerate(record.seizures, start=1):
        if end <= end_of_data:
            kept.append((start, end))
            continue
        head = f"{record.name}: seizure {i} ({start:g}-{end:g} s)"
        if start >= end_of_data:
            reason = (
                f"{head} starts after the end of the data (the file holds {end_of_data:g} s{promise}): "
                "left out, none of it is in the file"
            )
            past.append(SeizurePastData(start, end, None, reason))
            continue
        kept.append((start, end_of_data))
        reason = (
            f"{head} ends after the end of the data (the file holds {end_of_data:g} s{promise}): "
            f"clipped to {start:g}-{end_of_data:g} s, the {end_of_data - start:g} s of it in the file"
        )
        past.append(SeizurePastData(start, end, end_of_data, reason))
    return kept, past


def resolve_mne_channels(mne_names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Map summary channel names onto the names MNE gave the EDF's signals.

    MNE's EDF reader makes duplicated labels unique by appending running numbers (chb05's two ``T8-P8`` become
    ``T8-P8-0`` and ``T8-P8-1``, with a RuntimeWarning). This picks, for each wanted name, the exact label or
    else the lowest-numbered ``name-K`` variant, i.e. the first occurrence, as :class:`ChannelList` does.

    Args:
        mne_names: ``raw.ch_names``.
        wanted: Channel names to pick (e.g. ``ChannelList.channels``).

    Returns:
        Names to pass to ``raw.pick``, in the order of ``wanted``.

    Raises:
        KeyError: If a wanted channel is not in the file; the message lists the missing names.
    """
    present = set(mne_names)
    out, missing = [], []
    for name in wanted:
        if name in present:
            out.append(name)
            continue
        variants = [n for n in mne_names if re.fullmatch(re.escape(name) + r"-(\d+)", n)]
        if variants:
            out.append(min(variants, key=lambda n: int(n.rsplit("-", 1)[1])))
        else:
            missing.append(name)
    if missing:
        raise KeyError(f"channels {missing} are not in the file (it has {list(mne_names)})")
    return out
