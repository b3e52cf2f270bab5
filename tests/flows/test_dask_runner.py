"""``runner`` picks the task runner at run time, and a Dask LocalCluster gives the same results as local threads.

Real PNGs (with a truncated file, an empty file, a text file and a byte-identical copy) are checked by mapped
task runs of the nested ``check-images`` flow, once on Prefect's thread pool and once on a 2-process Dask
``LocalCluster``; then the whole defect flow runs with ``runner.kind`` set only in its config.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
from conftest import add_bad_files, write_part_folder

from flows.config import resolve_config
from flows.defect_detection import defect_detection
from tasks.config import RunnerConfig
from tasks.quality.checks import apply_checks
from tasks.quality.fanout import check_images, check_images_flow, checks_from_results
from tasks.runner import task_runner

pytestmark = pytest.mark.slow

DASK_STARTED = "Creating a new Dask cluster"  # logged when the first task reaches a DaskTaskRunner (lazy start)


async def _task_runs(client, flow_run_id: UUID) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    return await client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="check-image-")),
        limit=200,  # the API's maximum; these tests map fewer
    )


def _wait_for_task_runs(flow_run_id: UUID, expected: int, timeout_s: float = 15.0) -> int:
    """Count a flow run's ``check-image`` task runs; the API records them from events, so poll briefly."""
    from prefect.client.orchestration import get_client

    async def count() -> int:
        async with get_client() as client:
            return len(await _task_runs(client, flow_run_id))

    deadline = time.monotonic() + timeout_s
    while (n := asyncio.run(count())) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return n


def _fanout_runs_under(root: Path) -> list:
    """The ``check-images`` flow runs that checked files under ``root``, with their mapped task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read() -> list:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["check-images"])))
            mine = [r for r in runs if str(r.parameters.get("paths", [""])[0]).startswith(str(root))]
            return [(r, await _task_runs(client, r.id)) for r in mine]

    return asyncio.run(read())


def _bad_folder(root: Path, n_per_class: int) -> tuple[Path, dict[str, Path]]:
    write_part_folder(root, n_per_class=n_per_class)
    bad = add_bad_files(root / "crack")
    bad["copy"] = root / "good" / "zz_copy.png"  # sorts after good_000.png, so it is the copy that goes
    bad["copy"].write_bytes((root / "good" / "good_000.png").read_bytes())
    return root, bad


def test_per_file_checks_identical_on_local_and_dask(prefect_harness, tmp_path, caplog) -> None:
    root, bad = _bad_folder(tmp_path / "parts", n_per_class=8)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    records = pd.DataFrame({"path": paths, "label": [Path(p).parent.name for p in paths]})
    children_before = set(multiprocessing.active_children())
    caplog.set_level("INFO")
    outcome = {"loop": apply_checks(records, check_images(paths))}  # runner=None: plain loop, no Prefect
    for kind in ("local", "dask"):
        fanout = check_images_flow.with_options(task_runner=task_runner(RunnerConfig(kind=kind)))
        state = fanout(paths, files_per_task=1, return_state=True)
        assert state.is_completed(), state.message
        outcome[kind] = apply_checks(records, checks_from_results(state.result()))
        # one task run per file, on either runner
        assert _wait_for_task_runs(state.state_details.flow_run_id, len(paths)) == len(paths), kind
        assert (DASK_STARTED in caplog.text) == (kind == "dask")
    # the temporary LocalCluster's worker processes ended with the nested flow run
    assert not set(multiprocessing.active_children()) - children_before

    usable, quarantine = outcome["loop"]
    for kind in ("local", "dask"):
        pd.testing.assert_frame_equal(outcome[kind][0], usable)
        assert outcome[kind][1] == quarantine, kind
    reasons = {q["path"]: q["reason"] for q in quarantine}
    assert set(reasons) == {str(p) for p in bad.values()}
    assert "truncated PNG" in reasons[str(bad["truncated"])]
    assert "empty file" in reasons[str(bad["empty"])]
    assert "not an image" in reasons[str(bad["text"])]
    assert reasons[str(bad["copy"])].startswith(f"exact duplicate of {root / 'good' / 'good_000.png'}")
    assert len(usable) == len(paths) - 4


def test_defect_flow_runner_comes_from_its_config(prefect_harness, tmp_path, monkeypatch, caplog) -> None:
    root, bad = _bad_folder(tmp_path / "parts", n_per_class=12)
    caplog.set_level("INFO")
    run_dirs = {}
    for kind in ("local", "dask"):
        monkeypatch.setenv("VIGIL_DATA", str(tmp_path / f"vd-{kind}"))  # separate caches: both runs do the work
        sets = [f"ingest.path={root}", "train.epochs=1", "evaluate.baseline=false", f"runner.kind={kind}"]
        state = defect_detection(config=resolve_config("defect", profile="test", sets=sets), return_state=True)
        assert state.is_completed(), state.message
        run_dirs[kind] = Path(state.result())
        assert (DASK_STARTED in caplog.text) == (kind == "dask")

    local, dask = run_dirs["local"], run_dirs["dask"]
    assert (local / "splits.csv").read_bytes() == (dask / "splits.csv").read_bytes()
    assert (local / "quarantine.csv").read_bytes() == (dask / "quarantine.csv").read_bytes()
    assert set(pd.read_csv(dask / "quarantine.csv")["path"]) == {str(p) for p in bad.values()}
    # the Dask run's quality stage fanned out through a nested check-images flow run with mapped task runs (the
    # local run checks in a plain loop: on one machine that is faster than per-chunk task runs)
    fanouts = _fanout_runs_under(root)
    assert len(fanouts) == 1
    run, task_runs = fanouts[0]
    assert run.state.is_completed() and len(task_runs) == 1  # 28 files fit one chunk of FILES_PER_TASK
