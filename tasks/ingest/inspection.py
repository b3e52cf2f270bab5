"""Inspect one EDF file of a data folder: validate it, attach its seizures, and list its usable channels.

This is the per-file step of discovery (:mod:`tasks.ingest.discovery` lists the candidates before and settles the
common channel set after): it depends on no other file, so :mod:`tasks.ingest.fanout` can run it anywhere that
reads the file. A bad file never raises: :func:`inspect_candidate` returns its quarantine reason, naming it by
its path below ROOT, and everything odd but usable becomes a note on the recording.

Validation, cheapest first: the header is checked by :func:`tasks.edf.read_edf_header` before MNE sees the file;
then MNE opens it (``preload=False``), the signals are scanned in chunks for non-finite values and flat channels
(:func:`tasks.edf.scan_signals`), and the duration is checked against ``min_duration_s``.

Seizures, in order of precedence (:mod:`tasks.ingest.annotations` reads the sources): the folder's CHB-MIT
summary (a file the summary lists; an EDF it does not list falls back to the sources below and is noted); else
an events sidecar; else the file's EDF+ annotations; else the recording is seizure-free. A seizure that runs past
the end of the data is clipped to it, one that starts after the end is left out
(:func:`tasks.ingest.chbmit.attach_seizures`); each is named in the recording's notes and in
:attr:`RecordingInfo.seizures_past_data`, which the stage writes to ``quarantine.csv`` so the report lists it.

De-identification: every message returned (the reason, the recording's notes) is scrubbed of the file's header
tokens (:func:`tasks.edf.scrub`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mne

from tasks.edf import (
    FLAT_STD_V,
    EdfHeader,
    EdfHeaderError,
    FileChannel,
    FileChannels,
    SignalScan,
    channel_key,
    file_channels,
    header_secrets,
    open_raw,
    read_chunks,
    read_edf_annotations,
    read_edf_header,
    scan_signals,
    scrub,
)
from tasks.ingest.annotations import (
    EventsFileError,
    annotation_seizures,
    events_sidecar,
    merge_intervals,
    read_events_tsv,
)
from tasks.ingest.chbmit import SummaryFile, attach_seizures


# ------------------------------------------------------------------------------------------------ return types
@dataclass
class RecordingInfo:
    """One accepted recording (one EDF file).

    Attributes:
        recording_id: Unique, file-system-safe id (``chb05_01``, ``<patient>__<stem>``); names its signal file.
        patient: Derived patient label (``chb05``, ``sub-01``, a folder name); never taken from the EDF header.
        path: The EDF file.
        seizures: (onset_s, offset_s) in seconds from the file's start, sorted, inside the data.
        source: Where the seizures came from: one of :data:`tasks.ingest.annotations.SOURCES`.
        duration_s: Length of the data actually in the file, in seconds.
        sfreq: Sampling rate as MNE reads it, in Hz.
        channels: The file's usable channel names (stripped, first occurrence of repeats, no placeholders), in file
            order.
        start_offset_s: Seconds from the patient's first file's start to this file's start (CHB-MIT clock times);
            ``None`` when unknown.
        notes: What a reader should know about this file (clipped seizures, repeated or flat channels, ...).
        seizures_past_data: One reason per seizure annotated past the end of the data (clipped to it, or left out
            when it starts after the end), naming the file by its path below ROOT.
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
    seizures_past_data: list[str] = field(default_factory=list)


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


def inspect_candidate(
    c: Candidate, min_duration_s: float = 4.0, flat_std_v: float = FLAT_STD_V, scan_chunk_s: float = 60.0
) -> Inspected | str:
    """Validate one file and attach its seizures: the per-file part of
    :func:`tasks.ingest.discovery.discover_recordings`.

    It depends on no other file, so it can run in any process that reads ``c.path``. It never raises for a bad
    file: a string is the file's quarantine reason, naming it by its path below ROOT. Every message (the reason,
    the recording's notes) is scrubbed of the file's header tokens.

    Args:
        c: A candidate from :func:`tasks.ingest.discovery.find_candidates`.
        min_duration_s: Minimum seconds of data; shorter files are quarantined.
        flat_std_v: Flat threshold on a channel's standard deviation (volts).
        scan_chunk_s: Seconds read at a time while scanning the signals.

    Returns:
        The inspected recording, or the quarantine reason.
    """
    secrets = header_secrets(c.path)
    # The file's own path and names are the user's choice and every message needs them: never scrubbed.
    keep = [str(c.path), c.rel, c.path.name, c.path.stem, str(Path(c.rel).parent)]
    try:
        result = _inspect(c, min_duration_s, flat_std_v, scan_chunk_s)
    except Exception as exc:  # the sanctioned per-file catch: record the file, keep the (scrubbed) message
        result = f"{c.rel}: unexpected error while reading it: {type(exc).__name__}: {exc}"
    if isinstance(result, str):
        return scrub(result, secrets, keep)
    result.info.notes = [scrub(n, secrets, keep) for n in result.info.notes]
    result.info.seizures_past_data = [scrub(n, secrets, keep) for n in result.info.seizures_past_data]
    return result


