"""Find, validate and preprocess scalp-EEG recordings: CHB-MIT folders and any folder of EDF/EDF+ files.

Pure functions (no Prefect, no printing); the ingest task wraps them. Three steps:

1. :func:`discover_recordings` lists every ``.edf`` file below a root (the inputs of ARCHITECTURE.md, "Inputs vigil
   accepts"), attaches its seizures, validates it and fixes the channel set all models will see. A bad file never
   stops discovery: it becomes a quarantine row ``{path, stage, reason}`` whose reason names the file and the
   problem, and everything that is odd but usable becomes a note.
2. :func:`write_tables` writes the tables the windowing and labelling code reads (``recordings.csv``,
   ``seizures.csv``, ``channels.json``).
3. :func:`preprocess_recording` turns one EDF into a float32 ``.npy`` of the common channels at one sampling rate,
   band-passed and notch-filtered, in chunks, so memory stays flat however long the recording is.

The per-file work is independent of every other file: discovery is :func:`find_candidates` (the listing),
:func:`inspect_candidate` per file, then :func:`settle_discovery` (the common channel set, which needs every file);
preprocessing is :func:`preprocess_for_stage` per recording, then :func:`drop_failed`. :mod:`tasks.ingest.fanout`
runs the per-file steps as mapped Prefect task runs when ``runner.kind=dask``.

Seizure sources, in order of precedence:

* **CHB-MIT layout**: a folder holding ``*-summary.txt`` (``ROOT/chbNN/chbNN-summary.txt``). Seizures come from the
  summary (:mod:`tasks.ingest.chbmit`); a file the summary names but the folder lacks is quarantined (the row
  names the summary and the missing file); an EDF the summary does not list falls back to the sources below and
  is noted. Start offsets between a patient's files come from the summary's clock times.
* **Sidecar** ``<stem>_events.tsv`` (BIDS also names it after the stem without its ``_eeg`` suffix): columns
  ``onset`` and ``duration`` in seconds and ``trial_type`` or ``eventType``; a row whose type contains "seiz" or
  "sz" (any case) is a seizure. A negative or non-numeric onset, or a seizure without a positive duration,
  quarantines the recording: a timing error would shift every label of that file.
* **EDF+ annotations** whose description contains "seiz" or "sz" (any case). Zero-duration "start"/"end" pairs are
  joined; a lone zero-duration marker is left out with a note.
* Otherwise the recording is seizure-free.

Overlapping seizure intervals are merged. Seizures that end after the data are left out whole by
:func:`tasks.ingest.chbmit.attach_seizures` (never clipped) with a note naming the file.

Patients: the folder holding a CHB-MIT summary (``chbNN``); else a BIDS ``sub-XX`` folder anywhere in the path (or
the ``sub-XX_`` entity of the file name); else a ``chbNN`` folder anywhere in the path; else the first sub-folder
below ROOT; files directly under ROOT form one patient named after ROOT. ``recording_id`` is the file stem when it
already starts with the patient label (``chb05_01``, ``sub-01_ses-01_..._eeg``), else ``<patient>__<stem>``;
characters outside ``[A-Za-z0-9._-]`` become ``_`` and clashes (also ones that differ only in case, which collide
on case-insensitive file systems) get the sub-folders spelled out, then a ``-2``, ``-3`` suffix.

Validation per file, cheapest first: the header is parsed by :func:`read_edf_header` before MNE sees the file,
because MNE 1.13 reads a truncated file with only a warning (it infers the record count from the file size),
replaces a zero record duration by 1 s, reads a signal with 0 samples per record as if nothing were wrong, and
answers an unparsable number with a bare ``int()`` error. Then MNE opens it (``preload=False``), the signals are
scanned in chunks for non-finite values and flat channels, and the duration is checked against ``min_duration_s``.

Channel policy: names are compared after stripping whitespace, case-insensitively. A repeated name keeps its first
signal (MNE renames repeats ``T8-P8-0``/``T8-P8-1``; the first is used). Placeholder signals named ``-``, ``.`` or
nothing are ignored. A **flat channel** (standard deviation at most ``flat_std_v`` over the whole recording) is
treated as absent, so it falls under the common-set rule: if it is a common channel the recording is quarantined
(a model would read a dead electrode as "no activity" exactly where it looks); if not, it is only noted. The
**common set** holds every channel that more than half of the accepted recordings have (usable); a recording
lacking one of them is quarantined ("lacks channels X, Y that N of M recordings have") rather than shrinking the
set for everyone. At an exact tie (half of them have it) the channel is left out instead: quarantining half the
data to keep one channel is the worse trade. Channels left out are noted. ``channels=[...]`` forces the set.

De-identification: EDF headers carry the patient's name, code, birth date and the recording's identifiers and
start date. Nothing returned or written here contains them: messages are built from file paths, the derived
patient label and signal facts (channel labels, rates, counts), and any text that comes from MNE is scrubbed of
every header token before it is kept.

Preprocessing: see :func:`preprocess_recording`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import mne
import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from scipy import signal

from tasks.cache import FILE_STAGE_TIMEOUT_S, StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import EegIngestConfig, RunnerConfig
from tasks.ingest.chbmit import SummaryFile, attach_seizures, parse_chbmit_summary
from tasks.rundir import RunContext

STAGE = "ingest"
#: Columns of ``recordings.csv`` (contract with the windowing/labelling code).
RECORDINGS_COLUMNS = ("recording_id", "patient", "path", "duration_s", "sfreq_in", "start_offset_s", "n_seizures")
#: Columns of ``seizures.csv`` (contract with the windowing/labelling code).
SEIZURES_COLUMNS = ("recording_id", "patient", "seizure_id", "onset_s", "offset_s")
#: A channel whose standard deviation over the whole recording is at most this (volts) is flat. 0.1 uV is far below
#: any scalp EEG (a few uV at rest) and above EDF's quantisation step of typical ranges (+-2 mV over 16 bits:
#: 0.06 uV), so a disconnected electrode toggling between two codes still counts as flat.
FLAT_STD_V = 1e-7
#: Source of a recording's seizures.
SOURCES = ("chbmit-summary", "events-tsv", "edf-annotations", "none")

_SEIZURE = re.compile(r"seiz|sz", re.IGNORECASE)
_START_WORD = re.compile(r"start|onset|begin", re.IGNORECASE)
_END_WORD = re.compile(r"end|offset|stop", re.IGNORECASE)
_BIDS_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
_BIDS_FILE_SUBJECT = re.compile(r"^(sub-[A-Za-z0-9]+)_")
_CHB_FOLDER = re.compile(r"^chb\d+[a-z]?$", re.IGNORECASE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PLACEHOLDERS = frozenset({"", "-", "."})
_ANNOTATION_LABELS = frozenset({"EDF ANNOTATIONS", "BDF ANNOTATIONS"})
_EVENT_TYPE_COLUMNS = ("trial_type", "eventtype")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# Header tokens too common to be identifying (EDF+ "unknown" and keywords); everything else of 3+ characters in the
# patient/recording fields is scrubbed from third-party text.
_HARMLESS_TOKENS = frozenset({"X", "STARTDATE", "EDF", "EDF+", "EDF+C", "EDF+D"})


# ------------------------------------------------------------------------------------------------ return types
@dataclass
class RecordingInfo:
    """One accepted recording (one EDF file).

    Attributes:
        recording_id: Unique, file-system-safe id (``chb05_01``, ``<patient>__<stem>``); names its signal file.
        patient: Derived patient label (``chb05``, ``sub-01``, a folder name); never taken from the EDF header.
        path: The EDF file.
        seizures: (onset_s, offset_s) in seconds from the file's start, sorted, inside the data.
        source: Where the seizures came from: one of :data:`SOURCES`.
        duration_s: Length of the data actually in the file, in seconds.
        sfreq: Sampling rate as MNE reads it, in Hz.
        channels: The file's usable channel names (stripped, first occurrence of repeats, no placeholders), in file
            order.
        start_offset_s: Seconds from the patient's first file's start to this file's start (CHB-MIT clock times);
            ``None`` when unknown.
        notes: What a reader should know about this file (dropped seizures, repeated or flat channels, ...).
    """

    recording_id: str
    patient: str
    path: Path
    seizures: list[tuple[float, float]]
    source: str
    duration_s: float
    sfreq: float
    channels: list[str]
    start_offset_s: float | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Discovery:
    """The result of :func:`discover_recordings`.

    Attributes:
        recordings: Accepted recordings, sorted by patient then file (natural order).
        quarantine: Rows ``{"path", "stage", "reason"}`` of files (or summary entries) left out.
        notes: Dataset-level notes followed by every recording's notes, each naming its file; log these.
        channels: The common channel set, in order; every accepted recording has all of them.
    """

    recordings: list[RecordingInfo]
    quarantine: list[dict[str, str]]
    notes: list[str]
    channels: list[str]


@dataclass(frozen=True)
class RecordingMeta:
    """What :func:`preprocess_recording` wrote.

    Attributes:
        path: The EDF read.
        out_path: The ``.npy`` written: float32, shape (n_channels, n_samples), volts, C order.
        channels: Channel names in the array's row order (the requested names).
        sfreq_in: Sampling rate of the EDF in Hz.
        sfreq_out: Sampling rate of the array in Hz.
        n_samples: Samples per channel in the array.
        l_freq: High-pass corner in Hz (``None``: none).
        h_freq: Low-pass corner in Hz (``None``: none, because it was at or above the input's Nyquist frequency).
        notch_hz: Mains frequency notched out (with its harmonics below Nyquist), ``None`` for no notch.
        filter: Human-readable description of the filter chain, for reports and ``model.pt``.
    """

    path: Path
    out_path: Path
    channels: list[str]
    sfreq_in: float
    sfreq_out: float
    n_samples: int
    l_freq: float | None
    h_freq: float | None
    notch_hz: float | None
    filter: str

    @property
    def duration_s(self) -> float:
        """Length of the array in seconds."""
        return self.n_samples / self.sfreq_out


# ------------------------------------------------------------------------------------------------- EDF header
class EdfHeaderError(ValueError):
    """An EDF whose header cannot describe its data (corrupt field, truncated file); the message names the file."""


@dataclass(frozen=True)
class EdfHeader:
    """The structural facts of an EDF header (no identifying fields: those are never kept).

    Attributes:
        path: The file.
        header_bytes: Size of the header: 256 + 256 per signal.
        n_records: Number of data records.
        record_duration_s: Duration of one data record in seconds.
        labels: Signal labels, stripped, annotation signals included.
        samples_per_record: Samples per data record of each signal.
        annotation_signals: Indices of ``EDF Annotations`` signals.
        file_bytes: Size of the file.
        variant: ``EDF``, ``EDF+C`` or ``EDF+D``.
        notes: Oddities that do not stop reading (trailing bytes, discontinuous EDF+D).
    """

    path: Path
    header_bytes: int
    n_records: int
    record_duration_s: float
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    annotation_signals: tuple[int, ...]
    file_bytes: int
    variant: str
    notes: tuple[str, ...] = ()

    @property
    def data_signals(self) -> tuple[int, ...]:
        """Indices of the signals that hold samples (not annotations), in file order."""
        return tuple(i for i in range(len(self.labels)) if i not in self.annotation_signals)

    @property
    def record_bytes(self) -> int:
        """Bytes per data record (16-bit samples of every signal, annotations included)."""
        return 2 * sum(self.samples_per_record)

    @property
    def expected_bytes(self) -> int:
        """File size the header promises: header + n_records x record bytes."""
        return self.header_bytes + self.n_records * self.record_bytes

    @property
    def duration_s(self) -> float:
        """Recording length the header promises, in seconds."""
        return self.n_records * self.record_duration_s


def _field(raw: bytes, start: int, width: int) -> str:
    return raw[start : start + width].decode("latin-1").strip()


def read_edf_header(path: Path) -> EdfHeader:
    """Parse and check an EDF/EDF+ header against the file size.

    Why not leave this to MNE: MNE 1.13 reads a truncated file with only a warning (it infers the number of records
    from the file size), replaces a zero record duration by 1 s, reads a signal with 0 samples per record without
    complaint, and reports an unparsable number as ``invalid literal for int()``. Header arithmetic (file size
    versus 256 bytes + 256 per signal + n_records x bytes per record) catches them all before any data is read; the
    message says which field is wrong.

    Args:
        path: An ``.edf`` file.

    Returns:
        The header's structural facts.

    Raises:
        EdfHeaderError: If the file is shorter than its header, a numeric field does not parse, the number of
            signals, data records, record duration or samples per record is zero or negative (``-1`` records: the
            writer never finished the file), a digital or physical range is empty, or the file holds fewer bytes
            than the header promises (truncated). The message names the file and the problem.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        fixed = fh.read(256)
        if len(fixed) < 256:
            raise EdfHeaderError(f"{path}: only {size} bytes, shorter than the 256-byte EDF header")
        if not fixed[:8].startswith(b"0"):
            raise EdfHeaderError(f"{path}: not an EDF file (its version field is not '0'; BDF is not supported)")

        def number(start: int, width: int, what: str, kind: type = int) -> float:
            text = _field(fixed, start, width)
            try:
                return kind(text)
            except ValueError:
                raise EdfHeaderError(
                    f"{path}: header field '{what}' (bytes {start}-{start + width - 1}) is {text!r}, not a number"
                ) from None

        header_bytes = int(number(184, 8, "number of bytes in header"))
        n_records = int(number(236, 8, "number of data records"))
        duration = float(number(244, 8, "duration of a data record", float))
        n_signals = int(number(252, 4, "number of signals"))
        reserved = _field(fixed, 192, 44)
        if n_signals <= 0:
            raise EdfHeaderError(f"{path}: the header says {n_signals} signals")
        if header_bytes != 256 * (n_signals + 1):
            raise EdfHeaderError(
                f"{path}: the header says it is {header_bytes} bytes long but {n_signals} signals need "
                f"256 x {n_signals + 1} = {256 * (n_signals + 1)} bytes: corrupt header"
            )
        rest = fh.read(256 * n_signals)
    if len(rest) < 256 * n_signals:
        raise EdfHeaderError(f"{path}: truncated inside its header ({size} bytes, the header alone is {header_bytes})")

    offset = 0

    def column(width: int) -> list[str]:
        nonlocal offset
        values = [_field(rest, offset + i * width, width) for i in range(n_signals)]
        offset += width * n_signals
        return values

    labels = column(16)
    column(80)  # transducer
    column(8)  # physical dimension
    phys_min, phys_max, dig_min, dig_max = column(8), column(8), column(8), column(8)
    column(80)  # prefiltering
    spr_text = column(8)
    annotations = tuple(i for i, label in enumerate(labels) if label.upper() in _ANNOTATION_LABELS)

    def parse(values: list[str], i: int, what: str, kind: type) -> float:
        try:
            return kind(values[i])
        except ValueError:
            raise EdfHeaderError(
                f"{path}: signal {i + 1} ({labels[i]!r}) has {what} {values[i]!r}, not a number"
            ) from None

    spr = tuple(int(parse(spr_text, i, "samples per data record", int)) for i in range(n_signals))
    if n_records <= 0:
        why = " (-1: the writer never finished the file)" if n_records == -1 else ""
        raise EdfHeaderError(f"{path}: the header says {n_records} data records{why}: no data to read")
    if not duration > 0 or not math.isfinite(duration):
        raise EdfHeaderError(
            f"{path}: data record duration is {duration:g} s, so the sampling rate is undefined: corrupt header"
        )
    data = [i for i in range(n_signals) if i not in annotations]
    if not data:
        raise EdfHeaderError(f"{path}: no data signals, only annotations")
    for i in data:
        if spr[i] <= 0:
            raise EdfHeaderError(
                f"{path}: signal {i + 1} ({labels[i]!r}) has {spr[i]} samples per data record, i.e. a sampling "
                f"rate of {spr[i] / duration:g} Hz: corrupt header"
            )
        lo, hi = parse(dig_min, i, "digital minimum", int), parse(dig_max, i, "digital maximum", int)
        if lo >= hi:
            raise EdfHeaderError(f"{path}: signal {i + 1} ({labels[i]!r}) has digital range {lo}..{hi}: corrupt header")
        plo, phi = parse(phys_min, i, "physical minimum", float), parse(phys_max, i, "physical maximum", float)
        if plo == phi:
            raise EdfHeaderError(f"{path}: signal {i + 1} ({labels[i]!r}) has an empty physical range {plo:g}..{phi:g}")
    for i in annotations:
        if spr[i] <= 0:
            raise EdfHeaderError(f"{path}: annotation signal {i + 1} has {spr[i]} samples per data record")

    variant = "EDF+D" if reserved.startswith("EDF+D") else "EDF+C" if reserved.startswith("EDF+C") else "EDF"
    header = EdfHeader(path, header_bytes, n_records, duration, tuple(labels), spr, annotations, size, variant)
    notes = []
    if size < header.expected_bytes:
        complete = (size - header_bytes) // header.record_bytes
        raise EdfHeaderError(
            f"{path}: truncated: the header promises {n_records} data records of {header.record_bytes} bytes "
            f"({header.expected_bytes} bytes, {header.duration_s:g} s) but the file has {size} bytes "
            f"({complete} complete records, {complete * duration:g} s)"
        )
    if size > header.expected_bytes:
        notes.append(f"{path.name}: {size - header.expected_bytes} bytes after the last data record are ignored")
    if variant == "EDF+D":
        notes.append(f"{path.name}: EDF+D (discontinuous); its records are read back to back, gaps are not kept")
    return EdfHeader(
        path, header_bytes, n_records, duration, tuple(labels), spr, annotations, size, variant, tuple(notes)
    )


def _header_secrets(path: Path) -> frozenset[str]:
    """Identifying strings of an EDF header (patient and recording fields, start date and time), to scrub.

    Tokens are taken whole and split at ``_`` (EDF+ writes spaces in names as ``_``, and a reader may split
    them); dates are added in ISO form too, as a library might print them that way. Short numbers (< 5 digits)
    are left alone: they are not identifying on their own and would blank out rates and counts.
    """
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(184)
    except OSError:
        return frozenset()
    text = raw[8:168].decode("latin-1")
    tokens: set[str] = set()
    for token in text.split():
        for part in (token, *token.split("_")):
            if len(part) >= 3 and part.upper() not in _HARMLESS_TOKENS and not (part.isdigit() and len(part) < 5):
                tokens.add(part)
        if m := re.fullmatch(r"(\d{2})-([A-Za-z]{3})-(\d{4})", token):
            month = m.group(2).upper()
            if month in _MONTHS:
                tokens.add(f"{m.group(3)}-{_MONTHS.index(month) + 1:02d}-{m.group(1)}")
    startdate, starttime = raw[168:176].decode("latin-1").strip(), raw[176:184].decode("latin-1").strip()
    for value in (startdate, starttime, starttime.replace(".", ":")):
        if len(value) >= 3:
            tokens.add(value)
    if m := re.fullmatch(r"(\d{2})\.(\d{2})\.(\d{2})", startdate):
        year = int(m.group(3))
        tokens.add(f"{1900 + year if year >= 85 else 2000 + year}-{m.group(2)}-{m.group(1)}")
    return frozenset(tokens)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every header token replaced, longest first (so a name is not half-replaced by its parts),
    and only where it is not part of a longer word or number."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "[redacted]", text, flags=re.IGNORECASE)
    return text


# ------------------------------------------------------------------------------------------- reading with MNE
def _open_raw(path: Path) -> mne.io.BaseRaw:
    """``mne.io.read_raw_edf`` without preloading and without MNE's warnings (we report the same facts ourselves,
    and MNE's texts can quote header fields)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mne.io.read_raw_edf(path, preload=False, encoding="latin1", verbose="error")


def _key(name: str) -> str:
    """Channel-name key: whitespace stripped, case folded."""
    return name.strip().casefold()


@dataclass(frozen=True)
class FileChannel:
    """One usable signal of a file: how discovery matches channel names and how MNE names the signal."""

    key: str
    name: str  # as the file spells it, stripped
    mne_name: str  # the name MNE gave the signal (repeats get "-0", "-1")
    signal: int  # 1-based signal number in the file


@dataclass(frozen=True)
class _FileChannels:
    usable: list[FileChannel]  # first occurrence of each name, placeholders left out, file order
    repeats: list[tuple[str, int, int]]  # (name, first signal, repeated signal), 1-based
    placeholders: list[int]  # 1-based signals named "-", "." or nothing
    unmatched: list[str]  # labels MNE did not report (only when matching by name)


def _file_channels(header: EdfHeader, mne_names: Sequence[str]) -> _FileChannels:
    """The usable channels of a file and what was left out.

    MNE's ``ch_names`` follow the header's data signals in order (repeats renamed ``-0``, ``-1``), so they are
    matched by position; should the counts ever differ, by name.
    """
    data = header.data_signals
    positional = len(mne_names) == len(data)
    usable: list[FileChannel] = []
    first: dict[str, int] = {}
    repeats, placeholders, unmatched = [], [], []
    for pos, idx in enumerate(data):
        label = header.labels[idx]
        if label in _PLACEHOLDERS:
            placeholders.append(idx + 1)
            continue
        key = _key(label)
        if key in first:
            repeats.append((label, first[key], idx + 1))
            continue
        if positional:
            mne_name = mne_names[pos]
        else:
            matches = [n for n in mne_names if _key(n) in (key, f"{key}-0")]
            if not matches:
                unmatched.append(label)
                continue
            mne_name = matches[0]
        first[key] = idx + 1
        usable.append(FileChannel(key, label, mne_name, idx + 1))
    return _FileChannels(usable, repeats, placeholders, unmatched)


# --------------------------------------------------------------------------------------------- signal checks
@dataclass(frozen=True)
class SignalScan:
    """Per-channel facts from one pass over a recording's signals.

    Attributes:
        n_samples: Samples per channel seen.
        std_v: Standard deviation per channel over its finite samples, in volts.
        constant: Channels whose finite samples are all equal (std_v may then show float rounding, not 0).
        non_finite: Count of NaN/inf samples per channel (only channels that have any).
        flat: Channels whose standard deviation is at most the flat threshold.
        error: A quarantine reason naming the file (non-finite samples), or ``None``.
    """

    n_samples: int
    std_v: dict[str, float]
    constant: list[str]
    non_finite: dict[str, int]
    flat: list[str]
    error: str | None


def scan_signals(
    path: Path, chunks: Iterable[np.ndarray], names: Sequence[str], *, flat_std_v: float = FLAT_STD_V
) -> SignalScan:
    """Scan (n_channels, n) chunks for non-finite samples and flat channels, with running statistics.

    Chan et al.'s (1979) pairwise update of mean and sum of squared deviations keeps memory at one chunk and stays
    exact for a large DC offset with tiny variance (where sum-of-squares would cancel catastrophically).

    NaN cannot come out of an EDF file (its samples are 16-bit integers), so a NaN means a broken reader or a
    future input format; it quarantines the recording rather than being interpolated away.

    Args:
        path: The file the chunks come from (named in the error).
        chunks: Signal chunks in volts, each (n_channels, n_samples_in_chunk), in time order.
        names: Channel names, one per row.
        flat_std_v: Flat threshold on the standard deviation, in volts.

    Returns:
        The scan; ``error`` is set when any sample is NaN or infinite.
    """
    n_ch = len(names)
    count = np.zeros(n_ch)
    mean = np.zeros(n_ch)
    m2 = np.zeros(n_ch)
    bad = np.zeros(n_ch, dtype=np.int64)
    lo, hi = np.full(n_ch, np.inf), np.full(n_ch, -np.inf)
    total = 0
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != n_ch:
            raise ValueError(f"{path}: chunk of shape {x.shape} does not match {n_ch} channel names")
        total += x.shape[1]
        if x.shape[1] == 0:
            continue
        finite = np.isfinite(x)
        bad += x.shape[1] - finite.sum(axis=1)
        if not finite.all():
            x = np.where(finite, x, np.nan)
            n_b = finite.sum(axis=1).astype(float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
                mean_b = np.nan_to_num(np.nanmean(x, axis=1))
                m2_b = np.nan_to_num(np.nansum((x - mean_b[:, None]) ** 2, axis=1))
        else:
            n_b = np.full(n_ch, float(x.shape[1]))
            mean_b = x.mean(axis=1)
            m2_b = ((x - mean_b[:, None]) ** 2).sum(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            lo, hi = np.fmin(lo, np.nanmin(x, axis=1)), np.fmax(hi, np.nanmax(x, axis=1))
        n_ab = count + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mean_b - mean
            mean = np.where(n_ab > 0, mean + delta * n_b / n_ab, 0.0)
            m2 = np.where(n_ab > 0, m2 + m2_b + delta**2 * count * n_b / n_ab, 0.0)
        count = n_ab
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.where(count > 0, np.sqrt(m2 / np.maximum(count, 1)), 0.0)
    std_v = {name: float(s) for name, s in zip(names, std, strict=True)}
    non_finite = {name: int(b) for name, b in zip(names, bad, strict=True) if b}
    constant = [name for name, a, b in zip(names, lo, hi, strict=True) if a == b]
    flat = [name for name in names if std_v[name] <= flat_std_v or name in constant]
    error = None
    if non_finite:
        listed = ", ".join(f"{name} ({n} of {total})" for name, n in non_finite.items())
        error = f"{path}: NaN or infinite samples after reading, in channel(s) {listed}"
    return SignalScan(total, std_v, constant, non_finite, flat, error)


def _chunks(raw: mne.io.BaseRaw, picks: Sequence[str], chunk: int) -> Iterable[np.ndarray]:
    for start in range(0, raw.n_times, chunk):
        yield raw.get_data(picks=list(picks), start=start, stop=min(start + chunk, raw.n_times))


# ------------------------------------------------------------------------------------------------- seizures
class EventsFileError(ValueError):
    """An events sidecar that cannot be trusted; the message names the tsv, the row and the problem."""


def _merge(intervals: Iterable[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
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
        EventsFileError: Naming the tsv, the row (1-based data row and file line) and the problem.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    rows = [(i, row) for i, row in enumerate(csv.reader(lines, delimiter="\t"), start=1) if any(c.strip() for c in row)]
    if not rows:
        raise EventsFileError(f"{path}: empty; expected a header with onset, duration and trial_type or eventType")
    header = [c.strip().lower() for c in rows[0][1]]
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
    return _merge(seizures)[0]


def _annotation_seizures(raw: mne.io.BaseRaw, name: str) -> tuple[list[tuple[float, float]], list[str]]:
    """Seizures from EDF+ annotations (description with "seiz"/"sz"); zero-duration start/end markers paired."""
    intervals, notes = [], []
    pending: float | None = None
    ann = raw.annotations
    for onset, duration, description in zip(ann.onset, ann.duration, ann.description, strict=True):
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
    merged, merges = _merge(iv for iv in intervals if iv[1] > iv[0])
    if merges:
        notes.append(f"{name}: {merges} overlapping seizure annotation(s) merged")
    return merged, notes


def _events_sidecar(path: Path) -> Path | None:
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


# ------------------------------------------------------------------------------------------------ discovery
@dataclass
class Candidate:
    """An EDF file found below ROOT, with what the folder says about it, before the file itself is read.

    Attributes:
        path: The EDF file (absolute).
        rel: Its path relative to ROOT, used in every message about the file.
        patient: Derived patient label.
        in_summary_folder: Whether its folder holds a CHB-MIT summary.
        summary: The summary's record of this file, if the summary lists it.
        summary_name: The summary file that lists it (relative to ROOT).
        recording_id: Unique id, assigned before validation so ids stay stable whichever files get quarantined.
    """

    path: Path
    rel: str  # path relative to ROOT, used in every message about the file
    patient: str
    in_summary_folder: bool = False
    summary: SummaryFile | None = None
    summary_name: str | None = None
    recording_id: str = ""


@dataclass
class Inspected:
    """A file that passed :func:`inspect_candidate`, with the channel facts the common-set rule needs.

    Attributes:
        info: The recording (its notes already scrubbed of header tokens).
        rel: Its path relative to ROOT.
        usable: Its usable channels, file order.
        flat: Flat channels, channel key -> how flat (e.g. ``"constant over the recording"``).
        repeats: Repeated channel names as (name, first signal, repeated signal), 1-based.
    """

    info: RecordingInfo
    rel: str
    usable: list[FileChannel]
    flat: dict[str, str]  # key -> how flat, e.g. "constant over the recording"
    repeats: list[tuple[str, int, int]]


def _natural(text: str) -> list[int | str]:
    """Sort key that puts ``rec2`` before ``rec10``."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", text)]


