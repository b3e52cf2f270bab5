"""EEG ingestion's per-recording work on a Dask LocalCluster gives the same tables, arrays and quarantine as the loop.

The data: simulated CHB-MIT-layout EDF files plus two bad ones, an empty ``.edf`` (quarantined by inspection) and a
recording at 1151 Hz, which passes inspection but cannot be resampled to 128 Hz by a ratio of small integers
(quarantined by preprocessing). The ingest task runs once with ``runner.kind=local`` (the plain loop) and once with
``kind=dask`` (mapped task runs of a nested ``ingest-recordings`` flow on a 2-process LocalCluster).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import edfio
import numpy as np
import pandas as pd
import pytest
from prefect import flow

from tasks.cache import StageResult
from tasks.config import EegIngestConfig, RunnerConfig
from tasks.ingest.discovery import find_candidates
from tasks.ingest.eeg import ingest_eeg_task
from tasks.ingest.fanout import (
    inspection_from_result,
    inspection_result,
    preprocess_from_result,
    preprocess_result,
)
from tasks.ingest.inspection import inspect_candidate
from tasks.ingest.preprocess import preprocess_for_stage
from tasks.ingest.simulate import SimulationSpec, simulate_dataset
from tasks.ingest.simulate_signals import CHANNELS
from tasks.rundir import RunContext

SPEC = SimulationSpec(
    n_patients=2,
    recordings_per_patient=2,
    recording_s=300.0,
    seizures_per_patient=1,
    seizure_duration_s=(10.0, 20.0),
    preictal_s=60.0,
    min_lead_s=90.0,
    seed=3,
)
CFG = dict(sfreq=128.0, min_duration_s=30.0)
ODD_RATE_HZ = 1151  # 128/1151 is no ratio of integers up to 1000 (within 1e-4), so resampling refuses it
TABLES = ("recordings.csv", "seizures.csv", "channels.json", "quarantine.csv")


@pytest.fixture(scope="module")
def eeg_root(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("eeg") / "data"
    simulate_dataset(root, SPEC)
    bad = {"empty": root / "chb01" / "chb01_99.edf", "odd_rate": root / "chb02" / "chb02_98.edf"}
    bad["empty"].write_bytes(b"")
    rng = np.random.default_rng(0)
    n = 60 * ODD_RATE_HZ
    signals = [
        edfio.EdfSignal(rng.normal(0.0, 20.0, n), ODD_RATE_HZ, label=name, physical_dimension="uV",
                        physical_range=(-3000.0, 3000.0))
        for name in CHANNELS
    ]  # fmt: skip
    edfio.Edf(signals, data_record_duration=1.0).write(bad["odd_rate"])
    return root, bad


def _plain(value: object) -> bool:
    """Only what pickles and prints the same everywhere: str, numbers, bool, None, and lists/tuples/dicts of it."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def test_per_file_results_travel_as_plain_data_and_come_back_equal(eeg_root, tmp_path) -> None:
    root, bad = eeg_root
    cfg = EegIngestConfig(path=str(root), **CFG)
    listing = find_candidates(root)
    assert len(listing.candidates) == 6
    outcomes = {c.path: inspect_candidate(c, cfg.min_duration_s) for c in listing.candidates}
    assert "only 0 bytes" in outcomes[bad["empty"]]
    for outcome in outcomes.values():
        result = inspection_result(outcome)
        assert _plain(result)
        assert inspection_from_result(result) == outcome
    channels = list(CHANNELS)
    for path, rid in ((root / "chb01" / "chb01_01.edf", "chb01_01"), (bad["odd_rate"], "chb02_98")):
        meta = preprocess_for_stage(path, rid, channels, tmp_path, cfg)
        assert _plain(preprocess_result(meta)) and preprocess_from_result(preprocess_result(meta)) == meta
    assert "needs a ratio of small integers" in meta
    assert not list((tmp_path / "signals").glob("chb02_98*"))  # no array, not even a partial one
    with pytest.raises(ValueError, match="same vigil version"):
        inspection_from_result({"rel": "x.edf", "info": {}})


