"""Model files are read with weights_only=True: a model.pt carrying a pickled callable is refused, never run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tasks.model_file import ModelFileError, load_model_file, read_model_file


class _RunsCode:
    """Unpickling this calls os.system: what a malicious model.pt would do on torch.load(weights_only=False)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_model_file_carrying_a_pickled_callable_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"arch": "resnet_tiny", "kwargs": {}, "state_dict": {}, "hook": _RunsCode(marker)}, path)
    with pytest.raises(ModelFileError, match=r"refused: .*weights_only=True"):
        read_model_file(path)
    assert not marker.exists()
    torch.save({"arch": "resnet_tiny", "kwargs": {}, "state_dict": {}, "fn": print}, path)  # a plain callable
    with pytest.raises(ModelFileError, match="refused"):
        load_model_file(path)


def test_a_checkpoint_that_is_not_a_vigil_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelFileError, match="not a vigil model record"):
        read_model_file(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a PyTorch checkpoint"):
        read_model_file(tmp_path / "junk.pt")