def _safe(text: str) -> str:
    """File-system-safe label: ``[A-Za-z0-9._-]`` only, no leading dot (hidden files)."""
    return _UNSAFE.sub("_", text).strip("._") or "x"


def _find_edfs(root: Path) -> list[Path]:
    """Every ``.edf`` (any case) below ``root``, hidden files and folders skipped (macOS ``._x.edf`` forks)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if f.lower().endswith(".edf") and not f.startswith(".")]
    return sorted(found, key=lambda p: _natural(str(p.relative_to(root))))


def _patient(root: Path, path: Path, summary_folder: bool) -> str:
    """The patient label of a file (module docstring: CHB-MIT folder, BIDS sub-XX, chbNN, first sub-folder, ROOT)."""
    rel = path.relative_to(root)
    folders = [root.name, *rel.parts[:-1]]
    if summary_folder:
        return _safe(path.parent.name or "root")
    for part in folders:
        if _BIDS_SUBJECT.match(part):
            return part
    if m := _BIDS_FILE_SUBJECT.match(path.name):
        return m.group(1)
    for part in folders:
        if _CHB_FOLDER.match(part):
            return _safe(part)
    if len(rel.parts) > 1:
        return _safe(rel.parts[0])
    return _safe(root.name or "root")


def _assign_ids(root: Path, candidates: list[Candidate]) -> None:
    """Give every candidate a unique, file-system-safe ``recording_id`` (before validation, so ids stay stable
    whichever files get quarantined)."""

    def base(c: Candidate, spelled: bool) -> str:
        stem = c.path.stem
        if spelled:  # the folders below the patient's spelled out, e.g. "alice__night1__rec"
            parts = list(c.path.relative_to(root).parts[:-1])
            if c.patient in parts:
                parts = parts[parts.index(c.patient) + 1 :]
            stem = "__".join([*parts, stem])
        if re.match(rf"{re.escape(c.patient)}(?![A-Za-z0-9])", stem, re.IGNORECASE):  # chb05_01, sub-01_...
            return _safe(stem)
        return _safe(f"{c.patient}__{stem}")

    ids = [base(c, False) for c in candidates]
    clashing = {k for k, n in Counter(i.casefold() for i in ids).items() if n > 1}
    ids = [base(c, True) if i.casefold() in clashing else i for c, i in zip(candidates, ids, strict=True)]
    seen: Counter[str] = Counter()
    for c, rid in zip(candidates, ids, strict=True):
        seen[rid.casefold()] += 1
        c.recording_id = rid if seen[rid.casefold()] == 1 else f"{rid}-{seen[rid.casefold()]}"


def _quarantine(path: Path, reason: str) -> dict[str, str]:
    return {"path": str(path), "stage": STAGE, "reason": reason}


def _summaries(
    root: Path, folder: Path, edfs: list[Path], quarantine: list[dict[str, str]], notes: list[str]
) -> tuple[dict[str, tuple[str, SummaryFile]], bool] | None:
    """Map file name (case-folded) -> (summary, record) for a folder's CHB-MIT summaries; ``None`` without one.

    Files a summary names but the folder lacks become quarantine rows naming the summary, its line and the file.
    The flag is False when a summary could not be parsed: the folder's unlisted files then have unknown seizures.
    """
    paths = sorted(p for p in folder.iterdir() if p.name.lower().endswith("-summary.txt") and p.is_file())
    if not paths:
        return None
    listing: dict[str, tuple[str, SummaryFile]] = {}
    ok = True
    present = {p.name.casefold() for p in edfs}
    for spath in paths:
        srel = spath.relative_to(root)
        try:
            summary = parse_chbmit_summary(spath)
        except (ValueError, OSError, UnicodeError) as exc:
            quarantine.append(_quarantine(spath, f"{srel}: cannot be read: {exc}"))
            ok = False
            continue
        notes.extend(summary.notes)
        for record in summary.files:
            name = record.name.casefold()
            if name in listing:
                notes.append(f"{srel} line {record.line}: {record.name} is also listed in {listing[name][0]}; "
                             "the first record is used")  # fmt: skip
                continue
            listing[name] = (str(srel), record)
            if name not in present:
                lost = f"; its {record.n_seizures} seizure(s) are lost" if record.n_seizures else ""
                quarantine.append(
                    _quarantine(
                        folder / record.name,
                        f"{srel} line {record.line} lists {record.name} but {srel.parent / record.name} does not "
                        f"exist{lost}",
                    )
                )
    return listing, ok


@dataclass
class Listing:
    """The result of :func:`find_candidates`: the EDF files to inspect, and what is already known to be wrong.

    Attributes:
        root: The data folder (absolute).
        candidates: Files to inspect, in natural order, with unique ``recording_id``s.
        quarantine: Rows ``{"path", "stage", "reason"}`` found from the listing alone (summary problems).
        notes: Notes from the summaries.
    """

    root: Path
    candidates: list[Candidate]
    quarantine: list[dict[str, str]]
    notes: list[str]


def discover_recordings(
    root: Path,
    *,
    channels: list[str] | None = None,
    min_duration_s: float = 4.0,
    flat_std_v: float = FLAT_STD_V,
    scan_chunk_s: float = 60.0,
) -> Discovery:
    """Find every EDF recording below ``root``, attach its seizures, validate it and fix the common channel set.

    The module docstring gives the layouts, the patient and id rules and the channel policy. Nothing is written
    (inputs are read-only); every file is read once, in chunks. Three steps, each usable on its own so the
    per-file middle one can run elsewhere (:mod:`tasks.ingest.fanout` maps it over Dask workers):
    :func:`find_candidates`, :func:`inspect_candidate` per file, :func:`settle_discovery`.

    Args:
        root: The data folder (CHB-MIT ``chbNN/`` folders, BIDS ``sub-XX/`` folders, sub-folders per patient, or
            EDF files directly).
        channels: Force this channel set (in this order) instead of the majority rule; recordings lacking any of
            them (or holding them flat) are quarantined.
        min_duration_s: Recordings with less data than this (seconds actually in the file) are quarantined; the
            default is one 4-s window.
        flat_std_v: A channel whose standard deviation over the recording is at most this (volts) is flat.
        scan_chunk_s: Seconds read at a time while scanning signals (memory stays at one chunk).

    Returns:
        Accepted recordings, quarantine rows, notes and the common channel set.

    Raises:
        FileNotFoundError: If ``root`` is not a folder or holds no ``.edf`` file (a whole-input mistake, not a
            bad file).
        ValueError: If ``channels`` names a channel twice.
    """
    listing = find_candidates(root, channels=channels)
    results = [inspect_candidate(c, min_duration_s, flat_std_v, scan_chunk_s) for c in listing.candidates]
    return settle_discovery(listing, results, channels)


def find_candidates(root: Path, *, channels: list[str] | None = None) -> Listing:
    """List the EDF files below ``root`` with their patient, id and CHB-MIT summary record; reads no EDF.

    Args:
        root: The data folder.
        channels: The forced channel set, if any (only checked here: it must name distinct channels).

    Returns:
        The candidates and the quarantine rows and notes the summaries gave.

    Raises:
        FileNotFoundError: If ``root`` is not a folder or holds no ``.edf`` file.
        ValueError: If ``channels`` names a channel twice.
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder; pass the folder that holds the EDF recordings")
    edfs = _find_edfs(root)
    if not edfs:
        raise FileNotFoundError(
            f"{root}: no .edf files below it; expected CHB-MIT chbNN/ folders, BIDS sub-XX/ folders or EDF files"
        )
    if channels is not None:
        keys = [_key(n) for n in channels]
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"channels={channels!r}: need distinct names (compared ignoring case and spaces)")
    quarantine: list[dict[str, str]] = []
    notes: list[str] = []
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for p in edfs:
        by_folder[p.parent].append(p)
    candidates: list[Candidate] = []
    for folder, files in by_folder.items():
        found = _summaries(root, folder, files, quarantine, notes)
        for p in files:
            c = Candidate(p, str(p.relative_to(root)), _patient(root, p, found is not None), found is not None)
            if found is not None:
                listing, ok = found
                if p.name.casefold() in listing:
                    c.summary_name, c.summary = listing[p.name.casefold()]
                elif not ok:
                    quarantine.append(
                        _quarantine(p, f"{c.rel}: its folder's summary cannot be read, so its seizures are unknown")
                    )
                    continue
            candidates.append(c)
    _assign_ids(root, candidates)
    return Listing(root, candidates, quarantine, notes)


