"""The compress stage: the shipped model as fp32 ONNX (parity checked), int8 ONNX and optionally pruned."""
