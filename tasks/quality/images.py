"""The quality stage for inspection images: check every listed file, quarantine the bad ones with their reason.

The checks themselves are pure functions in :mod:`tasks.quality.checks`; :mod:`tasks.quality.fanout` runs them on
the configured task runner. A rejected file goes to the quarantine list; the run goes on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import FILE_STAGE_TIMEOUT_S, StageCache, StageResult, run_stage, stage_key
from tasks.config import QualityConfig, RunnerConfig
from tasks.quality.checks import apply_checks
from tasks.quality.fanout import check_images
from tasks.rundir import RunContext


@task(
    name="quality", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], timeout_seconds=FILE_STAGE_TIMEOUT_S
)
def quality_images_task(
    *, cfg: QualityConfig, ctx: RunContext, ingest: StageResult, runner: RunnerConfig | None = None
) -> StageResult:
    """Check every listed file; bad ones go to the quarantine list with their reason, the rest go on.

    With ``runner.kind=dask`` the checks run as mapped task runs of a nested ``check-images`` flow on the Dask
    workers; the outcome, and so the cache key, does not depend on the runner.
    """
    logger = get_run_logger()
    key = stage_key("quality", ingest.key, cfg)

    def build(out: Path) -> dict:
        records = pd.read_csv(ingest.dir / "records.csv", dtype=str, keep_default_na=False)
        logger.info("quality: checking %d files (runner: %s)", len(records), runner.kind if runner else "local")
        checks = check_images(list(records["path"]), cfg.min_std, cfg.min_side_px, runner, max_pixels=cfg.max_pixels)
        usable, quarantine = apply_checks(records, checks, cfg.drop_duplicates)
        usable.to_csv(out / "usable.csv", index=False)
        pd.DataFrame(quarantine, columns=["path", "stage", "reason"]).to_csv(out / "quarantine.csv", index=False)
        return {"n_checked": len(records), "n_usable": len(usable), "n_quarantined": len(quarantine)}

    result = run_stage(StageCache(ctx.cache_root), "quality", key, build, ctx.refreshes("quality"))
    s = result.summary
    logger.info("quality: %d usable, %d quarantined", s["n_usable"], s["n_quarantined"])
    return result