def _open(c: Candidate) -> tuple[EdfHeader, mne.io.BaseRaw] | str:
    """The file's checked header and its lazily opened recording, or the quarantine reason (naming the file)."""
    try:
        header = read_edf_header(c.path)
    except EdfHeaderError as exc:
        return str(exc).replace(str(c.path), c.rel, 1)
    except OSError as exc:
        return f"{c.rel}: cannot be opened: {exc.strerror or exc}"
    try:
        raw = open_raw(c.path)
    except Exception as exc:  # MNE raises many types for corrupt input; rephrase with the file name
        return f"{c.rel}: MNE cannot read it ({type(exc).__name__}: {exc})"
    return header, raw


def _channel_notes(rel: str, header: EdfHeader, chans: FileChannels) -> list[str]:
    """Notes on the header's oddities and on the signals left out (repeats, placeholders, unmatched names)."""
    notes = [f"{rel}: {n.split(': ', 1)[1]}" for n in header.notes]
    notes += [f"{rel}: channel {rep} {name!r} repeats channel {first}; keeping channel {first}"
              for name, first, rep in chans.repeats]  # fmt: skip
    if chans.placeholders:
        notes.append(f"{rel}: placeholder signal(s) {chans.placeholders} (named '-' or blank) ignored")
    if chans.unmatched:
        notes.append(f"{rel}: channel(s) {chans.unmatched} not found among MNE's channels; ignored")
    return notes


def _seizure_record(c: Candidate, header: EdfHeader, notes: list[str]) -> tuple[SummaryFile, str] | str:
    """The file's seizures as a summary record and their source (summary > sidecar > EDF+ annotations), or the
    quarantine reason of an untrustworthy sidecar; disagreements and fallbacks are appended to ``notes``."""
    ann, ann_notes = annotation_seizures(read_edf_annotations(header), c.rel)
    if c.summary is not None:
        record, source = c.summary, "chbmit-summary"
        if ann and ann != merge_intervals(record.seizures)[0]:
            notes.append(f"{c.rel}: its EDF+ annotations give seizures {ann} but {c.summary_name} gives "
                         f"{list(record.seizures)}; the summary is used")  # fmt: skip
        return record, source
    sidecar = events_sidecar(c.path)
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
    return record, source


def _flat_reasons(scan: SignalScan) -> dict[str, str]:
    """Channel key -> how flat, for every flat channel of the scan."""
    return {
        channel_key(n): "constant over the recording"
        if n in scan.constant
        else f"std {scan.std_v[n] * 1e6:.3g} uV over the recording"
        for n in scan.flat
    }


def _inspect(c: Candidate, min_duration_s: float, flat_std_v: float, scan_chunk_s: float) -> Inspected | str:
    """Validate one file and attach its seizures; a string is the quarantine reason (naming the file)."""
    opened = _open(c)
    if isinstance(opened, str):
        return opened
    header, raw = opened
    chans = file_channels(header, raw.ch_names)
    notes = _channel_notes(c.rel, header, chans)
    sfreq = float(raw.info["sfreq"])
    duration = raw.n_times / sfreq
    if duration < min_duration_s:
        return (
            f"{c.rel}: {duration:g} s of data, shorter than the minimum of {min_duration_s:g} s; "
            "lower ingest.min_duration_s to use it"
        )
    if not chans.usable:
        return f"{c.rel}: no usable channels (every signal is a placeholder)"

    found = _seizure_record(c, header, notes)
    if isinstance(found, str):
        return found
    record, source = found
    kept_seizures, past = attach_seizures(record, duration)
    # attach_seizures names the file by its base name; name it by its path below ROOT like every other message.
    past_reasons = [f"{c.rel}: {p.reason.split(': ', 1)[1]}" for p in past]
    notes += past_reasons

    # Signals: one chunked pass over the usable channels.
    chunk = max(1, int(round(scan_chunk_s * sfreq)))
    names = [ch.name for ch in chans.usable]  # distinct: one per key
    scan = scan_signals(Path(c.rel), read_chunks(raw, [ch.mne_name for ch in chans.usable], chunk), names,
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
        seizures_past_data=past_reasons,
    )
    return Inspected(info, c.rel, chans.usable, _flat_reasons(scan), chans.repeats)
