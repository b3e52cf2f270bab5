"""Run EEG ingestion's per-recording work as mapped Prefect tasks on the task runner that ``config.runner`` names.

Two steps of the ingest stage read whole recordings, and each depends on no other file:

* **inspection** (:func:`tasks.ingest.inspection.inspect_candidate`: header arithmetic, MNE open, seizure sources,
  one chunked scan of every signal for non-finite values and flat channels);
* **preprocessing** (:func:`tasks.ingest.preprocess.preprocess_for_stage`: causal band-pass and notch, polyphase
  resampling, written to ``signals/<recording_id>.npy``).

Here each becomes a task (:func:`inspect_recording_task`, :func:`preprocess_recording_task`) whose result is a small
dict of plain data (:func:`inspection_result`, :func:`preprocess_result`), turned back into vigil's records, in
input order, by :func:`inspection_from_result` and :func:`preprocess_from_result`. What needs every file at once
stays in the flow's process between the two steps: the common channel set
(:func:`tasks.ingest.discovery.settle_discovery`) and, after them, the quarantine of failed recordings
(:func:`tasks.ingest.preprocess.drop_failed`). A bad file is never an exception: its task returns a ``reason`` and
the file is quarantined with it, exactly as in the plain loop; only a crashed task run (a killed worker) fails the
stage, which then retries as a whole.

**Where outputs go.** The preprocessing tasks write their arrays directly into the stage's temporary build
folder (``$VIGIL_DATA/cache/ingest/.tmp-<key>-<random>/signals/``), which becomes the cache entry when the stage
completes and is removed if it fails; only the small result dict travels back. Each array is written under
``<id>.npy.partial`` and renamed when complete, and ids are unique, so workers never write the same file. A
temporary ``LocalCluster`` runs on the flow's machine and sees the same paths. With ``runner.dask_address`` the
workers must import the same vigil version **and share the filesystem**: read the EDF inputs and write the data
root's cache folder under the same absolute paths (a shared mount), as :func:`tasks.runner.task_runner` says for
inputs.

**Granularity.** One task run per recording: a task run costs ~10-20 ms of orchestration, and one recording's work
is much more (simulated 40-min, 18-channel recordings at 256 Hz on 2 cores: inspection ~0.15 s, preprocessing
~0.33 s; a 1-h CHB-MIT file with 23 channels more), so there is nothing to gain from chunking as
:mod:`tasks.quality.fanout` must for 1-ms image checks.

**Why a nested flow** (the same reason as :mod:`tasks.quality.fanout`): a task runner is a flow option and vigil's
flows receive ``runner`` inside their config parameter, so :func:`ingest_recordings` runs the small flow
:func:`ingest_recordings_flow` with ``with_options(task_runner=task_runner(runner))`` at call time, and both
mapped steps share its one Dask cluster. ``runner.kind=local`` keeps the plain loop in the ingest task's process.

**Windowing is not fanned out.** :func:`tasks.label.windows.make_windows` never reads a signal: it is a vectorised
operation on ``recordings.csv`` and ``seizures.csv`` (measured: 686 one-hour recordings, CHB-MIT's size, at 1-s
steps give 2.47 million windows in 1.2 s on one core, most of it formatting the ``window_id`` strings; the full
profile's 30 recordings take 0.03 s). A task run per recording would add more orchestration than the whole table
costs, and ship a DataFrame back per recording, and the splits and folds that follow need every window at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from tasks.config import EegIngestConfig, RunnerConfig
from tasks.edf import FileChannel
from tasks.ingest.discovery import Discovery, Listing, settle_discovery
from tasks.ingest.inspection import Candidate, Inspected, RecordingInfo, inspect_candidate
from tasks.ingest.preprocess import RecordingMeta, drop_failed, preprocess_for_stage
from tasks.runner import task_runner

_INFO_FIELDS = frozenset(f.name for f in dataclasses.fields(RecordingInfo))
_INSPECTED_FIELDS = frozenset(f.name for f in dataclasses.fields(Inspected))
_META_FIELDS = frozenset(f.name for f in dataclasses.fields(RecordingMeta))


def _mismatch(what: str, fields: set[str], expected: frozenset[str]) -> ValueError:
    return ValueError(
        f"{what}: result has fields {sorted(fields)}, expected {sorted(expected)}; "
        "do the Dask workers run the same vigil version as the flow?"
    )


# ------------------------------------------------------------------------------------------------ inspection
def inspection_result(result: Inspected | str) -> dict[str, Any]:
    """An inspection outcome as a dict of plain data: ``{"reason": str}`` for a quarantined file, else the
    :class:`~tasks.ingest.inspection.Inspected` fields with paths as strings."""
    if isinstance(result, str):
        return {"reason": result}
    out = dataclasses.asdict(result)
    out["info"]["path"] = str(result.info.path)
    return out


def inspection_from_result(result: Mapping[str, Any]) -> Inspected | str:
    """Rebuild an inspection outcome from :func:`inspection_result`'s dict.

    Raises:
        ValueError: If the fields are not the ones this vigil version writes (a worker running other code than
            the flow: upgrade the workers).
    """
    if set(result) == {"reason"}:
        return str(result["reason"])
    if set(result) != _INSPECTED_FIELDS or set(result.get("info", {})) != _INFO_FIELDS:
        raise _mismatch(str(result.get("rel", "?")), set(result), _INSPECTED_FIELDS)
    info = dict(result["info"])
    info["path"] = Path(info["path"])
    info["seizures"] = [tuple(s) for s in info["seizures"]]
    return Inspected(
        info=RecordingInfo(**info),
        rel=result["rel"],
        usable=[FileChannel(**ch) for ch in result["usable"]],
        flat=dict(result["flat"]),
        repeats=[tuple(r) for r in result["repeats"]],
    )


# --------------------------------------------------------------------------------------------- preprocessing
def preprocess_result(result: RecordingMeta | str) -> dict[str, Any]:
    """A preprocessing outcome as plain data: ``{"reason": str}``, or the
    :class:`~tasks.ingest.preprocess.RecordingMeta` fields."""
    if isinstance(result, str):
        return {"reason": result}
    out = dataclasses.asdict(result)
    out["path"], out["out_path"] = str(result.path), str(result.out_path)
    return out


def preprocess_from_result(result: Mapping[str, Any]) -> RecordingMeta | str:
    """Rebuild a preprocessing outcome from :func:`preprocess_result`'s dict.

    Raises:
        ValueError: If the fields are not the ones this vigil version writes.
    """
    if set(result) == {"reason"}:
        return str(result["reason"])
    if set(result) != _META_FIELDS:
        raise _mismatch(str(result.get("path", "?")), set(result), _META_FIELDS)
    meta = dict(result)
    meta["path"], meta["out_path"] = Path(meta["path"]), Path(meta["out_path"])
    return RecordingMeta(**meta)


# ----------------------------------------------------------------------------------------------------- tasks
def _inspect_run_name() -> str:
    """Name each mapped run after its recording, so a crashed one is easy to find in the UI."""
    return f"inspect-recording-{task_run.parameters['candidate'].recording_id}"


def _preprocess_run_name() -> str:
    return f"preprocess-recording-{task_run.parameters['recording_id']}"


@task(name="inspect-recording", cache_policy=NO_CACHE, task_run_name=_inspect_run_name)
def inspect_recording_task(candidate: Candidate, min_duration_s: float) -> dict[str, Any]:
    """One file's validation as a task; never raises for a bad file (the result's ``reason`` says why)."""
    return inspection_result(inspect_candidate(candidate, min_duration_s))


@task(name="preprocess-recording", cache_policy=NO_CACHE, task_run_name=_preprocess_run_name)
def preprocess_recording_task(
    path: str, recording_id: str, channels: list[str], out_dir: str, cfg: EegIngestConfig
) -> dict[str, Any]:
    """One recording's preprocessing into ``out_dir/signals/``; a bad file returns its ``reason``."""
    return preprocess_result(preprocess_for_stage(Path(path), recording_id, channels, Path(out_dir), cfg))


