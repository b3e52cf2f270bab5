"""Run the per-file image checks as mapped Prefect tasks on the task runner that ``config.runner`` names.

:func:`tasks.quality.checks.check_image` is a pure function of one path; here it becomes a task whose result is
a small dict (plain data pickles cheaply between Dask processes and shows in the Prefect UI), and
:func:`checks_from_results` turns the results back into the :class:`~tasks.quality.checks.ImageCheck` list that
:func:`~tasks.quality.checks.apply_checks` expects. Duplicate detection stays in ``apply_checks``: it needs every
file's hash at once, and the input order decides which copy is kept, so it must not run per worker.

Why a nested flow: a task runner is a flow option, and vigil's flows receive ``runner`` inside their config
parameter, so the runner can only be built once the flow is running. :func:`check_images` therefore runs the
small flow :func:`check_images_flow` with ``with_options(task_runner=task_runner(runner))`` at call time. This
honours ``runner`` wherever the parent flow runs: ``vigil run``, a deployment started from the UI form, or a
test; setting the runner on the top-level flow instead (``defect_detection.with_options(task_runner=...)``)
would only work where the caller builds it, and never for deployments. ``runner.kind=local`` keeps the plain
loop (see :func:`check_images` for the measurements).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from tasks.config import RunnerConfig
from tasks.quality.checks import MAX_PIXELS, ImageCheck, check_image
from tasks.runner import task_runner

#: Files per mapped task run in the flow. A Prefect task run costs ~10-20 ms of orchestration (measured on 2
#: CPU cores), about ten times the check of one ELPV image, so per-file task runs would make the stage slower
#: than a plain loop; 32 files per run still gives ELPV's 2,624 images 82 runs to spread over the workers.
FILES_PER_TASK = 32

_FIELDS = tuple(f.name for f in dataclasses.fields(ImageCheck))


def check_result(check: ImageCheck) -> dict[str, Any]:
    """An :class:`ImageCheck` as a plain dict of str/int/bool (what a mapped task returns)."""
    return dataclasses.asdict(check)


def checks_from_results(results: Iterable[Mapping[str, Any]]) -> list[ImageCheck]:
    """Rebuild the checks, in order, from mapped task results.

    Raises:
        ValueError: If a result lacks a field or has an unknown one (a worker running other vigil code than the
            flow: upgrade the workers), naming the file.
    """
    checks = []
    for r in results:
        if set(r) != set(_FIELDS):
            raise ValueError(
                f"{r.get('path', '?')}: check result has fields {sorted(r)}, expected {list(_FIELDS)}; "
                "do the Dask workers run the same vigil version as the flow?"
            )
        checks.append(ImageCheck(**r))
    return checks


def _file_run_name() -> str:
    """Name each mapped run after its file (not the whole path), so a crashed check is easy to find in the UI."""
    return f"check-image-{Path(task_run.parameters['path']).name}"


def _chunk_run_name() -> str:
    paths = task_run.parameters["paths"]
    return f"check-image-{Path(paths[0]).name}+{len(paths) - 1}" if paths else "check-image-empty"


@task(name="check-image", cache_policy=NO_CACHE, task_run_name=_file_run_name)
def check_image_task(
    path: str, min_std: float = 1e-6, min_side_px: int = 8, max_pixels: int = MAX_PIXELS
) -> dict[str, Any]:
    """One file's quality check as a task; never raises for a bad file (the result's ``reason`` says why)."""
    return check_result(check_image(path, min_std, min_side_px, max_pixels))


@task(name="check-image-chunk", cache_policy=NO_CACHE, task_run_name=_chunk_run_name)
def check_image_chunk_task(
    paths: list[str], min_std: float = 1e-6, min_side_px: int = 8, max_pixels: int = MAX_PIXELS
) -> list[dict[str, Any]]:
    """Several files' checks in one task run, in order (amortises the per-run orchestration cost)."""
    return [check_result(check_image(p, min_std, min_side_px, max_pixels)) for p in paths]


def chunks(paths: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive runs of ``size`` paths (the last one shorter), keeping the input order."""
    if size < 1:
        raise ValueError(f"files_per_task={size}; use >= 1")
    return [list(paths[i : i + size]) for i in range(0, len(paths), size)]


@flow(name="check-images", validate_parameters=False)
def check_images_flow(
    paths: list[str],
    min_std: float = 1e-6,
    min_side_px: int = 8,
    files_per_task: int = FILES_PER_TASK,
    max_pixels: int = MAX_PIXELS,
) -> list[dict[str, Any]]:
    """Map the checks over ``paths`` on this flow run's task runner; results in input order.

    ``files_per_task=1`` maps :func:`check_image_task` (one task run per file); larger values map
    :func:`check_image_chunk_task` over consecutive chunks.
    """
    logger = get_run_logger()
    if files_per_task == 1:
        futures = check_image_task.map(paths, unmapped(min_std), unmapped(min_side_px), unmapped(max_pixels))
    else:
        limits = (unmapped(min_std), unmapped(min_side_px), unmapped(max_pixels))
        futures = check_image_chunk_task.map(chunks(paths, files_per_task), *limits)
    results: list[dict[str, Any]] = []
    step = max(1, len(futures) // 10)
    for i, future in enumerate(futures):
        value = future.result()  # a crashed run (not a bad file: those return a reason) raises here
        results.extend([value] if files_per_task == 1 else value)
        if (i + 1) % step == 0:
            logger.info("quality: checked %d/%d files", len(results), len(paths))
    return results


def check_images(
    paths: Sequence[str | Path],
    min_std: float = 1e-6,
    min_side_px: int = 8,
    runner: RunnerConfig | None = None,
    files_per_task: int = FILES_PER_TASK,
    max_pixels: int = MAX_PIXELS,
) -> list[ImageCheck]:
    """Check every file, fanned out as mapped task runs on ``runner`` (see the module docstring for why).

    Results come back in input order on every runner, so the duplicate rule ("first copy kept") and the
    quarantine list do not depend on where the checks ran.

    Args:
        paths: Files to check, in ingest order.
        min_std: Pixel standard deviation at or below which an image is blank.
        min_side_px: Smallest acceptable height and width (px).
        runner: ``kind="dask"``: a nested ``check-images`` flow run on
            :func:`tasks.runner.task_runner(runner) <tasks.runner.task_runner>`, i.e. on the Dask workers (a
            temporary LocalCluster lives as long as that nested run; with ``dask_address`` the workers must
            import vigil and read ``paths``). ``None`` or ``kind="local"``: a plain loop in this process. On one
            machine a task run's orchestration costs more than the check itself (measured, 1,000 300-px PNGs on
            2 cores: loop 1.4 s, mapped on local threads 3.8 s with 32 files per run, 10 s with one), so local
            runs keep the loop; ``check_images_flow`` runs on a thread pool when called with that runner.
        files_per_task: Files per mapped task run (1: one run per file).
        max_pixels: Images with more pixels are refused (from the header, before decoding, where it says).

    Returns:
        One :class:`ImageCheck` per path, in the order of ``paths``.
    """
    names = [str(p) for p in paths]
    if runner is None or runner.kind == "local" or not names:
        return [check_image(p, min_std, min_side_px, max_pixels) for p in names]
    fanout = check_images_flow.with_options(task_runner=task_runner(runner))
    return checks_from_results(fanout(names, min_std, min_side_px, files_per_task, max_pixels))
