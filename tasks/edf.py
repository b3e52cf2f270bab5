"""Read EDF/EDF+ recordings safely: header arithmetic, de-identification, MNE access, channel names, signal checks.

Every stage that opens a scalp-EEG file goes through here (ingest's inspection and preprocessing today; prediction
on new recordings later), so a file is judged the same way wherever it is read.

* **Header before MNE.** :func:`read_edf_header` parses and checks the header against the file size before MNE
  sees the file, because MNE 1.13 reads a truncated file with only a warning (it infers the record count from the
  file size), replaces a zero record duration by 1 s, reads a signal with 0 samples per record as if nothing were
  wrong, and answers an unparsable number with a bare ``int()`` error. :func:`open_raw` then opens it lazily
  (``preload=False``).
* **Annotations as written.** :func:`read_edf_annotations` reads the EDF+ annotation signal itself, because MNE
  crops annotations to the data without a word, and a seizure annotated past the end must be named.
* **De-identification.** EDF headers carry the patient's name, code, birth date and the recording's identifiers
  and start date. :class:`EdfHeader` keeps none of them; :func:`header_secrets` lists them and :func:`scrub`
  removes them from any text that comes from MNE before it is kept, so messages are built from file paths,
  derived labels and signal facts (channel labels, rates, counts) only. Only identifiers are scrubbed, never
  ordinary words, short tokens or the file's own path (a non-EDF file has no header identity at all).
* **Channel names.** :func:`file_channels` compares names after stripping whitespace, case-insensitively
  (:func:`channel_key`). A repeated name keeps its first signal (MNE renames repeats ``T8-P8-0``/``T8-P8-1``; the
  first is used); placeholder signals named ``-``, ``.`` or nothing are ignored.
* **Signal checks.** :func:`scan_signals` makes one chunked pass (:func:`read_chunks`) for non-finite samples and
  flat channels (standard deviation at most :data:`FLAT_STD_V`), so memory stays at one chunk.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import mne
import numpy as np

#: A channel whose standard deviation over the whole recording is at most this (volts) is flat. 0.1 uV is far below
#: any scalp EEG (a few uV at rest) and above EDF's quantisation step of typical ranges (+-2 mV over 16 bits:
#: 0.06 uV), so a disconnected electrode toggling between two codes still counts as flat.
FLAT_STD_V = 1e-7

_PLACEHOLDERS = frozenset({"", "-", "."})
_ANNOTATION_LABELS = frozenset({"EDF ANNOTATIONS", "BDF ANNOTATIONS"})
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# Header tokens that identify nobody (EDF+ "unknown" and keywords); see header_secrets.
_HARMLESS_TOKENS = frozenset({"X", "STARTDATE", "EDF", "EDF+", "EDF+C", "EDF+D"})
# Everyday words that free-text EDF headers hold ("Patient 7 routine recording") and messages use: scrubbing them
# would garble every message about the file and protect no one.
_EVERYDAY_WORDS = frozenset(
    "patient subject anonymous anonymized unknown none male female recording routine study session sleep night "
    "awake test data file files this that with from then when only read reading cannot error header signal "
    "signals channel channels record records sample samples start startdate end time date".split()
)
# The per-signal header stores each field for all signals, then the next field: (name, width in bytes).
_SIGNAL_FIELDS = (
    ("label", 16), ("transducer", 80), ("physical_dimension", 8), ("physical_min", 8), ("physical_max", 8),
    ("digital_min", 8), ("digital_max", 8), ("prefiltering", 80), ("samples_per_record", 8),
)  # fmt: skip


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


@dataclass(frozen=True)
class _FixedFields:
    """The numbers of the fixed 256-byte header that the checks need (its identifying fields are not read)."""

    header_bytes: int
    n_records: int
    record_duration_s: float
    n_signals: int
    reserved: str


def _field(raw: bytes, start: int, width: int) -> str:
    return raw[start : start + width].decode("latin-1").strip()


def _header_number(path: Path, fixed: bytes, start: int, width: int, what: str, kind: type = int) -> float:
    """A numeric field of the fixed header; an :class:`EdfHeaderError` naming the field and its bytes if not one."""
    text = _field(fixed, start, width)
    try:
        return kind(text)
    except ValueError:
        raise EdfHeaderError(
            f"{path}: header field '{what}' (bytes {start}-{start + width - 1}) is {text!r}, not a number"
        ) from None


def _read_header_blocks(path: Path, size: int) -> tuple[_FixedFields, bytes]:
    """The fixed header's numbers and the raw per-signal header, checked against each other."""
    with path.open("rb") as fh:
        fixed = fh.read(256)
        if len(fixed) < 256:
            raise EdfHeaderError(f"{path}: only {size} bytes, shorter than the 256-byte EDF header")
        if not fixed[:8].startswith(b"0"):
            raise EdfHeaderError(f"{path}: not an EDF file (its version field is not '0'; BDF is not supported)")
        header_bytes = int(_header_number(path, fixed, 184, 8, "number of bytes in header"))
        n_records = int(_header_number(path, fixed, 236, 8, "number of data records"))
        duration = float(_header_number(path, fixed, 244, 8, "duration of a data record", float))
        n_signals = int(_header_number(path, fixed, 252, 4, "number of signals"))
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
    return _FixedFields(header_bytes, n_records, duration, n_signals, reserved), rest


