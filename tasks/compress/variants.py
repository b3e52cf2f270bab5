"""The compress stage's core: export, quantise, optionally prune one model, and measure every variant alike.

Variants (``metrics.json`` → ``compress.<variant>``): ``fp32_torch`` (the shipped network), ``fp32_onnx`` (its ONNX
export, run by ONNX Runtime), ``int8_onnx`` (:mod:`tasks.compress.quantize`) and, with ``compress.prune=true``,
``pruned_torch`` (global magnitude pruning, Han et al. 2015, plus a short fine-tune). Each is scored on the same
preprocessed test inputs at the model's own decision threshold, so the numbers differ only by the variant. Latency is
the median of repeated forward passes at batch 1 and batch 32 with the same CPU thread count for torch and ONNX
Runtime (``threads``), after one warm-up pass; ``max_abs_diff`` is the largest |Δ probability| against fp32 torch.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.compress.quantize import quantize_int8
from tasks.config import CompressConfig
from tasks.image_io import aggregate_tiles
from tasks.metrics import classification_metrics
from tasks.onnx_model import export_onnx, open_session, run_session

VARIANTS = ("fp32_torch", "fp32_onnx", "int8_onnx", "pruned_torch")


@dataclass
class CompressData:
    """Preprocessed inputs of one model: test inputs with labels, and train-split inputs to calibrate/fine-tune on.

    A tiled image model has several inputs per test image: ``test_counts`` says how many (consecutive), and its
    accuracy is scored per image (:meth:`test_probabilities`).
    """

    x_test: np.ndarray  # (N, C, H, W) (a row per tile when tiled) or (N, C, T) float32, normalised for the model
    y_test: np.ndarray  # (N,) int labels, one per test image or window
    x_train: np.ndarray  # (M, ...) seeded draw from the train split
    y_train: np.ndarray  # (M,)
    test_counts: np.ndarray | None = None  # (N,) inputs per test image (tiles); None: one each

    def test_probabilities(self, proba: np.ndarray) -> np.ndarray:
        """Probabilities of ``x_test``'s rows as one row per test label (:func:`tasks.image_io.aggregate_tiles`)."""
        return proba if self.test_counts is None else aggregate_tiles(proba, self.test_counts)


