"""A vigil model as one self-describing ONNX file: export, metadata, and a checked ONNX Runtime session.

Exported models that do not match the trained one are the commonest complaint against anomaly-detection toolkits
(anomalib #2448, #2483, #2744, #3726: a preprocessing mismatch moved scores from 0.66 to 0.47; #3033: the threshold
lost on export). So the file carries everything needed to use it: the graph ends in a softmax (its output *is* the
probability vigil evaluated), and the ``vigil`` metadata entry holds the classes, the decision threshold, the input
shape and the preprocessing (image size, channels, normalisation; EEG channels, sampling rate, window, filters).
:func:`open_session` validates that metadata against the graph before anything is scored, so a file with missing or
inconsistent metadata is refused instead of silently deciding differently.

The exporter is TorchScript's (``dynamo=False``), knowingly: torch 2.13's default dynamo exporter needs the
``onnxscript`` package, which vigil does not ship, and the TorchScript exporter handles every vigil network
(convolutions, LSTM, attention) with a fixed input size; only the batch axis is dynamic.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.image_io import load_views

#: The metadata entry (``metadata_props``) holding vigil's JSON document, and that document's format version.
METADATA_KEY = "vigil"
FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"

_COMMON_KEYS = ("format", "kind", "arch", "class_names", "threshold", "input_shape", "preprocessing")
_PREPROCESSING_KEYS = {
    "image": ("image_size", "in_chans", "mean", "std", "scale", "resize"),
    "eeg": ("channels", "sfreq", "window_s", "window_samples", "normalize"),
}


class OnnxMetadataError(ValueError):
    """An ONNX file whose vigil metadata is missing, incomplete or contradicts its graph."""


def model_metadata(record: dict[str, Any], kind: str, *, preprocessing_extra: dict[str, Any] | None = None) -> dict:
    """The metadata document of a vigil model record (``model.pt``) with its decision ``threshold`` set.

    Args:
        record: The model record (``arch``, ``kwargs``, ``class_names`` or ``task``, ``threshold`` and the
            preprocessing facts the train stage stored).
        kind: ``"image"`` or ``"eeg"``.
        preprocessing_extra: Facts the record does not hold (EEG: the ingest stage's filters).
    """
    if kind == "image":
        size, chans = int(record["image_size"]), int(record["in_chans"])
        norm = record["normalization"]
        pre = {
            "image_size": size,
            "in_chans": chans,
            "mean": [float(m) for m in norm["mean"]],
            "std": [float(s) for s in norm["std"]],
            "scale": norm.get("scale", "pixel / dtype max (255 or 65535)"),
            "resize": record.get("preprocess", "resize to image_size x image_size with INTER_AREA"),
        }
        shape: list[Any] = ["batch", chans, size, size]
        class_names = list(record["class_names"])
    elif kind == "eeg":
        n_samples = int(round(float(record["window_s"]) * float(record["sfreq"])))
        pre = {
            "channels": list(record["channels"]),
            "sfreq": float(record["sfreq"]),
            "window_s": float(record["window_s"]),
            "window_samples": n_samples,
            "normalize": record["normalize"],
        }
        shape = ["batch", len(record["channels"]), n_samples]
        task = record.get("task", "detection")
        class_names = ["interictal", "preictal"] if task == "prediction" else ["non-seizure", "seizure"]
    else:
        raise ValueError(f"kind={kind!r}: use 'image' or 'eeg'")
    threshold = record.get("threshold")
    return {
        "format": FORMAT_VERSION,
        "kind": kind,
        "task": record.get("task"),
        "arch": record["arch"],
        "class_names": class_names,
        "positive_class": class_names[1] if len(class_names) == 2 else None,
        "threshold": None if threshold is None else float(threshold),
        "input_shape": shape,
        "output": "class probabilities (softmax), shape (batch, n_classes)",
        "preprocessing": pre | (preprocessing_extra or {}),
        "extra": {k: record[k] for k in ("sop_s", "sph_s") if k in record},
        "quantization": None,
    }


def image_geometry(record: dict[str, Any]) -> dict[str, Any]:
    """The ``preprocessing`` facts an image record adds to its metadata: how a file becomes inputs.

    ``geometry`` (a record without one predates padding: it was trained on squashed, plainly resized images), and
    for ``tile`` also ``tile_px`` (None: the image's short side), which scoring needs to cut the same tiles.
    """
    geometry = record.get("geometry", "squash")
    return {"geometry": geometry} | ({"tile_px": record.get("tile_px")} if geometry == "tile" else {})


def metadata_problems(meta: Any) -> list[str]:
    """What is wrong with a metadata document (empty: nothing)."""
    if not isinstance(meta, dict):
        return [f"the '{METADATA_KEY}' entry is not a JSON object"]
    problems = [f"missing '{k}'" for k in _COMMON_KEYS if k not in meta]
    if meta.get("format") not in (None, FORMAT_VERSION):
        problems.append(f"format {meta.get('format')!r} is not {FORMAT_VERSION} (written by another vigil version)")
    kind = meta.get("kind")
    if kind not in _PREPROCESSING_KEYS:
        return problems + [f"kind {kind!r} is not one of {', '.join(_PREPROCESSING_KEYS)}"]
    pre = meta.get("preprocessing") or {}
    problems += [f"missing 'preprocessing.{k}'" for k in _PREPROCESSING_KEYS[kind] if k not in pre]
    if kind == "image" and pre.get("geometry") == "tile" and "tile_px" not in pre:
        problems.append("'preprocessing.geometry' is 'tile' without 'preprocessing.tile_px'")
    names = meta.get("class_names")
    if not isinstance(names, list) or len(names) < 2:
        problems.append("'class_names' must list at least two classes")
    thr = meta.get("threshold")
    if isinstance(names, list) and len(names) == 2 and not (isinstance(thr, int | float) and 0.0 <= thr <= 1.0):
        problems.append(f"a two-class model needs a 'threshold' in [0, 1] (found {thr!r})")
    return problems


def write_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """Store ``meta`` (JSON) as the file's ``vigil`` metadata entry, replacing an older one."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, sort_keys=True)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``vigil`` metadata document of an ONNX file, validated.

    Raises:
        OnnxMetadataError: No such entry, not JSON, or incomplete (the message lists every problem).
    """
    import onnxruntime as ort

    p = Path(path)
    try:
        props = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidGraph types for damaged files
        raise OnnxMetadataError(f"{p}: not an ONNX model ONNX Runtime can open ({exc})") from exc
    return _parse(p, props.get(METADATA_KEY))


def _parse(path: Path, raw: str | None) -> dict[str, Any]:
    fix = "export it again with vigil's compress stage (vigil run ... writes model.onnx)"
    if raw is None:
        raise OnnxMetadataError(f"{path}: no '{METADATA_KEY}' metadata (classes, threshold, preprocessing); {fix}")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise OnnxMetadataError(f"{path}: its '{METADATA_KEY}' metadata is not JSON ({exc}); {fix}") from exc
    if problems := metadata_problems(meta):
        raise OnnxMetadataError(f"{path}: unusable vigil metadata: {'; '.join(problems)}; {fix}")
    return meta


def open_session(path: str | Path, threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """An ONNX Runtime CPU session and the file's validated metadata, refused when graph and metadata disagree.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (None: ONNX Runtime's default, one per core).

    Raises:
        OnnxMetadataError: See :func:`read_metadata`; also when the graph's input is not the metadata's shape.
    """
    import onnxruntime as ort

    p = Path(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own Fail/InvalidGraph types for damaged files
        raise OnnxMetadataError(f"{p}: not an ONNX model ONNX Runtime can open ({exc})") from exc
    meta = _parse(p, session.get_modelmeta().custom_metadata_map.get(METADATA_KEY))
    graph_shape = list(session.get_inputs()[0].shape)
    expected = meta["input_shape"]
    fixed = [d for d in graph_shape[1:]]
    if len(graph_shape) != len(expected) or fixed != list(expected[1:]):
        raise OnnxMetadataError(
            f"{p}: the graph's input shape {graph_shape} does not match its metadata's {expected}; "
            "the metadata was written for another model: export it again"
        )
    return session, meta


def run_session(session: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, n_classes)`` of inputs ``x`` already preprocessed to the metadata's shape."""
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)})[0]
           for i in range(0, len(x), batch_size)]  # fmt: skip
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def image_views(paths: list[str], meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Images as the model's inputs ``(T, C, H, W)`` float32, exactly as the train stage fed them, and the inputs
    per image ``(N,)``: decoded and fitted to size (or cut into tiles) by :func:`tasks.image_io.load_views` with
    the recorded geometry, then normalised. ``T == N`` unless the geometry is ``tile``; put a tiled image's
    probabilities back together with :func:`tasks.image_io.aggregate_tiles`."""
    pre = meta["preprocessing"]
    size, chans = int(pre["image_size"]), int(pre["in_chans"])
    geometry, tile_px = pre.get("geometry", "pad"), pre.get("tile_px")
    mean = np.asarray(pre["mean"], dtype=np.float32)
    std = np.asarray(pre["std"], dtype=np.float32)
    if geometry != "tile":  # one input per file: fill one array, no per-file copies
        out = np.empty((len(paths), chans, size, size), dtype=np.float32)
        for i, path in enumerate(paths):
            out[i] = ((load_views(path, size, chans, geometry)[0] - mean) / std).transpose(2, 0, 1)
        return out, np.ones(len(paths), dtype=np.int64)
    views = [((load_views(p, size, chans, geometry, tile_px) - mean) / std).transpose(0, 3, 1, 2) for p in paths]
    counts = np.array([len(v) for v in views], dtype=np.int64)
    out = np.concatenate(views).astype(np.float32) if views else np.empty((0, chans, size, size), dtype=np.float32)
    return out, counts


class _WithSoftmax(torch.nn.Module):
    """The network followed by a softmax, so the exported graph outputs the probabilities vigil thresholds."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x).float(), dim=1)


def export_onnx(model: torch.nn.Module, meta: dict[str, Any], path: str | Path, opset: int = 17) -> Path:
    """Export ``model`` (eval mode, fp32) with a softmax head and write ``meta`` into the file.

    The input shape comes from the metadata (batch axis dynamic, the rest fixed: vigil's image nets compute
    "same" padding from the input size, which the trace freezes). See the module docstring for ``dynamo=False``.
    """
    if problems := metadata_problems(meta):
        raise OnnxMetadataError(f"{path}: refusing to export with incomplete metadata: {'; '.join(problems)}")
    out = Path(path)
    example = torch.zeros([1, *meta["input_shape"][1:]], dtype=torch.float32)
    net = _WithSoftmax(model.float().eval()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the frozen input size are expected (see above)
        torch.onnx.export(
            net,
            (example,),
            str(out),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
        )
    write_metadata(out, meta)
    return out
