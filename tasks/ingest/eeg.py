"""The EEG ingest stage: scalp-EEG recordings (CHB-MIT folders or any folder of EDF/EDF+ files) in, tables and
preprocessed arrays out.

The work is done by pure functions in sibling modules (no Prefect, no printing); this module holds the tables the
windowing and labelling code reads and the Prefect task that ties the steps together:

1. **Discovery** (:mod:`tasks.ingest.discovery`): list every ``.edf`` file below the data root (the inputs vigil
   accepts are described in docs/architecture.md), inspect each one (:mod:`tasks.ingest.inspection`: header
   arithmetic and MNE via :mod:`tasks.edf`, seizures from :mod:`tasks.ingest.chbmit` and
   :mod:`tasks.ingest.annotations`, signal checks), and fix the channel set all models will see. A bad file never
   stops the stage: it becomes a quarantine row naming the file and the problem.
2. **Tables** (:func:`write_tables`): ``recordings.csv``, ``seizures.csv`` and ``channels.json``.
3. **Preprocessing** (:mod:`tasks.ingest.preprocess`): each accepted recording becomes a float32
   ``signals/<recording_id>.npy`` of the common channels at one sampling rate, band-passed and notch-filtered in
   chunks, so memory stays flat however long the recording is.

The per-file inspection and preprocessing depend on no other file; :mod:`tasks.ingest.fanout` runs them in a loop
or, with ``runner.kind=dask``, as mapped Prefect task runs. Without a data folder the stage writes a simulated
CHB-MIT-layout data set first (:mod:`tasks.ingest.simulate`).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import FILE_STAGE_TIMEOUT_S, StageCache, StageError, StageResult, run_stage, stage_key
from tasks.config import EegIngestConfig, RunnerConfig
from tasks.ingest.discovery import Discovery, find_candidates
from tasks.ingest.fanout import ingest_recordings
from tasks.ingest.inspection import RecordingInfo
from tasks.ingest.simulate import SimulationSpec, simulate_dataset
from tasks.quarantine import QUARANTINE_COLUMNS, rejection_summary
from tasks.rundir import RunContext

#: Columns of ``recordings.csv`` (contract with the windowing/labelling code).
RECORDINGS_COLUMNS = ("recording_id", "patient", "path", "duration_s", "sfreq_in", "start_offset_s", "n_seizures")
#: Columns of ``seizures.csv`` (contract with the windowing/labelling code).
SEIZURES_COLUMNS = ("recording_id", "patient", "seizure_id", "onset_s", "offset_s")


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
    themselves go to :func:`tasks.ingest.preprocess.signal_path`.

    Args:
        discovery: The result of :func:`tasks.ingest.discovery.discover_recordings`.
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
    sim = cfg.simulate
    spec = SimulationSpec(
        n_patients=sim.n_patients,
        recordings_per_patient=sim.recordings_per_patient,
        recording_s=sim.recording_s,
        seizures_per_patient=sim.seizures_per_patient,
        sfreq=sim.sfreq,
        preictal_s=sim.preictal_s,
        profile=sim.profile,
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
def ingest_eeg_task(*, cfg: EegIngestConfig, ctx: RunContext, runner: RunnerConfig) -> StageResult:
    """Find, validate and preprocess every recording into ``signals/<id>.npy`` (cached on the file listing).

    With ``runner.kind=dask`` each file's inspection and each recording's preprocessing run as mapped task runs
    of a nested ``ingest-recordings`` flow on the Dask workers (:mod:`tasks.ingest.fanout`); the outcome, and so
    the cache key, does not depend on the runner.

    Args:
        cfg: The ingest section (data folder or simulation, channels, filters, sampling rate).
        ctx: The run's context (seed, cache root, refreshes).
        runner: Where the per-file work runs (the one setting beyond the stage's own section: it changes where,
            never what, so it is not part of the cache key).

    Returns:
        The stage record; its ``summary`` carries the data ``root`` (the folder read, or the simulated data set),
        the ``source`` (``"edf"`` or ``"sim"``), the common ``channels`` and the counts.
    """
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
            # the root travels even in a failed record, so the report files the failed run under its data set
            return StageResult(
                stage="ingest", key="", path="", cached=False, seconds=0.0, summary={"root": str(root)}, error=msg
            )
    key = stage_key("ingest", _listing_fingerprint(root), cfg.model_dump(exclude={"simulate"}), str(root))

    def build(out: Path) -> dict:
        try:
            listing = find_candidates(root, channels=cfg.channels)
        except (OSError, ValueError) as exc:  # no EDF files, an unreadable root, a repeated channel name
            raise StageError(str(exc)) from exc
        logger.info("ingest: %d EDF files (runner: %s)", len(listing.candidates), runner.kind)
        discovery = ingest_recordings(listing, out, cfg, runner)
        # Seizures clipped to (or left out past) the end of their data are listed beside the files left out, so
        # quarantine.csv and the report show every place where the labels differ from the annotations.
        past = discovery.seizures_past_data
        pd.DataFrame([*discovery.quarantine, *past], columns=list(QUARANTINE_COLUMNS)).to_csv(
            out / "quarantine.csv", index=False
        )
        if not discovery.recordings:
            # kept as a (failed) entry, so the run's quarantine.csv and report still list every file and its reason
            what = f"no usable EDF recordings under {root}"
            return {"root": str(root), "error": rejection_summary(what, discovery.quarantine)}
        kept = discovery.recordings
        write_tables(discovery, out)
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
            "n_seizures_past_data": len(past),
            "notes": discovery.notes[:50],
        }

    result = run_stage(cache, "ingest", key, build, ctx.refreshes("ingest"))
    if result.error is not None:
        return result.model_copy(update={"summary": {"root": str(root)}})
    if result.summary.get("error"):  # every file was left out: the record keeps its path to quarantine.csv
        return result.model_copy(update={"error": result.summary["error"]})
    s = result.summary
    logger.info(
        "ingest: %d recordings, %d patients, %.1f h, %d seizures (%d annotated past the end of their data: clipped "
        "or left out, see quarantine.csv), %d quarantined%s",
        s["n_recordings"],
        s["n_patients"],
        s["hours"],
        s["n_seizures"],
        s.get("n_seizures_past_data", 0),
        s["n_quarantined"],
        " (cached)" if result.cached else "",
    )
    return result