def torch_probabilities(model: torch.nn.Module, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """fp32 class probabilities ``(N, n_classes)`` of a network in eval mode."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            logits = model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)))
            out.append(torch.softmax(logits.float(), dim=1).numpy())
    return np.concatenate(out)


def median_latency_ms(fn: Callable[[np.ndarray], Any], x: np.ndarray, repeats: int) -> float:
    """Median wall time (ms) of ``fn(x)`` over ``repeats`` calls after one warm-up call."""
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def _batch(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` inputs for a latency batch (repeating the test inputs when there are fewer)."""
    idx = np.arange(n) % max(len(x), 1)
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def score(y: np.ndarray, proba: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
    """accuracy, balanced accuracy and ROC AUC at the model's own threshold (argmax for several classes)."""
    names = meta["class_names"]
    s = proba[:, 1] if len(names) == 2 else proba
    m = classification_metrics(y, s, meta["threshold"] if len(names) == 2 else None, names)
    return {k: m.get(k) for k in ("accuracy", "balanced_accuracy", "roc_auc")}


def state_dict_bytes(model: torch.nn.Module) -> int:
    """Bytes of the network's weights as ``torch.save`` writes them (what a ``model.pt`` costs, minus metadata)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _torch_variant(
    model: torch.nn.Module, data: CompressData, meta: dict, cfg: CompressConfig
) -> tuple[dict, np.ndarray]:
    proba = torch_probabilities(model, data.x_test)
    row = {"size_bytes": state_dict_bytes(model)}
    with torch.inference_mode():
        row["latency_ms_b1"] = median_latency_ms(lambda b: model(torch.from_numpy(b)), _batch(data.x_test, 1),
                                                 cfg.latency_repeats)  # fmt: skip
        row["latency_ms_b32"] = median_latency_ms(lambda b: model(torch.from_numpy(b)), _batch(data.x_test, 32),
                                                  cfg.latency_repeats_b32)  # fmt: skip
    return row | score(data.y_test, data.test_probabilities(proba), meta), proba


def _onnx_variant(path: Path, data: CompressData, meta: dict, cfg: CompressConfig) -> tuple[dict, np.ndarray]:
    session, _ = open_session(path, threads=cfg.threads)
    proba = run_session(session, data.x_test)
    name = session.get_inputs()[0].name
    row = {"size_bytes": path.stat().st_size}
    row["latency_ms_b1"] = median_latency_ms(lambda b: session.run(None, {name: b}), _batch(data.x_test, 1),
                                             cfg.latency_repeats)  # fmt: skip
    row["latency_ms_b32"] = median_latency_ms(lambda b: session.run(None, {name: b}), _batch(data.x_test, 32),
                                              cfg.latency_repeats_b32)  # fmt: skip
    return row | score(data.y_test, data.test_probabilities(proba), meta), proba


def prune_and_finetune(model: torch.nn.Module, data: CompressData, cfg: CompressConfig, seed: int) -> float:
    """Global L1 magnitude pruning of every conv/linear weight to ``cfg.prune_amount``, a short fine-tune on the
    train draw (batch-norm statistics frozen), then the masks made permanent. Returns the achieved sparsity."""
    from torch.nn.utils import prune

    layers = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    params = [(m, "weight") for m in model.modules() if isinstance(m, layers)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=cfg.prune_amount)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.prune_lr)
    x, y = torch.from_numpy(np.asarray(data.x_train, dtype=np.float32)), torch.from_numpy(data.y_train.astype(np.int64))
    model.eval()  # fine-tune with frozen batch-norm statistics and no dropout: a few hundred inputs only
    for _ in range(cfg.prune_epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    for module, name in params:
        prune.remove(module, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
    return zeros / max(sum(m.weight.numel() for m, _ in params), 1)


def compress_model(
    model: torch.nn.Module, meta: dict[str, Any], data: CompressData, cfg: CompressConfig, out_dir: Path, seed: int
) -> dict[str, dict[str, Any]]:
    """Write ``model.onnx`` and ``model.int8.onnx`` to ``out_dir`` and measure every variant (module docstring).

    Returns ``{variant: {size_bytes, latency_ms_b1, latency_ms_b32, accuracy, balanced_accuracy, roc_auc,
    max_abs_diff, threads}}`` (plus ``quantization`` on ``int8_onnx`` and ``sparsity`` on ``pruned_torch``).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        model = model.float().eval()
        fp32_path = export_onnx(model, meta, out_dir / "model.onnx", opset=cfg.opset)
        method = quantize_int8(fp32_path, out_dir / "model.int8.onnx", data.x_train[: cfg.calibration_samples])
        rows: dict[str, dict[str, Any]] = {}
        rows["fp32_torch"], reference = _torch_variant(model, data, meta, cfg)
        rows["fp32_onnx"], p32 = _onnx_variant(fp32_path, data, meta, cfg)
        rows["int8_onnx"], p8 = _onnx_variant(out_dir / "model.int8.onnx", data, meta, cfg)
        rows["fp32_torch"]["max_abs_diff"] = 0.0
        rows["fp32_onnx"]["max_abs_diff"] = float(np.abs(p32 - reference).max()) if len(reference) else None
        rows["int8_onnx"]["max_abs_diff"] = float(np.abs(p8 - reference).max()) if len(reference) else None
        rows["int8_onnx"]["quantization"] = method
        if cfg.prune:
            sparsity = prune_and_finetune(model, data, cfg, seed)
            rows["pruned_torch"], pp = _torch_variant(model, data, meta, cfg)
            rows["pruned_torch"] |= {"max_abs_diff": float(np.abs(pp - reference).max()), "sparsity": sparsity}
        for row in rows.values():
            row["threads"] = cfg.threads
        return rows
    finally:
        torch.set_num_threads(previous)
