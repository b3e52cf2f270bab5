"""Discover the scalp-EEG recordings of a data folder: list the EDF files, inspect each, fix the common channel set.

Three steps, each usable on its own so the per-file middle one can run elsewhere (:mod:`tasks.ingest.fanout` maps
it over Dask workers): :func:`find_candidates` (the listing; reads no EDF),
:func:`~tasks.ingest.inspection.inspect_candidate` per file (validation and seizures: :mod:`tasks.ingest.inspection`),
then :func:`settle_discovery` (the common channel set, which needs every file).
:func:`discover_recordings` runs all three in a loop. Inputs are read-only; a bad file never stops discovery: it
becomes a quarantine row ``{path, stage, reason}`` whose reason names the file and the problem, and everything
that is odd but usable becomes a note. The inputs vigil accepts are described in docs/architecture.md.

Hidden files and folders (``.ipynb_checkpoints/``, ``.DS_Store``, ``._x.edf``) are skipped and counted in a note;
a folder that cannot be read, a link to a folder (not followed) and a broken link are quarantine rows.

Layouts: CHB-MIT (a folder holding ``*-summary.txt``, ``ROOT/chbNN/chbNN-summary.txt``: seizures and clock
times come from the summary, :mod:`tasks.ingest.chbmit`; a file the summary names but the folder lacks is
quarantined, the row naming the summary and the missing file); BIDS ``sub-XX/`` folders; a sub-folder per
patient; or EDF files directly under ROOT.

Patients: the folder holding a CHB-MIT summary (``chbNN``); else a BIDS ``sub-XX`` folder anywhere in the path (or
the ``sub-XX_`` entity of the file name); else a ``chbNN`` folder anywhere in the path; else the first sub-folder
below ROOT; files directly under ROOT form one patient named after ROOT. ``recording_id`` is the file stem when it
already starts with the patient label (``chb05_01``, ``sub-01_ses-01_..._eeg``), else ``<patient>__<stem>``;
characters outside ``[A-Za-z0-9._-]`` become ``_`` and clashes (also ones that differ only in case, which collide
on case-insensitive file systems) get the sub-folders spelled out, then a ``-2``, ``-3`` suffix.

Channel policy (names compared as :func:`tasks.edf.channel_key` does): a **flat channel** (standard deviation at
most ``flat_std_v`` over the whole recording) is treated as absent, so it falls under the common-set rule: if it
is a common channel the recording is quarantined (a model would read a dead electrode as "no activity" exactly
where it looks); if not, it is only noted. The **common set** holds every channel that more than half of the
accepted recordings have (usable); a recording lacking one of them is quarantined ("lacks channels X, Y that N of
M recordings have") rather than shrinking the set for everyone. At an exact tie (half of them have it) the channel
is left out instead: quarantining half the data to keep one channel is the worse trade. Channels left out are
noted. ``channels=[...]`` forces the set.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.edf import FLAT_STD_V, channel_key
from tasks.ingest.chbmit import SummaryFile, parse_chbmit_summary
from tasks.ingest.inspection import Candidate, Inspected, RecordingInfo, inspect_candidate

#: The stage named in quarantine rows.
STAGE = "ingest"

_BIDS_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
_BIDS_FILE_SUBJECT = re.compile(r"^(sub-[A-Za-z0-9]+)_")
_CHB_FOLDER = re.compile(r"^chb\d+[a-z]?$", re.IGNORECASE)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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

    @property
    def seizures_past_data(self) -> list[dict[str, str]]:
        """Rows ``{"path", "stage", "reason"}`` of the accepted recordings' seizures annotated past the end of their
        data (clipped to it, or left out): the recording is used, but a reader of ``quarantine.csv`` and the report
        must see that its labels differ from the annotation."""
        return [quarantine_row(rec.path, reason) for rec in self.recordings for reason in rec.seizures_past_data]


def _natural(text: str) -> list[int | str]:
    """Sort key that puts ``rec2`` before ``rec10``."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", text)]


def _safe(text: str) -> str:
    """File-system-safe label: ``[A-Za-z0-9._-]`` only, no leading dot (hidden files)."""
    return _UNSAFE.sub("_", text).strip("._") or "x"


@dataclass
class _Walk:
    """What :func:`_find_edfs` saw: the EDF files, and everything it could not or would not read."""

    edfs: list[Path]
    quarantine: list[dict[str, str]]
    hidden: list[str]  # relative names, folders with a trailing "/"