def inspect_candidate(
    c: Candidate, min_duration_s: float = 4.0, flat_std_v: float = FLAT_STD_V, scan_chunk_s: float = 60.0
) -> Inspected | str:
    """Validate one file and attach its seizures: the per-file part of :func:`discover_recordings`.

    It depends on no other file, so it can run in any process that reads ``c.path``. It never raises for a bad
    file: a string is the file's quarantine reason, naming it by its path below ROOT. Every message (the reason,
    the recording's notes) is scrubbed of the file's header tokens.

    Args:
        c: A candidate from :func:`find_candidates`.
        min_duration_s: Minimum seconds of data; shorter files are quarantined.
        flat_std_v: Flat threshold on a channel's standard deviation (volts).
        scan_chunk_s: Seconds read at a time while scanning the signals.

    Returns:
        The inspected recording, or the quarantine reason.
    """
    secrets = _header_secrets(c.path)
    try:
        result = _inspect(c, min_duration_s, flat_std_v, scan_chunk_s)
    except Exception as exc:  # the sanctioned per-file catch: record the file, keep the (scrubbed) message
        result = f"{c.rel}: unexpected error while reading it: {type(exc).__name__}: {exc}"
    if isinstance(result, str):
        return _scrub(result, secrets)
    result.info.notes = [_scrub(n, secrets) for n in result.info.notes]
    return result