def _signal_columns(rest: bytes, n_signals: int) -> dict[str, list[str]]:
    """The per-signal header as one list of stripped texts per field (see ``_SIGNAL_FIELDS``)."""
    columns: dict[str, list[str]] = {}
    offset = 0
    for name, width in _SIGNAL_FIELDS:
        columns[name] = [_field(rest, offset + i * width, width) for i in range(n_signals)]
        offset += width * n_signals
    return columns


def _signal_number(path: Path, labels: Sequence[str], values: Sequence[str], i: int, what: str, kind: type) -> float:
    """Field ``what`` of signal ``i`` as a number; an :class:`EdfHeaderError` naming the signal if not one."""
    try:
        return kind(values[i])
    except ValueError:
        raise EdfHeaderError(f"{path}: signal {i + 1} ({labels[i]!r}) has {what} {values[i]!r}, not a number") from None


def _check_signals(
    path: Path,
    fixed: _FixedFields,
    columns: dict[str, list[str]],
    annotations: tuple[int, ...],
    spr: tuple[int, ...],
) -> None:
    """Raise :class:`EdfHeaderError` unless there are records, a record duration, data signals, and every data
    signal has samples and non-empty digital and physical ranges: the facts MNE would otherwise take on trust."""
    n_records, duration, labels = fixed.n_records, fixed.record_duration_s, columns["label"]
    if n_records <= 0:
        why = " (-1: the writer never finished the file)" if n_records == -1 else ""
        raise EdfHeaderError(f"{path}: the header says {n_records} data records{why}: no data to read")
    if not duration > 0 or not math.isfinite(duration):
        raise EdfHeaderError(
            f"{path}: data record duration is {duration:g} s, so the sampling rate is undefined: corrupt header"
        )
    data = [i for i in range(fixed.n_signals) if i not in annotations]
    if not data:
        raise EdfHeaderError(f"{path}: no data signals, only annotations")
    for i in data:
        if spr[i] <= 0:
            raise EdfHeaderError(
                f"{path}: signal {i + 1} ({labels[i]!r}) has {spr[i]} samples per data record, i.e. a sampling "
                f"rate of {spr[i] / duration:g} Hz: corrupt header"
            )
        lo = _signal_number(path, labels, columns["digital_min"], i, "digital minimum", int)
        hi = _signal_number(path, labels, columns["digital_max"], i, "digital maximum", int)
        if lo >= hi:
            raise EdfHeaderError(f"{path}: signal {i + 1} ({labels[i]!r}) has digital range {lo}..{hi}: corrupt header")
        plo = _signal_number(path, labels, columns["physical_min"], i, "physical minimum", float)
        phi = _signal_number(path, labels, columns["physical_max"], i, "physical maximum", float)
        if plo == phi:
            raise EdfHeaderError(f"{path}: signal {i + 1} ({labels[i]!r}) has an empty physical range {plo:g}..{phi:g}")
    for i in annotations:
        if spr[i] <= 0:
            raise EdfHeaderError(f"{path}: annotation signal {i + 1} has {spr[i]} samples per data record")


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
    fixed, rest = _read_header_blocks(path, size)
    columns = _signal_columns(rest, fixed.n_signals)
    labels = tuple(columns["label"])
    annotations = tuple(i for i, label in enumerate(labels) if label.upper() in _ANNOTATION_LABELS)
    spr = tuple(
        int(_signal_number(path, labels, columns["samples_per_record"], i, "samples per data record", int))
        for i in range(fixed.n_signals)
    )
    _check_signals(path, fixed, columns, annotations, spr)
    reserved = fixed.reserved
    variant = "EDF+D" if reserved.startswith("EDF+D") else "EDF+C" if reserved.startswith("EDF+C") else "EDF"
    n_records, duration = fixed.n_records, fixed.record_duration_s
    header = EdfHeader(path, fixed.header_bytes, n_records, duration, labels, spr, annotations, size, variant)
    if size < header.expected_bytes:
        complete = (size - fixed.header_bytes) // header.record_bytes
        raise EdfHeaderError(
            f"{path}: truncated: the header promises {n_records} data records of {header.record_bytes} bytes "
            f"({header.expected_bytes} bytes, {header.duration_s:g} s) but the file has {size} bytes "
            f"({complete} complete records, {complete * duration:g} s)"
        )
    notes = []
    if size > header.expected_bytes:
        notes.append(f"{path.name}: {size - header.expected_bytes} bytes after the last data record are ignored")
    if variant == "EDF+D":
        notes.append(f"{path.name}: EDF+D (discontinuous); its records are read back to back, gaps are not kept")
    return EdfHeader(
        path, fixed.header_bytes, n_records, duration, labels, spr, annotations, size, variant, tuple(notes)
    )


