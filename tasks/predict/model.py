"""Which model file of a run directory scores new data, and one interface over ONNX Runtime and torch.

``model.onnx`` by default (it carries its own preprocessing, classes and threshold, validated before use),
``model.int8.onnx`` when asked for int8, ``model.pt`` when the run has no ONNX file (a run made before the compress
stage, or with ``compress.enabled=false``), read with ``torch.load(weights_only=True)`` so it cannot run code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.onnx_model import image_geometry, model_metadata, open_session, run_session


class PredictInputError(ValueError):
    """Input or run directory that the model cannot score; the message says what differs and what it expects."""


@dataclass
class Predictor:
    """A loaded model: its metadata (classes, threshold, input shape, preprocessing) and a probability function."""

    path: Path
    meta: dict[str, Any]
    _session: Any = None
    _model: Any = None

    def probabilities(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` of preprocessed inputs."""
        if self._session is not None:
            return run_session(self._session, x, batch_size)
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                logits = self._model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)))
                out.append(torch.softmax(logits.float(), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.meta["class_names"])), dtype=np.float32)


def model_folder(run_dir: Path, kind: str) -> Path:
    """Where a run keeps the model that scores ``kind`` (``image``: the run folder; ``eeg``: ``detection/``)."""
    folder = run_dir if kind == "image" else run_dir / "detection"
    if not run_dir.is_dir():
        raise PredictInputError(f"--run {run_dir}: no such run directory; pass a folder that `vigil run` printed")
    if not any((folder / n).is_file() for n in ("model.onnx", "model.int8.onnx", "model.pt")):
        what = "model.pt" if kind == "image" else "detection/model.pt"
        raise PredictInputError(
            f"--run {run_dir}: no {what} or ONNX model; pass the run directory of a finished "
            f"{'defect' if kind == 'image' else 'eeg'} run"
        )
    return folder


def torch_predictor(path: Path) -> Predictor:
    """A ``model.pt`` as a predictor, its metadata derived from the record (read safely before it is rebuilt)."""
    from tasks.model_file import build_model, read_model_file

    record = read_model_file(path)
    if "image_size" in record:
        from tasks.image_classifier import load_model  # rebuilds fitted heads (e.g. an SVM probe's) too

        model, _ = load_model(path)
        meta = model_metadata(record, "image", preprocessing_extra=image_geometry(record))
    else:
        import models  # noqa: F401  (registers every architecture)

        model, meta = build_model(record), model_metadata(record, "eeg")
    return Predictor(path, meta, _model=model)


def open_predictor(path: Path, threads: int | None = None) -> Predictor:
    """A predictor over one model file: ``.onnx`` (metadata validated) or a vigil ``model.pt``."""
    if path.suffix == ".onnx":
        session, meta = open_session(path, threads)
        return Predictor(path, meta, _session=session)
    return torch_predictor(path)


def load_predictor(run_dir: str | Path, kind: str, *, int8: bool = False, threads: int | None = None) -> Predictor:
    """The model of ``run_dir`` that scores ``kind`` inputs (see the module docstring for the choice of file).

    Raises:
        PredictInputError: No such run or model, ``int8`` without ``model.int8.onnx``, or a model for the other
            kind of data.
        tasks.onnx_model.OnnxMetadataError: An ONNX file whose metadata is missing or contradicts its graph.
        tasks.model_file.ModelFileError: A ``model.pt`` that is not a vigil record or would run code.
    """
    folder = model_folder(Path(run_dir).expanduser().resolve(), kind)
    onnx_path = folder / ("model.int8.onnx" if int8 else "model.onnx")
    if int8 and not onnx_path.is_file():
        raise PredictInputError(f"--int8: {onnx_path} does not exist; the run has no int8 model (drop --int8)")
    predictor = open_predictor(onnx_path if onnx_path.is_file() else folder / "model.pt", threads)
    if predictor.meta["kind"] != kind:
        raise PredictInputError(
            f"{predictor.path}: a {predictor.meta['kind']} model cannot score {kind} inputs; "
            f"use `vigil predict {'defect' if predictor.meta['kind'] == 'image' else 'eeg'}`"
        )
    return predictor


def files_under(path: Path, extensions: tuple[str, ...], one: str, many: str) -> list[Path]:
    """``path`` itself when it is such a file, else every such file under the folder (hidden ones skipped), sorted.

    Raises:
        PredictInputError: Not such a file, no such path, or a folder holding none (``one``/``many`` name the kind).
    """
    listing = ", ".join(extensions)
    if path.is_file():
        if path.suffix.lower() not in extensions:
            raise PredictInputError(f"{path}: not {one} ({listing})")
        return [path.resolve()]
    if not path.is_dir():
        raise PredictInputError(f"{path}: no such file or folder")
    found = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder, f).resolve() for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in extensions]  # fmt: skip
    if not found:
        raise PredictInputError(f"{path}: no {many} ({listing}) in it or its subfolders")
    return found