def settle_discovery(
    listing: Listing, results: Sequence[Inspected | str], channels: list[str] | None = None
) -> Discovery:
    """Combine the per-file results (in the order of ``listing.candidates``) into the :class:`Discovery`.

    Files whose result is a string are quarantined with it; the rest go through the common-channel rule of the
    module docstring, which needs every file's channels at once and so cannot run per file.

    Args:
        listing: What :func:`find_candidates` returned.
        results: :func:`inspect_candidate` of each candidate, same order.
        channels: The forced channel set, if any.

    Returns:
        Accepted recordings, quarantine rows, notes and the common channel set.

    Raises:
        ValueError: If ``results`` does not hold one result per candidate.
    """
    if len(results) != len(listing.candidates):
        raise ValueError(f"{len(results)} inspection results for {len(listing.candidates)} candidate files")
    quarantine = list(listing.quarantine)
    notes = list(listing.notes)
    inspected: list[Inspected] = []
    for c, result in zip(listing.candidates, results, strict=True):
        if isinstance(result, str):
            quarantine.append(_quarantine(c.path, result))
        else:
            inspected.append(result)

    common, kept, channel_notes, channel_rows = _common_channels(inspected, channels)
    quarantine.extend(channel_rows)
    notes.extend(channel_notes)
    notes.extend(_repeat_notes(kept))
    for item in kept:
        notes.extend(n for n in item.info.notes if " repeats channel " not in n)
    if not kept:
        notes.append(f"{listing.root}: no recording passed validation ({len(quarantine)} quarantine rows)")
    rates = sorted({item.info.sfreq for item in kept})
    if len(rates) > 1:
        notes.append(f"recordings have different sampling rates ({', '.join(f'{r:g}' for r in rates)} Hz); "
                     "preprocessing resamples them to one")  # fmt: skip
    return Discovery([item.info for item in kept], quarantine, notes, common)


