"""A user's own starting weights (``train.init_from``): a vigil ``model.pt``, a PyTorch state dict, ``.safetensors``
or an ``.onnx`` model, loaded into the candidate before training — or refused, naming what does not fit.

Why four formats: teams hand each other weights in whatever their tools write. A vigil run's ``model.pt`` and a
plain state dict load by parameter name. ``.safetensors`` (no pickle, so no code runs on load) too. ONNX keeps the
weights as graph initializers whose names follow the exporter, not the module tree, so they are matched by name
where names agree and otherwise by order and shape against the model's state dict — the order the exporter wrote
them in; anything ambiguous or left over is an error, never a silent partial load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn


def file_digest(path: str | Path) -> str:
    """sha256 of the file (for cache keys), or ``missing:<path>`` so a missing file fails later with its message."""
    p = Path(path).expanduser()
    if not p.is_file():
        return f"missing:{p}"
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class StartingWeightsError(ValueError):
    """The file cannot start this model: unreadable, or its tensors do not fit (the message lists them)."""


def read_starting_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of ``path`` and the format they came in (``model.pt``, ``state_dict``, ``safetensors``, ``onnx``).

    Raises:
        StartingWeightsError: A missing file, an unknown suffix or content that holds no tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise StartingWeightsError(f"train.init_from={path}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(p))), "safetensors"
    if suffix == ".onnx":
        return _onnx_initializers(p), "onnx"
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoints; the message keeps the cause
        raise StartingWeightsError(
            f"train.init_from={path}: not a PyTorch checkpoint torch.load(weights_only=True) can read ({exc}); "
            "give a vigil model.pt, a state_dict saved with torch.save, a .safetensors or an .onnx file"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return dict(obj["state_dict"]), "model.pt"
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), "state_dict"
    raise StartingWeightsError(
        f"train.init_from={path}: holds no state dict (a mapping of parameter names to tensors, or a vigil "
        "model.pt with one under 'state_dict')"
    )


def _onnx_initializers(path: Path) -> dict[str, torch.Tensor]:
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises DecodeError and others for a damaged file
        raise StartingWeightsError(f"train.init_from={path}: not a readable ONNX model ({exc})") from exc
    return {init.name: torch.from_numpy(np.array(numpy_helper.to_array(init))) for init in graph.initializer}


def _by_name(weights: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps a name-for-name load from fitting: missing, unexpected and mis-shaped names."""
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in target.items() if k not in weights]
    problems += [f"unexpected {k} {tuple(v.shape)}" for k, v in weights.items() if k not in target]
    problems += [
        f"{k}: file {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
        for k, v in target.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    return problems


def _match_onnx(weights: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Initializers matched to state-dict entries: by name first, then the rest in order, each by shape.

    Integer bookkeeping buffers (BatchNorm's ``num_batches_tracked``) are not weights and never appear in ONNX: they
    keep the model's value.
    """
    wanted = {k: v for k, v in target.items() if v.is_floating_point()}
    matched = {k: weights[k] for k in wanted if k in weights and tuple(weights[k].shape) == tuple(wanted[k].shape)}
    rest = [(n, t) for n, t in weights.items() if n not in matched and t.is_floating_point() and t.dim() > 0]
    for key, value in wanted.items():
        if key in matched:
            continue
        if not rest or tuple(rest[0][1].shape) != tuple(value.shape):
            got = f"{rest[0][0]} {tuple(rest[0][1].shape)}" if rest else "nothing left"
            raise StartingWeightsError(
                f"ONNX initializers do not fit the model in order: {key} {tuple(value.shape)} met {got}; "
                f"export the ONNX file from the same architecture (torch.onnx.export with do_constant_folding=False)"
            )
        matched[key] = rest.pop(0)[1]
    if rest:
        names = ", ".join(f"{n} {tuple(t.shape)}" for n, t in rest[:8])
        raise StartingWeightsError(f"ONNX initializers left over after every parameter was matched: {names}")
    return matched


def apply_starting_weights(model: nn.Module, path: str | Path) -> str:
    """Load ``path`` into ``model`` strictly (see the module doc); returns the format read.

    Raises:
        StartingWeightsError: Listing every parameter that does not fit (names and shapes), before any training.
    """
    weights, kind = read_starting_weights(path)
    target = model.state_dict()
    if kind == "onnx":
        matched = _match_onnx(weights, target)
        state = {k: matched.get(k, v) for k, v in target.items()}
    else:
        problems = _by_name(weights, target)
        if problems:
            shown = "; ".join(problems[:12]) + (f"; ... {len(problems) - 12} more" if len(problems) > 12 else "")
            raise StartingWeightsError(
                f"train.init_from={path} ({kind}) does not fit {type(model).__name__}: {shown}. Use weights of the "
                "same architecture and number of classes/channels"
            )
        state = {k: weights[k].to(v.dtype) for k, v in target.items()}
    model.load_state_dict(state, strict=True)
    return kind
