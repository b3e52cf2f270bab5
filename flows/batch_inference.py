"""Flow ``batch-inference``: score a folder of images, a CSV manifest, an EDF file or a folder of them with a run's
model, as a Prefect run (artifacts: the short report and the first predictions), deployable like the other flows.

Wiring only: the work is :func:`tasks.predict.batch.predict_defect` / ``predict_eeg``, which ``vigil predict``
calls directly (no server needed there). EEG recordings go through the ingest stage's own preprocessing, handed
to the predict task here, so new recordings are filtered and resampled exactly like the training data.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from tasks.ingest.preprocess import preprocess_recording
from tasks.predict.task import batch_inference_task

FLOW_NAME = "batch-inference"


@flow(name=FLOW_NAME, validate_parameters=True)
def batch_inference(
    kind: Literal["defect", "eeg"],
    data: str,
    run_dir: str,
    out: str | None = None,
    int8: bool = False,
    review: bool = False,
) -> str:
    """Score ``data`` with the model of ``run_dir``; returns the path of the predictions CSV.

    Args:
        kind: ``defect`` (images) or ``eeg`` (EDF recordings).
        data: An image, a folder of images or a CSV manifest; or an EDF file or a folder of them.
        run_dir: A finished run's directory (``model.onnx``, ``model.int8.onnx`` or ``model.pt``).
        out: The CSV to write (with ``review``: the folder); default: in the working directory.
        int8: Use ``model.int8.onnx``.
        review: Also write the review files (image manifest, or EDF links with ``_events.tsv`` sidecars).
    """
    preprocess = preprocess_recording if kind == "eeg" else None
    result = batch_inference_task(
        kind=kind, data=data, run_dir=run_dir, out=out, int8=int8, review=review, preprocess=preprocess
    )
    return str(result.csv)