def _inspect(c: Candidate, min_duration_s: float, flat_std_v: float, scan_chunk_s: float) -> Inspected | str:
    """Validate one file and attach its seizures; a string is the quarantine reason (naming the file)."""
    try:
        header = read_edf_header(c.path)
    except EdfHeaderError as exc:
        return str(exc).replace(str(c.path), c.rel, 1)
    except OSError as exc:
        return f"{c.rel}: cannot be opened: {exc.strerror or exc}"
    try:
        raw = _open_raw(c.path)
    except Exception as exc:  # MNE raises many types for corrupt input; rephrase with the file name
        return f"{c.rel}: MNE cannot read it ({type(exc).__name__}: {exc})"
    notes = [f"{c.rel}: {n.split(': ', 1)[1]}" for n in header.notes]
    chans = _file_channels(header, raw.ch_names)
    notes += [f"{c.rel}: channel {rep} {name!r} repeats channel {first}; keeping channel {first}"
              for name, first, rep in chans.repeats]  # fmt: skip
    if chans.placeholders:
        notes.append(f"{c.rel}: placeholder signal(s) {chans.placeholders} (named '-' or blank) ignored")
    if chans.unmatched:
        notes.append(f"{c.rel}: channel(s) {chans.unmatched} not found among MNE's channels; ignored")
    sfreq = float(raw.info["sfreq"])
    duration = raw.n_times / sfreq
    if duration < min_duration_s:
        return f"{c.rel}: {duration:g} s of data, shorter than the minimum of {min_duration_s:g} s (min_duration_s)"
    if not chans.usable:
        return f"{c.rel}: no usable channels (every signal is a placeholder)"

    # Seizures: summary > sidecar > EDF+ annotations.
    ann, ann_notes = _annotation_seizures(raw, c.rel)
    if c.summary is not None:
        record, source = c.summary, "chbmit-summary"
        if ann and ann != _merge(record.seizures)[0]:
            notes.append(f"{c.rel}: its EDF+ annotations give seizures {ann} but {c.summary_name} gives "
                         f"{list(record.seizures)}; the summary is used")  # fmt: skip
    else:
        sidecar = _events_sidecar(c.path)
        if sidecar is not None:
            try:
                intervals = read_events_tsv(sidecar)
            except EventsFileError as exc:
                return str(exc).replace(str(sidecar), str(Path(c.rel).parent / sidecar.name), 1)
            source = "events-tsv"
            if ann and ann != intervals:
                notes.append(f"{c.rel}: its EDF+ annotations disagree with {sidecar.name}; the sidecar is used")
        else:
            intervals, source = ann, "edf-annotations" if ann else "none"
            notes += ann_notes
        if c.in_summary_folder:
            what = f"seizures from its {source}" if source != "none" else "taken as seizure-free"
            notes.append(f"{c.rel}: not listed in its folder's summary; {what}")
        record = SummaryFile(c.path.name, 0, None, None, None, None, len(intervals), tuple(intervals), None)
    kept_seizures, dropped = attach_seizures(record, duration)
    # attach_seizures names the file by its base name; name it by its path below ROOT like every other message.
    notes += [f"{c.rel}: {d.reason.split(': ', 1)[1]}" for d in dropped]

    # Signals: one chunked pass over the usable channels.
    chunk = max(1, int(round(scan_chunk_s * sfreq)))
    names = [ch.name for ch in chans.usable]  # distinct: one per key
    scan = scan_signals(Path(c.rel), _chunks(raw, [ch.mne_name for ch in chans.usable], chunk), names,
                        flat_std_v=flat_std_v)  # fmt: skip
    if scan.error:
        return scan.error
    info = RecordingInfo(
        recording_id=c.recording_id,
        patient=c.patient,
        path=c.path,
        seizures=kept_seizures,
        source=source,
        duration_s=float(duration),
        sfreq=sfreq,
        channels=[ch.name for ch in chans.usable],
        start_offset_s=c.summary.start_s if c.summary is not None else None,
        notes=notes,
    )
    flat = {
        _key(n): "constant over the recording"
        if n in scan.constant
        else f"std {scan.std_v[n] * 1e6:.3g} uV over the recording"
        for n in scan.flat
    }
    return Inspected(info, c.rel, chans.usable, flat, chans.repeats)