# ------------------------------------------------------------------------------------------------ the stage
InspectEach = Callable[[Sequence[Candidate]], Iterator[Inspected | str]]
PreprocessEach = Callable[[Sequence[RecordingInfo], list[str]], Iterator[RecordingMeta | str]]


def _ingest(
    listing: Listing, cfg: EegIngestConfig, inspect_each: InspectEach, preprocess_each: PreprocessEach
) -> Discovery:
    """Inspect, settle the channel set, preprocess, quarantine failures; per-file work by the given strategies,
    which yield one outcome per input, in input order."""
    logger = get_run_logger()
    n = len(listing.candidates)
    step = max(1, n // 10)
    results: list[Inspected | str] = []
    for result in inspect_each(listing.candidates):
        results.append(result)
        if len(results) % step == 0 or len(results) == n:
            logger.info("ingest: inspected %d/%d files", len(results), n)
    discovery = settle_discovery(listing, results, cfg.channels)
    for note in discovery.notes:
        logger.info("ingest: %s", note)
    outcomes: list[RecordingMeta | str] = []
    recordings = discovery.recordings
    for i, (rec, outcome) in enumerate(
        zip(recordings, preprocess_each(recordings, discovery.channels), strict=True), start=1
    ):
        outcomes.append(outcome)
        if not isinstance(outcome, str):
            logger.info("ingest: %d/%d %s (%.0f s, %s)", i, len(recordings), rec.recording_id,
                        outcome.duration_s, outcome.filter)  # fmt: skip
    return drop_failed(discovery, outcomes)


@flow(name="ingest-recordings", validate_parameters=False)
def ingest_recordings_flow(listing: Listing, out_dir: str, cfg: EegIngestConfig) -> Discovery:
    """Inspect and preprocess every candidate as mapped task runs on this flow run's task runner.

    Each step submits all its task runs at once, then takes the results in input order (a crashed run, not a
    bad file, raises there).
    """

    def inspect_each(candidates: Sequence[Candidate]) -> Iterator[Inspected | str]:
        futures = inspect_recording_task.map(list(candidates), unmapped(cfg.min_duration_s))
        for future in futures:
            yield inspection_from_result(future.result())

    def preprocess_each(recordings: Sequence[RecordingInfo], channels: list[str]) -> Iterator[RecordingMeta | str]:
        futures = preprocess_recording_task.map(
            [str(r.path) for r in recordings],
            [r.recording_id for r in recordings],
            unmapped(list(channels)),
            unmapped(out_dir),
            unmapped(cfg),
        )
        for future in futures:
            yield preprocess_from_result(future.result())

    return _ingest(listing, cfg, inspect_each, preprocess_each)


def ingest_recordings(
    listing: Listing, out_dir: str | Path, cfg: EegIngestConfig, runner: RunnerConfig | None = None
) -> Discovery:
    """Inspect and preprocess every candidate of ``listing`` into ``out_dir/signals/``, on ``runner``.

    Outcomes come back in input order on every runner, so the tables, the arrays and the quarantine list (bad
    files with their reasons) do not depend on where the work ran. Call it from a task or flow (it logs progress
    through Prefect's run logger).

    Args:
        listing: :func:`tasks.ingest.discovery.find_candidates` of the data folder.
        out_dir: The stage's (temporary) output folder; made absolute here, since workers may run elsewhere.
        cfg: The ingest settings.
        runner: ``kind="dask"``: a nested ``ingest-recordings`` flow run on
            :func:`tasks.runner.task_runner(runner) <tasks.runner.task_runner>`, one task run per file in each
            step (with ``dask_address`` the workers must share the filesystem: see the module docstring).
            ``None`` or ``kind="local"``: a plain loop in this process, as before the fan-out existed. On one
            machine the loop is the fastest (12 simulated 40-min recordings on 2 busy cores: loop 8-11 s, mapped
            on 2 threads 11.5 s, on a fresh 2-process LocalCluster 58-59 s, ~30 s of it starting the workers,
            which import torch, MNE and Prefect), so local runs keep it; the fan-out is for more cores or a cluster.

    Returns:
        The discovery with the recordings that were preprocessed; files that failed inspection or preprocessing
        are in its quarantine, with their reasons.
    """
    out = Path(out_dir).absolute()
    if runner is None or runner.kind == "local" or not listing.candidates:

        def inspect_each(candidates: Sequence[Candidate]) -> Iterator[Inspected | str]:
            for c in candidates:
                yield inspect_candidate(c, cfg.min_duration_s)

        def preprocess_each(recordings: Sequence[RecordingInfo], channels: list[str]) -> Iterator[RecordingMeta | str]:
            for rec in recordings:
                yield preprocess_for_stage(rec.path, rec.recording_id, channels, out, cfg)

        return _ingest(listing, cfg, inspect_each, preprocess_each)
    fanout = ingest_recordings_flow.with_options(task_runner=task_runner(runner))
    return fanout(listing, str(out), cfg)
