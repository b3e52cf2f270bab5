"""int8 quantisation with ONNX Runtime: static QDQ with per-channel weights, dynamic where static does not apply.

Static quantisation (Jacob et al. 2018) calibrates activation ranges on real inputs, here a seeded draw from the
train split (never test data), and stores QuantizeLinear/DequantizeLinear pairs (QDQ), which every ONNX Runtime
execution provider understands; weights get one scale per output channel, which keeps depthwise convolutions (whose
channels differ by orders of magnitude) from collapsing, the int8 accuracy loss anomalib #2298 reports. Recurrent and
attention graphs (LSTM, GRU) have no static int8 kernels in ONNX Runtime: those are quantised dynamically (weights
int8, activations quantised per batch at run time).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tasks.onnx_model import INPUT_NAME, read_metadata, write_metadata

_DYNAMIC_OPS = {"LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention"}


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over an in-memory array, in batches."""

    def __init__(self, x: np.ndarray, batch_size: int = 16) -> None:
        self._batches = iter([{INPUT_NAME: np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)}
                              for i in range(0, len(x), batch_size)])  # fmt: skip

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def graph_ops(path: str | Path) -> set[str]:
    """The operator types of an ONNX graph."""
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> str:
    """Write the int8 model of ``fp32_path`` to ``out_path`` (metadata carried over); returns the method used.

    Args:
        fp32_path: The exported fp32 model (with vigil metadata).
        out_path: Where the int8 model goes.
        calibration: Preprocessed train-split inputs ``(N, ...)`` for static calibration.

    Returns:
        ``"static QDQ, per-channel int8 weights, uint8 activations"`` or ``"dynamic, int8 weights"``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = read_metadata(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        if graph_ops(prepared) & _DYNAMIC_OPS or len(calibration) == 0:
            quantize_dynamic(str(prepared), str(out_path), per_channel=True, weight_type=QuantType.QInt8)
            method = "dynamic, int8 weights"
        else:
            reader = _Calibration(calibration)
            CalibrationDataReader.register(_Calibration)
            quantize_static(
                str(prepared),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            method = "static QDQ, per-channel int8 weights, uint8 activations"
    write_metadata(out_path, meta | {"quantization": method})
    return method