def _common_channels(
    inspected: list[Inspected], forced: Sequence[str] | None
) -> tuple[list[str], list[Inspected], list[str], list[dict[str, str]]]:
    """Apply the channel policy of the module docstring: (common names, kept recordings, notes, quarantine rows)."""
    notes: list[str] = []
    rows: list[dict[str, str]] = []
    usable = [{ch.key for ch in item.usable if ch.key not in item.flat} for item in inspected]
    m = len(inspected)
    counts = Counter(k for u in usable for k in u)
    if forced is not None:
        wanted = [_key(n) for n in forced]
        names = {k: n.strip() for k, n in zip(wanted, forced, strict=True)}
        why = "that the configured channel list requires"
    else:
        order: list[str] = []
        names = {}
        for item in inspected:
            for ch in item.usable:
                if ch.key not in names:
                    order.append(ch.key)
                    names[ch.key] = ch.name
        wanted = [k for k in order if counts[k] * 2 > m]
        left_out = [k for k in order if counts[k] * 2 <= m]
        if left_out:
            listed = ", ".join(f"{names[k]} ({counts[k]} of {m})" for k in left_out)
            notes.append(f"channel(s) left out of the common set because no more than half of the {m} recordings "
                         f"have them (usable): {listed}")  # fmt: skip
        why = ""
    kept = []
    for item, have in zip(inspected, usable, strict=True):
        own = {ch.key: ch.name for ch in item.usable}
        lacking = [k for k in wanted if k not in have]
        if not lacking:
            kept.append(item)
            for key, how in item.flat.items():
                item.info.notes.append(f"{item.rel}: channel {own[key]} is flat ({how}); it is not "
                                       "a common channel, so the recording is kept")  # fmt: skip
            continue
        flat = [k for k in lacking if k in item.flat]
        absent = [k for k in lacking if k not in item.flat]
        parts = []
        if absent:
            tail = why or f"that {_count_text(absent, counts, m)} recordings have"
            parts.append(f"lacks channel(s) {', '.join(names[k] for k in absent)} {tail}")
        if flat:
            detail = ", ".join(f"{own[k]} ({item.flat[k]})" for k in flat)
            tail = why or f"that {_count_text(flat, counts, m)} recordings have usable"
            parts.append(f"has flat channel(s) {detail}: common channel(s) {tail}")
        rows.append(_quarantine(item.info.path, f"{item.rel}: {'; '.join(parts)}"))
    if rows:
        notes.append(f"{len(rows)} recording(s) quarantined for lacking common channels, rather than shrinking the "
                     f"common set of {len(wanted)} channels")  # fmt: skip
    return [names[k] for k in wanted], kept, notes, rows


def _count_text(keys: list[str], counts: Counter[str], m: int) -> str:
    values = sorted({counts[k] for k in keys})
    return f"{values[0]} of {m}" if len(values) == 1 else f"{values[0]}-{values[-1]} of {m}"


def _repeat_notes(kept: list[Inspected]) -> list[str]:
    """One note per repeated-channel pattern, not one per file (CHB-MIT repeats T8-P8 in hundreds of files)."""
    groups: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    for item in kept:
        for repeat in item.repeats:
            groups[repeat].append(item.rel)
    out = []
    for (name, first, rep), files in groups.items():
        example = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        out.append(f"channel {name!r} appears as signals {first} and {rep} in {len(files)} file(s) ({example}); "
                   f"signal {first} is kept")  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------- preprocessing
def line_frequency(
    data: np.ndarray, sfreq: float, *, candidates: Sequence[float] = (50.0, 60.0), min_ratio_db: float = 10.0
) -> float | None:
    """Detect mains interference: the candidate frequency whose spectral peak stands out most from its neighbours.

    Welch's PSD (4-s Hann segments, 0.25 Hz bins), averaged over channels; a candidate counts if the largest bin
    within +-0.5 Hz of it exceeds the median of the bins 1.5-5 Hz away on both sides by ``min_ratio_db``. Mains
    pickup is a narrow line, EEG near 50-60 Hz is broad, so the ratio separates them without knowing the country.

    Args:
        data: (n_channels, n_samples) signal, any unit.
        sfreq: Sampling rate in Hz.
        candidates: Mains frequencies to test, in Hz.
        min_ratio_db: How far the peak must stand out, in dB.

    Returns:
        The detected frequency in Hz, or ``None`` if no candidate stands out (or the data are too short).
    """
    data = np.atleast_2d(np.asarray(data, dtype=np.float64))
    nperseg = int(min(data.shape[1], round(4 * sfreq)))
    if nperseg < sfreq:  # less than 1 s: no usable resolution
        return None
    freqs, psd = signal.welch(data, fs=sfreq, nperseg=nperseg, axis=1)
    psd = psd.mean(axis=0)
    best, best_db = None, min_ratio_db
    for f0 in candidates:
        if f0 + 5 >= sfreq / 2:
            continue
        peak = psd[np.abs(freqs - f0) <= 0.5].max()
        side = psd[(np.abs(freqs - f0) >= 1.5) & (np.abs(freqs - f0) <= 5)]
        ref = np.median(side)
        if ref <= 0:
            continue
        ratio_db = 10 * np.log10(peak / ref)
        if ratio_db > best_db:
            best, best_db = float(f0), ratio_db
    return best


def _resample_ratio(sfreq_in: float, sfreq_out: float) -> tuple[int, int]:
    """(up, down) with sfreq_out = sfreq_in * up / down, as a fraction of small integers (polyphase resampling)."""
    exact = Fraction(sfreq_out).limit_denominator(10**6) / Fraction(sfreq_in).limit_denominator(10**6)
    approx = exact.limit_denominator(1000)
    if abs(approx - exact) > 1e-4 * exact:
        raise ValueError(
            f"resampling {sfreq_in:g} Hz to {sfreq_out:g} Hz needs a ratio of small integers (found {approx}, off by "
            f"{float(abs(approx - exact) / exact):.2g}); choose an sfreq_out that is"
        )
    return approx.numerator, approx.denominator


def _design_filter(
    sfreq_in: float,
    sfreq_out: float,
    l_freq: float | None,
    h_freq: float | None,
    notch_hz: float | None,
    order: int,
    notch_q: float = 30.0,
) -> tuple[np.ndarray | None, float | None, str]:
    """The filter cascade as second-order sections, the low-pass actually applied, and a description."""
    sections, parts = [], []
    if l_freq is not None:
        sections.append(signal.butter(order, l_freq, btype="highpass", fs=sfreq_in, output="sos"))
        parts.append(f"high-pass {l_freq:g} Hz")
    applied_h = None
    if h_freq is not None and h_freq < 0.5 * sfreq_in:
        sections.append(signal.butter(order, h_freq, btype="lowpass", fs=sfreq_in, output="sos"))
        parts.append(f"low-pass {h_freq:g} Hz")
        applied_h = h_freq
    text = f"causal Butterworth order {order} " + ", ".join(parts) if parts else "no band-pass"
    if notch_hz is not None:
        limit = 0.5 * min(sfreq_in, sfreq_out) - 1.0
        lines = [k * notch_hz for k in range(1, 20) if k * notch_hz < limit]
        for f in lines:
            b, a = signal.iirnotch(f, notch_q, fs=sfreq_in)
            sections.append(signal.tf2sos(b, a))
        text += f"; causal IIR notch Q={notch_q:g} at {', '.join(f'{f:g}' for f in lines)} Hz"
    up, down = _resample_ratio(sfreq_in, sfreq_out)
    if up != down:
        text += f"; polyphase resampling {sfreq_in:g} -> {sfreq_out:g} Hz (scipy resample_poly, up {up}, down {down})"
    sos = np.vstack(sections) if sections else None
    return sos, applied_h, text


