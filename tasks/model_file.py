"""Read a vigil ``model.pt`` (or a train entry's ``weights.pt``) safely and rebuild its network.

A PyTorch checkpoint is a pickle, and unpickling can call any function the file names: a ``model.pt`` received
from someone else could run code on the machine that loads it. Every model file vigil reads goes through
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers and refuses everything else;
this module turns that refusal into one sentence that names the file and says what to do.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from models.registry import create_model

#: What every vigil model record holds (``tasks/image_classifier.py`` and ``tasks/window_classifier.py`` write it).
RECORD_KEYS = ("arch", "kwargs", "state_dict")


class ModelFileError(ValueError):
    """A model file that vigil will not use: not a checkpoint, not a vigil record, or one that would run code."""


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The record in a vigil model file, loaded with ``weights_only=True`` (no code in the file can run).

    Raises:
        ModelFileError: The file is missing, is not a PyTorch checkpoint, holds Python objects other than tensors
            and plain data (a pickled callable, a class instance), or lacks the record's keys.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file; pass a run directory that holds model.pt")
    try:
        record = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # the function or class the file names
        if found is None:  # not a pickle vigil can read at all (torch's text would suggest weights_only=False)
            raise ModelFileError(f"{p}: not a PyTorch checkpoint vigil can read; pass a vigil run's model.pt") from exc
        raise ModelFileError(
            f"{p}: refused: it holds Python objects beyond tensors and plain data (it names {found.group(1)}); "
            "vigil loads model files with torch.load(weights_only=True) so that a model file cannot run code: use a "
            "model.pt that vigil wrote, or re-save only its tensors and plain values"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ModelFileError(f"{p}: not a PyTorch checkpoint torch.load can read ({exc})") from exc
    if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
        found = sorted(record)[:8] if isinstance(record, dict) else type(record).__name__
        raise ModelFileError(
            f"{p}: not a vigil model record (expected keys {', '.join(RECORD_KEYS)}; found {found}); "
            "pass the model.pt of a vigil run"
        )
    return record


def build_model(record: dict[str, Any]) -> torch.nn.Module:
    """The record's registry network with its weights, in eval mode (``import models`` must have registered it)."""
    model = create_model(record["arch"], **record["kwargs"])
    model.load_state_dict(record["state_dict"])
    return model.eval()


def load_model_file(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """:func:`read_model_file` then :func:`build_model`: the network and its record."""
    import models  # noqa: F401  (registers every architecture)

    record = read_model_file(path)
    return build_model(record), record
