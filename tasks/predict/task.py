"""The predict stage as a Prefect task for the ``batch-inference`` flow: the batch, plus its report as artifacts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.predict.batch import BatchResult, predict_defect, predict_eeg
from tasks.predict.eeg import Preprocess


@task(name="predict", cache_policy=NO_CACHE)
def batch_inference_task(
    *,
    kind: str,
    data: str,
    run_dir: str,
    out: str | None,
    int8: bool,
    review: bool,
    preprocess: Preprocess | None = None,
) -> BatchResult:
    """:func:`predict_defect` (``kind="defect"``) or :func:`predict_eeg` as a Prefect task, publishing the report
    as a markdown artifact and the first predictions as a table artifact."""
    logger = get_run_logger()
    target = Path(out).expanduser() if out else None
    if kind == "defect":
        result = predict_defect(Path(data), Path(run_dir), target, int8=int8, review=review)
    else:
        if preprocess is None:
            raise ValueError("batch-inference eeg: the flow must hand in the ingest stage's preprocess function")
        result = predict_eeg(Path(data), Path(run_dir), preprocess, target, int8=int8, review=review)
    report = next(f for f in result.files if f.suffix == ".md")
    description = f"{result.n_scored} scored, {result.n_refused} refused: {result.csv}"
    create_markdown_artifact(report.read_text(), key=f"batch-inference-{kind}", description=description)
    table = pd.read_csv(result.csv).head(200)
    create_table_artifact(table.to_dict("records"), key=f"batch-inference-{kind}-predictions", description=description)
    logger.info("predict: %s", description)
    return result