def filter_resample_stream(
    read: Callable[[int, int], np.ndarray],
    n_in: int,
    sos: np.ndarray | None,
    up: int,
    down: int,
    chunk: int,
    init_samples: int = 256,
) -> Iterator[tuple[int, np.ndarray]]:
    """Filter and resample a long signal chunk by chunk, giving the same result as doing it in one go.

    The IIR cascade runs causally with its state carried from chunk to chunk (``sosfilt`` ``zi``), so chunk
    borders leave no trace. It starts in the steady state for the mean of the first ``init_samples`` samples (read
    separately, so the start does not depend on the chunk size): a DC offset then does not ring through the
    first seconds, as it would from a zero state or from a noisy first sample.

    ``resample_poly`` is not stateful, so each output block is computed from the filtered input with ``pad``
    samples of context on both sides (more than the polyphase filter's half-length) and block borders fall on
    multiples of ``down``, where input and output grids meet; the output equals ``resample_poly`` over the whole
    filtered signal (including its zero-padded ends), to float rounding.
    Memory: one chunk plus 2 x ``pad`` samples per channel.

    Args:
        read: ``read(start, stop)`` returns input samples [start, stop) as (n_channels, stop - start).
        n_in: Input length in samples.
        sos: Second-order sections at the input rate, or ``None``.
        up, down: Resampling factors (output rate = input rate x up / down).
        chunk: Input samples per read (rounded up to a multiple of ``down``, at least 2 x pad + down).
        init_samples: Samples averaged for the filter's initial state (about a second is plenty).

    Yields:
        ``(output_start, block)``: consecutive, non-overlapping (n_channels, k) float64 blocks covering
        ``ceil(n_in * up / down)`` output samples.
    """
    resample = up != down
    pad = down * math.ceil((10 * max(up, down) / up + 2) / down) if resample else 0
    chunk = max(down * math.ceil(chunk / down), 2 * pad + down)
    n_out = -(-n_in * up // down)
    zi = None
    if sos is not None:
        level = np.asarray(read(0, max(1, min(n_in, init_samples))), dtype=np.float64).mean(axis=1)
        zi = signal.sosfilt_zi(sos)[:, None, :] * level[None, :, None]  # (sections, C, 2)
    buf: np.ndarray | None = None
    buf_start = emitted = 0
    for a in range(0, n_in, chunk):
        b = min(a + chunk, n_in)
        x = np.asarray(read(a, b), dtype=np.float64)
        if sos is not None:
            x, zi = signal.sosfilt(sos, x, axis=1, zi=zi)
        buf = x if buf is None else np.concatenate([buf, x], axis=1)
        last = b == n_in
        end = n_in if last else (b - pad) // down * down
        if end <= emitted:
            continue
        seg_lo = max(0, emitted - pad)  # a multiple of down, like emitted and pad
        seg = buf[:, seg_lo - buf_start : (n_in if last else end + pad) - buf_start]
        if resample:
            y, o_seg = signal.resample_poly(seg, up, down, axis=1), seg_lo * up // down
        else:
            y, o_seg = seg, seg_lo
        o0, o1 = emitted * up // down, (n_out if last else end * up // down)
        yield o0, y[:, o0 - o_seg : o1 - o_seg]
        emitted = end
        keep = max(0, emitted - pad)
        buf, buf_start = buf[:, keep - buf_start :], keep


def _detect_line(raw: mne.io.BaseRaw, picks: list[str], sfreq: float) -> float | None:
    """:func:`line_frequency` on six 10-s excerpts spread over the recording (cheap, and robust to one bad stretch)."""
    seg = int(min(raw.n_times, round(10 * sfreq)))
    starts = sorted({int(s) for s in np.linspace(0, raw.n_times - seg, 6)})
    data = np.concatenate([raw.get_data(picks=picks, start=s, stop=s + seg) for s in starts], axis=1)
    return line_frequency(data, sfreq)


def preprocess_recording(
    path: Path,
    channels: Sequence[str],
    out_path: Path,
    *,
    sfreq_out: float = 256.0,
    l_freq: float | None = 0.5,
    h_freq: float | None = None,
    notch: float | Literal["auto"] | None = "auto",
    order: int = 4,
    chunk_s: float = 60.0,
) -> RecordingMeta:
    """Write one EDF's ``channels`` as a float32 (n_channels, n_samples) ``.npy`` in volts at ``sfreq_out``.

    Filter design: IIR Butterworth high-pass and low-pass (order ``order`` each) and IIR notches at the mains
    frequency and its harmonics, run **causally** with the state carried across chunks, then polyphase
    resampling (:func:`filter_resample_stream`). Why causal rather than zero-phase: (1) it is exact in chunks,
    with no overlap to tune and no seams, in one pass; (2) it is the filter a bedside or implanted device can run,
    so models are trained on what they will see online; (3) a zero-phase filter runs backwards too and smears
    each seizure's onset into the preceding seconds, which leaks the answer into preictal and interictal windows.
    The cost is phase delay: for the defaults at 256 Hz, about 2-8 ms at 5-20 Hz, 23 ms at 3 Hz and up to 0.4 s
    at 1 Hz, against 4-s windows and one-second label resolution.

    Memory stays flat: the EDF is read with ``mne.io.read_raw_edf(preload=False)`` ``chunk_s`` seconds at a time,
    and the output file is created (header and full size) with ``np.lib.format.open_memmap`` but filled with
    positioned writes of each block's rows rather than through the mapping: pages touched through a mapping
    count towards the process's resident memory while it is mapped, and the kernel maps read-around neighbours
    with them (about 30 MB extra measured on an 8-h recording, against none with plain writes). The array is
    written under ``<name>.partial`` and renamed when complete, so a crash never leaves a file that looks
    finished.

    Args:
        path: The EDF file (read-only).
        channels: Channel names to write, in this order (matched ignoring case and surrounding spaces; a repeated
            name resolves to its first signal).
        out_path: The ``.npy`` to write (its folder is created).
        sfreq_out: Output sampling rate in Hz.
        l_freq: High-pass corner in Hz (``None``: no high-pass; DC and drift stay).
        h_freq: Low-pass corner in Hz; ``None`` means min(70, 0.45 x sfreq_out). Skipped when at or above the
            input's Nyquist frequency (nothing to remove; resampling band-limits anyway).
        notch: Mains frequency in Hz, ``"auto"`` (detect 50 or 60 Hz with :func:`line_frequency`; no notch if
            neither stands out), or ``None``.
        order: Butterworth order of each of the high- and low-pass filters.
        chunk_s: Seconds of input processed at a time.

    Returns:
        What was written (rates, filter description, sample count).

    Raises:
        EdfHeaderError: If the header is corrupt or the file truncated.
        ValueError: If MNE cannot read the file, a channel is missing, or the filter settings are impossible;
            the message names the file or the setting.
    """
    path, out_path = Path(path), Path(out_path)
    if not channels:
        raise ValueError(f"{path}: no channels requested")
    if not sfreq_out > 0:
        raise ValueError(f"sfreq_out={sfreq_out}: must be > 0 Hz")
    h = min(70.0, 0.45 * sfreq_out) if h_freq is None else float(h_freq)
    if h >= 0.5 * sfreq_out:
        raise ValueError(f"h_freq={h:g} Hz: must be below the output Nyquist frequency {0.5 * sfreq_out:g} Hz")
    if l_freq is not None and not 0 < l_freq < h:
        raise ValueError(f"l_freq={l_freq:g} Hz: must be > 0 and below h_freq={h:g} Hz")
    header = read_edf_header(path)
    secrets = _header_secrets(path)
    try:
        raw = _open_raw(path)
    except Exception as exc:
        # ``from None``: the chained original could quote the header's identifying fields.
        raise ValueError(_scrub(f"{path}: MNE cannot read it ({type(exc).__name__}: {exc})", secrets)) from None
    sfreq_in = float(raw.info["sfreq"])
    by_key = {ch.key: ch for ch in _file_channels(header, raw.ch_names).usable}
    missing = [n for n in channels if _key(n) not in by_key]
    if missing:
        raise ValueError(
            f"{path}: lacks channel(s) {', '.join(missing)} (it has {', '.join(by_key[k].name for k in by_key)})"
        )
    picks = [by_key[_key(n)].mne_name for n in channels]
    if notch == "auto":
        notch_hz = _detect_line(raw, picks, sfreq_in)
    elif notch is None:
        notch_hz = None
    else:
        notch_hz = float(notch)
        if not 0 < notch_hz < 0.5 * sfreq_in:
            raise ValueError(f"notch={notch}: must be between 0 and the input Nyquist {0.5 * sfreq_in:g} Hz")
    up, down = _resample_ratio(sfreq_in, sfreq_out)
    sos, applied_h, description = _design_filter(sfreq_in, sfreq_out, l_freq, h, notch_hz, order)

    n_in = int(raw.n_times)
    n_out = -(-n_in * up // down)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    created = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(channels), n_out))
    data_offset = created.offset  # bytes of .npy header; rows follow, C order
    del created
    try:

        def read(start: int, stop: int) -> np.ndarray:
            return raw.get_data(picks=picks, start=start, stop=stop)

        written = 0
        chunk = max(1, int(round(chunk_s * sfreq_in)))
        with tmp.open("r+b") as fh:
            for o0, block in filter_resample_stream(read, n_in, sos, up, down, chunk, init_samples=int(sfreq_in)):
                if not np.isfinite(block).all():
                    raise ValueError(f"{path}: non-finite values after filtering near output sample {o0}")
                rows = np.ascontiguousarray(block, dtype="<f4")
                for c, row in enumerate(rows):  # row c of the (C, n_out) array starts at c * n_out samples
                    fh.seek(data_offset + 4 * (c * n_out + o0))
                    fh.write(row.data)
                written = o0 + block.shape[1]
        if written != n_out:
            raise RuntimeError(f"{path}: wrote {written} of {n_out} samples (a bug in the chunking)")
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RecordingMeta(
        path=path,
        out_path=out_path,
        channels=[str(n).strip() for n in channels],
        sfreq_in=sfreq_in,
        sfreq_out=sfreq_in * up / down,
        n_samples=n_out,
        l_freq=l_freq,
        h_freq=applied_h,
        notch_hz=notch_hz,
        filter=description,
    )


def preprocess_for_stage(
    path: Path, recording_id: str, channels: Sequence[str], out_dir: Path, cfg: EegIngestConfig
) -> RecordingMeta | str:
    """:func:`preprocess_recording` of one accepted recording with the stage's settings, into
    ``signal_path(out_dir, recording_id)``; a bad file's error becomes its quarantine reason instead of a raise.

    It depends on no other recording (ids are unique, so no two calls write the same file), so it can run in any
    process that reads ``path`` and writes ``out_dir``.

    Args:
        path: The EDF file.
        recording_id: Its id (names the output file).
        channels: The common channel set, in array row order.
        out_dir: The stage's output folder.
        cfg: The ingest settings (``sfreq``, ``l_freq``, ``h_freq``, ``notch``).

    Returns:
        What was written, or the reason the recording is quarantined (header, MNE, channel or filter errors).
    """
    try:
        return preprocess_recording(
            Path(path),
            channels,
            signal_path(out_dir, recording_id),
            sfreq_out=cfg.sfreq,
            l_freq=cfg.l_freq,
            h_freq=cfg.h_freq,
            notch=cfg.notch,
        )
    except (EdfHeaderError, ValueError, OSError) as exc:
        return str(exc)


def drop_failed(discovery: Discovery, outcomes: Sequence[RecordingMeta | str]) -> Discovery:
    """The discovery without the recordings whose preprocessing failed; they join the quarantine, in order.

    Args:
        discovery: What :func:`discover_recordings` (or :func:`settle_discovery`) returned.
        outcomes: :func:`preprocess_for_stage` of each of ``discovery.recordings``, same order.

    Returns:
        A new :class:`Discovery`; ``discovery`` is left as it was.

    Raises:
        ValueError: If ``outcomes`` does not hold one outcome per recording.
    """
    if len(outcomes) != len(discovery.recordings):
        raise ValueError(f"{len(outcomes)} preprocessing outcomes for {len(discovery.recordings)} recordings")
    kept = [rec for rec, out in zip(discovery.recordings, outcomes, strict=True) if not isinstance(out, str)]
    failed = [_quarantine(rec.path, out) for rec, out in zip(discovery.recordings, outcomes, strict=True)
              if isinstance(out, str)]  # fmt: skip
    return Discovery(kept, [*discovery.quarantine, *failed], list(discovery.notes), list(discovery.channels))


# ---------------------------------------------------------------------------------------------------- tables
def signal_path(out_dir: Path, recording_id: str) -> Path:
    """Where a recording's preprocessed array lives: ``<out_dir>/signals/<recording_id>.npy``."""
    return Path(out_dir) / "signals" / f"{recording_id}.npy"


def seizure_rows(discovery: Discovery) -> list[dict[str, str | float]]:
    """One row per seizure with ``seizure_id`` = ``<patient>_s<k>``, numbered per patient in time order.

    Time order uses the recordings' start offsets when every recording of the patient that holds a seizure has
    one (CHB-MIT clock times); otherwise file order (natural sort), then onset.
    """
    by_patient: dict[str, list[tuple[int, RecordingInfo, float, float]]] = defaultdict(list)
    for order, rec in enumerate(discovery.recordings):
        for onset, offset in rec.seizures:
            by_patient[rec.patient].append((order, rec, onset, offset))
    rows: list[dict[str, str | float]] = []
    for patient, items in by_patient.items():
        timed = all(rec.start_offset_s is not None for _, rec, _, _ in items)
        if timed:
            items.sort(key=lambda it: (it[1].start_offset_s + it[2], it[0]))
        else:
            items.sort(key=lambda it: (it[0], it[2]))
        for k, (_, rec, onset, offset) in enumerate(items, start=1):
            rows.append({"recording_id": rec.recording_id, "patient": patient, "seizure_id": f"{patient}_s{k}",
                         "onset_s": onset, "offset_s": offset})  # fmt: skip
    return rows


def write_tables(discovery: Discovery, out_dir: Path) -> dict[str, Path]:
    """Write ``recordings.csv``, ``seizures.csv`` and ``channels.json``: the contract the windowing code reads.

    ``recordings.csv``: recording_id, patient, path, duration_s, sfreq_in, start_offset_s (empty when unknown),
    n_seizures. ``seizures.csv``: recording_id, patient, seizure_id, onset_s, offset_s (seconds from the
    recording's start). ``channels.json``: ``{"channels": [...]}``, the common set in array row order. The arrays
    themselves go to :func:`signal_path`.

    Args:
        discovery: The result of :func:`discover_recordings`.
        out_dir: Folder to write into (created).

    Returns:
        ``{"recordings": path, "seizures": path, "channels": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"recordings": out_dir / "recordings.csv", "seizures": out_dir / "seizures.csv",
             "channels": out_dir / "channels.json"}  # fmt: skip
    with paths["recordings"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=RECORDINGS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for rec in discovery.recordings:
            writer.writerow({"recording_id": rec.recording_id, "patient": rec.patient, "path": str(rec.path),
                             "duration_s": rec.duration_s, "sfreq_in": rec.sfreq,
                             "start_offset_s": "" if rec.start_offset_s is None else rec.start_offset_s,
                             "n_seizures": len(rec.seizures)})  # fmt: skip
    with paths["seizures"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SEIZURES_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(seizure_rows(discovery))
    paths["channels"].write_text(json.dumps({"channels": list(discovery.channels)}, indent=2) + "\n", encoding="utf-8")
    return paths


# --------------------------------------------------------------------------------------------- Prefect task
def _listing_fingerprint(root: Path) -> str:
    """Names, sizes and mtimes of every file under ``root``: a cheap key for "the input changed"."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def simulate_source(cfg: EegIngestConfig, cache: StageCache, seed: int, refresh: bool) -> tuple[Path, StageResult]:
    """Write (or reuse) the simulated CHB-MIT-layout data set; ``cache/simulate/<key>/data`` is read-only input."""
    from tasks.ingest.simulate import SimulationSpec, simulate_dataset

    sim = cfg.simulate
    spec = SimulationSpec(
        n_patients=sim.n_patients,
        recordings_per_patient=sim.recordings_per_patient,
        recording_s=sim.recording_s,
        seizures_per_patient=sim.seizures_per_patient,
        sfreq=sim.sfreq,
        preictal_s=sim.preictal_s,
        seed=seed,
    )
    key = stage_key("simulate", sim, seed)

    def build(out: Path) -> dict:
        files = simulate_dataset(out / "data", spec)
        return {"n_files": len(files), "hours": len(files) * sim.recording_s / 3600}

    result = run_stage(cache, "simulate", key, build, refresh)
    return result.dir / "data", result


@task(
    name="ingest", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], timeout_seconds=FILE_STAGE_TIMEOUT_S
)
def ingest_eeg_task(cfg: EegIngestConfig, ctx: RunContext, runner: RunnerConfig | None = None) -> StageResult:
    """Find, validate and preprocess every recording into ``signals/<id>.npy`` (cached on the file listing).

    With ``runner.kind=dask`` each file's inspection and each recording's preprocessing run as mapped task runs
    of a nested ``ingest-recordings`` flow on the Dask workers (:mod:`tasks.ingest.fanout`); the outcome, and so
    the cache key, does not depend on the runner.
    """
    from tasks.ingest.fanout import ingest_recordings  # fanout imports this module

    logger = get_run_logger()
    cache = StageCache(ctx.cache_root)
    if cfg.path is None:
        root, sim = simulate_source(cfg, cache, ctx.seed, ctx.refreshes("ingest"))
        logger.info("ingest: simulated %.1f h of EEG%s", sim.summary["hours"], " (cached)" if sim.cached else "")
        source = "sim"
    else:
        root = Path(cfg.path).expanduser().resolve()
        source = "edf"
        if not root.is_dir():
            msg = f"--data {root}: no such folder (expected CHB-MIT layout or a folder of EDF files)"
            return StageResult(stage="ingest", key="", path="", cached=False, seconds=0.0, error=msg)
    key = stage_key("ingest", _listing_fingerprint(root), cfg.model_dump(exclude={"simulate"}), str(root))

    def build(out: Path) -> dict:
        try:
            listing = find_candidates(root, channels=cfg.channels)
        except (FileNotFoundError, ValueError) as exc:
            raise StageError(str(exc)) from exc
        logger.info("ingest: %d EDF files (runner: %s)", len(listing.candidates), runner.kind if runner else "local")
        discovery = ingest_recordings(listing, out, cfg, runner)
        if not discovery.recordings:
            raise StageError(f"no usable EDF recordings under {root}; see quarantine.csv for why")
        kept = discovery.recordings
        write_tables(discovery, out)
        pd.DataFrame(discovery.quarantine, columns=["path", "stage", "reason"]).to_csv(
            out / "quarantine.csv", index=False
        )
        return {
            "source": source,
            "root": str(root),
            "sfreq": cfg.sfreq,
            "channels": discovery.channels,
            "n_recordings": len(kept),
            "n_patients": len({r.patient for r in kept}),
            "hours": sum(r.duration_s for r in kept) / 3600,
            "n_seizures": sum(len(r.seizures) for r in kept),
            "n_quarantined": len(discovery.quarantine),
            "notes": discovery.notes[:50],
        }

    result = run_stage(cache, "ingest", key, build, ctx.refreshes("ingest"))
    if result.error is None:
        s = result.summary
        logger.info(
            "ingest: %d recordings, %d patients, %.1f h, %d seizures, %d quarantined%s",
            s["n_recordings"],
            s["n_patients"],
            s["hours"],
            s["n_seizures"],
            s["n_quarantined"],
            " (cached)" if result.cached else "",
        )
    return result