# ------------------------------------------------------------------------------------------- EDF+ annotations
class EdfAnnotation(NamedTuple):
    """One EDF+ annotation: onset and duration in seconds from the first data record, and its text."""

    onset_s: float
    duration_s: float
    description: str


# A time-stamped annotation list (TAL): "+onset[\x15duration]\x14text\x14[text\x14...]\x00" (EDF+ spec, 2.2.2).
_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x14\x00", re.DOTALL)


def read_edf_annotations(header: EdfHeader) -> list[EdfAnnotation]:
    """Every EDF+ annotation of the file, as written, including those that lie past the end of the data.

    Why not ``raw.annotations``: MNE 1.13 crops annotations to the data when it opens a file, silently (a
    warning our reader suppresses): one that starts after the end is omitted, one that runs past it is shortened.
    A seizure annotated past a recording's end must be named in the report, so its true extent is read here.
    Onsets count from the first data record (the first TAL's time stamp is subtracted, as MNE does).

    Args:
        header: The file's checked header (:func:`read_edf_header`).

    Returns:
        The annotations in file order; the per-record time stamps (empty texts) are left out.
    """
    if not header.annotation_signals or header.n_records <= 0:
        return []
    starts = np.cumsum([0, *(2 * n for n in header.samples_per_record)])
    data = np.memmap(header.path, dtype=np.uint8, mode="r", offset=header.header_bytes,
                     shape=(header.n_records, header.record_bytes))  # fmt: skip
    tals = b"".join(
        np.ascontiguousarray(data[:, starts[i] : starts[i + 1]]).tobytes() for i in header.annotation_signals
    )
    del data
    out: list[EdfAnnotation] = []
    offset: float | None = None
    for onset_b, duration_b, texts in _TAL.findall(tals):
        onset = float(onset_b)
        if offset is None:
            offset = onset  # the first record's time stamp: onsets count from the start of the data
        duration = float(duration_b) if duration_b else 0.0
        for text in texts.split(b"\x14"):
            if text:
                out.append(EdfAnnotation(onset - offset, duration, text.decode("latin-1")))
    return out


# ---------------------------------------------------------------------------------------------- de-identification
def _identifier_parts(token: str) -> set[str]:
    """A header identifier and its ``_``-separated parts, minus what cannot identify anyone: short tokens
    (< 4 characters, < 5 digits), EDF+ placeholders and keywords, and everyday words."""
    out = set()
    for part in (token, *token.split("_")):
        if part.isdigit():
            if len(part) >= 5:
                out.add(part)
        elif len(part) >= 4 and part.upper() not in _HARMLESS_TOKENS:
            out.add(part)
    if m := re.fullmatch(r"(\d{2})-([A-Za-z]{3})-(\d{4})", token):  # EDF+ date: the ISO form a library may print
        month = m.group(2).upper()
        if month in _MONTHS:
            out.add(f"{m.group(3)}-{_MONTHS.index(month) + 1:02d}-{m.group(1)}")
    return out