# ------------------------------------------------------------------------------------- local and Dask, end to end
async def _read_fanout_runs(out_under: Path) -> list[tuple[object, list]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-recordings"])))
        mine = [r for r in runs if str(r.parameters.get("out_dir", "")).startswith(str(out_under))]
        out = []
        for run in mine:
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])), limit=200
            )
            out.append((run, task_runs))
        return out


def _fanout_runs(out_under: Path, expected_task_runs: int, timeout_s: float = 15.0) -> list[tuple[object, list]]:
    """The ``ingest-recordings`` flow runs that wrote under ``out_under``, with their task runs (the API records
    task runs from events, so poll briefly until ``expected_task_runs`` have arrived)."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = asyncio.run(_read_fanout_runs(out_under))
        n = sum(len(t) for _, t in runs)
        if n >= expected_task_runs or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def _task_names(task_runs: list, prefix: str) -> list[str]:
    return sorted(t.name for t in task_runs if t.name.startswith(prefix))


@flow(name="ingest-stage")
def _ingest_stage(cfg: EegIngestConfig, ctx: RunContext, runner: RunnerConfig) -> StageResult:
    """The ingest task inside a flow run, as the seizure flow calls it."""
    return ingest_eeg_task(cfg=cfg, ctx=ctx, runner=runner)


@pytest.mark.slow
def test_ingest_stage_is_identical_on_local_and_dask(prefect_harness, eeg_root, tmp_path) -> None:
    root, bad = eeg_root
    cfg = EegIngestConfig(path=str(root), **CFG)
    results, seconds = {}, {}
    for kind in ("local", "dask"):
        data = tmp_path / f"vd-{kind}"  # separate caches: both runs do the work
        ctx = RunContext(flow="test", data_root=str(data), run_dir=str(data / "run"), seed=0)
        start = time.perf_counter()
        results[kind] = _ingest_stage(cfg, ctx, RunnerConfig(kind=kind))
        seconds[kind] = time.perf_counter() - start
        assert results[kind].error is None, results[kind].error
    local, dask = results["local"], results["dask"]
    print(f"ingest stage: local {seconds['local']:.1f} s, dask {seconds['dask']:.1f} s (incl. cluster start)")

    # one cache entry for both: the runner is not part of the key
    assert local.key == dask.key
    for name in TABLES:
        assert (local.dir / name).read_bytes() == (dask.dir / name).read_bytes(), name
    arrays = sorted(p.name for p in (local.dir / "signals").iterdir())
    assert arrays == sorted(p.name for p in (dask.dir / "signals").iterdir())
    assert arrays == ["chb01_01.npy", "chb01_02.npy", "chb02_01.npy", "chb02_02.npy"]
    for name in arrays:
        assert (local.dir / "signals" / name).read_bytes() == (dask.dir / "signals" / name).read_bytes(), name
    assert {k: v for k, v in local.summary.items() if k != "seconds"} == {
        k: v for k, v in dask.summary.items() if k != "seconds"
    }

    # the bad files are quarantined with their reasons, by inspection and by preprocessing
    quarantine = pd.read_csv(dask.dir / "quarantine.csv")
    reasons = dict(zip(quarantine["path"], quarantine["reason"], strict=True))
    assert set(reasons) == {str(p) for p in bad.values()}
    assert reasons[str(bad["empty"])].startswith("chb01/chb01_99.edf: only 0 bytes")
    assert f"resampling {ODD_RATE_HZ} Hz to 128 Hz needs a ratio of small integers" in reasons[str(bad["odd_rate"])]
    assert (quarantine["stage"] == "ingest").all()

    # the Dask run did its per-file work as mapped task runs of one nested flow run; the local run in a loop
    assert _fanout_runs(tmp_path / "vd-local", 0) == []
    ((run, task_runs),) = _fanout_runs(tmp_path / "vd-dask", 6 + 5)
    assert run.state.is_completed()
    assert _task_names(task_runs, "inspect-recording-") == [
        f"inspect-recording-{rid}" for rid in ("chb01_01", "chb01_02", "chb01_99", "chb02_01", "chb02_02", "chb02_98")
    ]
    assert _task_names(task_runs, "preprocess-recording-") == [
        f"preprocess-recording-{rid}" for rid in ("chb01_01", "chb01_02", "chb02_01", "chb02_02", "chb02_98")
    ]
    assert all(t.state.is_completed() for t in task_runs)