def _find_edfs(root: Path) -> _Walk:
    """Every ``.edf`` (any case) below ``root``, with what was skipped on the way and why.

    Hidden files and folders (``.ipynb_checkpoints/``, ``.DS_Store``, macOS ``._x.edf`` forks) are editor, notebook
    and OS copies, not data: skipped and counted. A folder that cannot be listed, a link to a folder (links to
    folders are not followed: they can loop, or pull in another data set) and a broken link become quarantine rows,
    so nothing is left out unsaid.

    Raises:
        PermissionError: If ``root`` itself cannot be listed.
    """
    found: list[Path] = []
    rows: list[dict[str, str]] = []
    hidden: list[str] = []

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename or root)
        if where == root:
            raise PermissionError(f"{root}: cannot be read ({exc.strerror}); give read access or pass another folder")
        reason = (
            f"{where.relative_to(root)}/: folder cannot be read ({exc.strerror}), so its files are not ingested; "
            "give read access (chmod -R u+rX) or move it out"
        )
        rows.append(quarantine_row(where, reason))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            path, rel = here / name, (here / name).relative_to(root)
            if name.startswith("."):
                hidden.append(f"{rel}/")
            elif path.is_symlink():
                rows.append(quarantine_row(path, f"{rel}/: a link to a folder ({os.readlink(path)}); links to folders "
                                           "are not followed: pass that folder itself, or copy it in"))  # fmt: skip
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path, rel = here / name, (here / name).relative_to(root)
            if name.startswith("."):
                hidden.append(str(rel))
            elif path.is_symlink() and not path.exists():
                rows.append(quarantine_row(path, f"{rel}: a broken link (its target {os.readlink(path)} does not "
                                           "exist); fix the link or remove it"))  # fmt: skip
            elif name.lower().endswith(".edf"):
                found.append(path)
    return _Walk(sorted(found, key=lambda p: _natural(str(p.relative_to(root)))), rows, hidden)


def _hidden_note(hidden: list[str]) -> list[str]:
    """One note counting the hidden entries skipped, with a few examples."""
    if not hidden:
        return []
    example = ", ".join(hidden[:3]) + (", ..." if len(hidden) > 3 else "")
    return [f"{len(hidden)} hidden file(s)/folder(s) skipped ({example}): names starting with '.' are editor, "
            "notebook or OS files, not data"]  # fmt: skip


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


def quarantine_row(path: Path, reason: str) -> dict[str, str]:
    """One row of the stage's ``quarantine.csv``: the file left out and why."""
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
            quarantine.append(quarantine_row(spath, f"{srel}: cannot be read: {exc}"))
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
                    quarantine_row(
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
    :func:`find_candidates`, :func:`~tasks.ingest.inspection.inspect_candidate` per file, :func:`settle_discovery`.

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
        PermissionError: If ``root`` itself cannot be listed (a sub-folder that cannot is a quarantine row).
        ValueError: If ``channels`` names a channel twice.
    """
    listing = find_candidates(root, channels=channels)
    results = [inspect_candidate(c, min_duration_s, flat_std_v, scan_chunk_s) for c in listing.candidates]
    return settle_discovery(listing, results, channels)


def find_candidates(root: Path, *, channels: list[str] | None = None) -> Listing:
    """List the EDF files below ``root`` with their patient, id and CHB-MIT summary record; reads no EDF.

    Hidden files and folders are skipped and counted in a note; unreadable folders, links to folders and broken
    links are quarantined with their reason (:func:`_find_edfs`).

    Args:
        root: The data folder.
        channels: The forced channel set, if any (only checked here: it must name distinct channels).

    Returns:
        The candidates and the quarantine rows and notes the summaries gave.

    Raises:
        FileNotFoundError: If ``root`` is not a folder or holds no ``.edf`` file.
        PermissionError: If ``root`` itself cannot be listed.
        ValueError: If ``channels`` names a channel twice.
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder; pass the folder that holds the EDF recordings")
    walk = _find_edfs(root)
    edfs = walk.edfs
    if not edfs:
        skipped = [f"{len(walk.hidden)} hidden"] if walk.hidden else []
        skipped += [f"{len(walk.quarantine)} unreadable or linked"] if walk.quarantine else []
        also = f" ({' and '.join(skipped)} entries skipped)" if skipped else ""
        raise FileNotFoundError(
            f"{root}: no .edf files below it{also}; expected CHB-MIT chbNN/ folders, BIDS sub-XX/ folders or EDF files"
        )
    if channels is not None:
        keys = [channel_key(n) for n in channels]
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"channels={channels!r}: need distinct names (compared ignoring case and spaces)")
    quarantine: list[dict[str, str]] = list(walk.quarantine)
    notes: list[str] = _hidden_note(walk.hidden)
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
                        quarantine_row(p, f"{c.rel}: its folder's summary cannot be read, so its seizures are unknown")
                    )
                    continue
            candidates.append(c)
    _assign_ids(root, candidates)
    return Listing(root, candidates, quarantine, notes)


def settle_discovery(
    listing: Listing, results: Sequence[Inspected | str], channels: list[str] | None = None
) -> Discovery:
    """Combine the per-file results (in the order of ``listing.candidates``) into the :class:`Discovery`.

    Files whose result is a string are quarantined with it; the rest go through the common-channel rule of the
    module docstring, which needs every file's channels at once and so cannot run per file.

    Args:
        listing: What :func:`find_candidates` returned.
        results: :func:`~tasks.ingest.inspection.inspect_candidate` of each candidate, same order.
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
            quarantine.append(quarantine_row(c.path, result))
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
        wanted = [channel_key(n) for n in forced]
        names = {k: n.strip() for k, n in zip(wanted, forced, strict=True)}
        why = "that the configured channel list requires (ingest.channels)"
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
        rows.append(quarantine_row(item.info.path, f"{item.rel}: {'; '.join(parts)}"))
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