def header_secrets(path: Path) -> frozenset[str]:
    """Identifying strings of an EDF header, to scrub from text a library wrote about the file.

    Only a real EDF header is read (version field ``0``): any other file never reaches MNE (the header check
    rejects it), and its bytes are not a patient's identity but, say, a text file's words. In EDF+ the patient field
    is ``code sex birthdate name ...`` and the recording field ``Startdate date admin-code technician equipment
    ...``: the code, birth date, name, start date, admin code, technician and any extra subfields are identifiers;
    sex and equipment are not. A plain EDF's two fields are free text, so their tokens all count. Start date and
    time are added in every form a library may print them. Tokens are also split at ``_`` (EDF+ writes spaces in
    names as ``_``); short tokens (< 4 characters, numbers < 5 digits) and everyday words are left alone, so
    ordinary words, rates and counts in a message stay readable.
    """
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(256)
    except OSError:
        return frozenset()
    if len(raw) < 236 or raw[:8].decode("latin-1").strip() != "0":
        return frozenset()
    patient, recording = raw[8:88].decode("latin-1").split(), raw[88:168].decode("latin-1").split()
    if recording and recording[0].upper() == "STARTDATE":  # EDF+ layout (writers use it without "EDF+C" too)
        del recording[4:5]  # Startdate date admin-code technician [equipment] extra...: a device names no one
    tokens: set[str] = set()
    for token in (*patient, *recording):
        tokens |= _identifier_parts(token)
    startdate, starttime = raw[168:176].decode("latin-1").strip(), raw[176:184].decode("latin-1").strip()
    tokens |= {value for value in (startdate, starttime, starttime.replace(".", ":")) if len(value) >= 5}
    if m := re.fullmatch(r"(\d{2})\.(\d{2})\.(\d{2})", startdate):
        year = int(m.group(3))
        tokens.add(f"{1900 + year if year >= 85 else 2000 + year}-{m.group(2)}-{m.group(1)}")
    return frozenset(t for t in tokens if t.casefold() not in _EVERYDAY_WORDS)


def scrub(text: str, secrets: Iterable[str], keep: Iterable[str] = ()) -> str:
    """``text`` with every header identifier replaced by ``[redacted]``.

    Longest first (a name is not half-replaced by its parts), case-insensitively, and only as a whole token (not
    inside a longer word or number). The strings in ``keep`` (the file's own path and name, which the user chose
    and every message needs) are left as they are.

    Args:
        text: A message, typically one that quotes a library's error.
        secrets: :func:`header_secrets` of the file.
        keep: Substrings never to touch, e.g. the file's path.

    Returns:
        The scrubbed text.
    """
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not ordered:
        return text
    secret = re.compile(
        rf"(?<![A-Za-z0-9])(?:{'|'.join(re.escape(s) for s in ordered)})(?![A-Za-z0-9])", flags=re.IGNORECASE
    )
    shields = sorted({k for k in keep if len(k) >= 3}, key=len, reverse=True)  # not ".": it would split dates
    if not shields:
        return secret.sub("[redacted]", text)
    pieces = re.split(f"({'|'.join(re.escape(k) for k in shields)})", text)
    return "".join(piece if k % 2 else secret.sub("[redacted]", piece) for k, piece in enumerate(pieces))


# ------------------------------------------------------------------------------------------- reading with MNE
def open_raw(path: Path) -> mne.io.BaseRaw:
    """``mne.io.read_raw_edf`` without preloading and without MNE's warnings (we report the same facts ourselves,
    and MNE's texts can quote header fields)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mne.io.read_raw_edf(path, preload=False, encoding="latin1", verbose="error")


def channel_key(name: str) -> str:
    """Channel-name key: whitespace stripped, case folded."""
    return name.strip().casefold()


@dataclass(frozen=True)
class FileChannel:
    """One usable signal of a file: how its name is matched across files and how MNE names the signal."""

    key: str
    name: str  # as the file spells it, stripped
    mne_name: str  # the name MNE gave the signal (repeats get "-0", "-1")
    signal: int  # 1-based signal number in the file


@dataclass(frozen=True)
class FileChannels:
    """A file's signals sorted into the usable channels and what was left out (see :func:`file_channels`)."""

    usable: list[FileChannel]  # first occurrence of each name, placeholders left out, file order
    repeats: list[tuple[str, int, int]]  # (name, first signal, repeated signal), 1-based
    placeholders: list[int]  # 1-based signals named "-", "." or nothing
    unmatched: list[str]  # labels MNE did not report (only when matching by name)


def file_channels(header: EdfHeader, mne_names: Sequence[str]) -> FileChannels:
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
        key = channel_key(label)
        if key in first:
            repeats.append((label, first[key], idx + 1))
            continue
        if positional:
            mne_name = mne_names[pos]
        else:
            matches = [n for n in mne_names if channel_key(n) in (key, f"{key}-0")]
            if not matches:
                unmatched.append(label)
                continue
            mne_name = matches[0]
        first[key] = idx + 1
        usable.append(FileChannel(key, label, mne_name, idx + 1))
    return FileChannels(usable, repeats, placeholders, unmatched)


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


def read_chunks(raw: mne.io.BaseRaw, picks: Sequence[str], chunk: int) -> Iterable[np.ndarray]:
    """The ``picks`` of an opened recording, ``chunk`` samples at a time, in time order (volts, (n_picks, n))."""
    for start in range(0, raw.n_times, chunk):
        yield raw.get_data(picks=list(picks), start=start, stop=min(start + chunk, raw.n_times))
