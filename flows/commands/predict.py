"""``vigil predict defect|eeg PATH --run RUN_DIR [--out FILE] [--int8] [--review]``: score new data with a run's model.

No Prefect server and no data root: the command reads only the run directory and the input and writes only its
output (a CSV, or with ``--review`` a folder), so it works from any directory in a bare environment. The path of
the predictions CSV is the last line of standard output. The same work as a Prefect flow (deployable, with
artifacts) is ``flows/batch_inference.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_predict(args: argparse.Namespace) -> int:
    """Score ``args.path``; exit 0 with the CSV path printed, 1 when nothing fits the model or it is unusable."""
    from tasks.model_file import ModelFileError
    from tasks.onnx_model import OnnxMetadataError
    from tasks.predict.batch import predict_defect, predict_eeg
    from tasks.predict.model import PredictInputError

    data, run_dir = Path(args.path).expanduser(), Path(args.run).expanduser()
    out = Path(args.out).expanduser().resolve() if args.out else None
    try:
        if args.flow == "defect":
            result = predict_defect(data, run_dir, out, int8=args.int8, review=args.review)
        else:
            from tasks.ingest.preprocess import preprocess_recording  # the training data's own preprocessing

            result = predict_eeg(data, run_dir, preprocess_recording, out, int8=args.int8, review=args.review)
    except (PredictInputError, OnnxMetadataError, ModelFileError) as exc:
        print(f"vigil: predict: {exc}", file=sys.stderr)
        return 1
    if result.n_refused:
        print(f"vigil: predict: {result.n_refused} input(s) refused; see {result.files[-1]}", file=sys.stderr)
    print(result.csv.resolve())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score images or EDF recordings with a run's model; print the CSV path")
    p.add_argument("flow", choices=("defect", "eeg"))
    p.add_argument("path", help="defect: an image, a folder of images or a CSV manifest; eeg: an EDF file or a folder")
    p.add_argument("--run", required=True, help="the run directory whose model scores (vigil run printed it)")
    p.add_argument("--out", help="the CSV to write (with --review: the folder); default: in the current directory")
    p.add_argument("--int8", action="store_true", help="use model.int8.onnx instead of model.onnx")
    p.add_argument(
        "--review",
        action="store_true",
        help="defect: a manifest path,label,probability,needs_review for review and retraining; "
        "eeg: a folder of links to the EDF files with _events.tsv sidecars",
    )
    p.set_defaults(func=cmd_predict)
