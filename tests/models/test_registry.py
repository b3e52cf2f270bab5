"""Contract tests over every registered image model (timm's tests/test_models.py pattern)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import models.images  # noqa: F401  (registers the image models even if `models` resolves oddly under pytest)
from models.registry import create_model, list_models, model_family, register_model
from models.training import count_parameters

# Every registered image model must appear here with an upper bound on its parameter count (1 input channel,
# 2 classes), so a new model cannot slip past the contract tests and a "tiny" model stays tiny.
EXPECTED_IMAGE_MODELS: dict[str, int] = {
    "resnet_tiny": 50_000,
    "resnet_small": 1_000_000,
    "resnet_fast": 1_000_000,
    "resnet_medium": 4_000_000,
    "squeezenet_tiny": 50_000,
    "squeezenet_small": 1_000_000,
    "efficientnet_lite0": 3_400_000,
    "efficientnet_lite1": 4_200_000,
    "efficientnet_lite2": 4_850_000,
}
IMAGE_MODELS = list_models("image")


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spin-waiting
    threads make each op up to 100x slower (measured: 1.0 s vs 0.012 s per resnet_tiny step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_registered_image_model_has_an_expected_entry() -> None:
    assert set(IMAGE_MODELS) == set(EXPECTED_IMAGE_MODELS)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_parameter_budget(name: str) -> None:
    assert 0 < count_parameters(create_model(name)) <= EXPECTED_IMAGE_MODELS[name]


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_image_model_contract(name: str, in_chans: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_chans=in_chans, num_classes=3)
    assert model_family(name) == "image"
    assert (model.in_chans, model.num_classes) == (in_chans, 3)
    assert isinstance(model.feature_layer, nn.Module)
    assert any(model.feature_layer is m for m in model.modules())

    for size in (32, 48):
        x = torch.randn(2, in_chans, size, size)
        model.train()
        out = model(x)
        assert out.shape == (2, 3)
        assert torch.isfinite(out).all()
        model.zero_grad()
        out.sum().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)

        model.eval()
        with torch.no_grad():
            features = model.forward_features(x)
            assert features.ndim == 4 and features.shape[:2] == (2, model.num_features)
            pooled = model.forward_head(features, pre_logits=True)
            assert pooled.shape == (2, model.num_features)
            torch.testing.assert_close(model.forward_head(features), model(x))
            torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_feature_layer_output_is_the_feature_map(name: str) -> None:
    """Grad-CAM hooks feature_layer; its output must be what forward_features returns."""
    model = create_model(name).eval()
    captured: list[torch.Tensor] = []
    handle = model.feature_layer.register_forward_hook(lambda m, i, o: captured.append(o))
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        features = model.forward_features(x)
    handle.remove()
    assert len(captured) == 1
    torch.testing.assert_close(captured[0], features)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_drop_rate_is_applied_in_training_only(name: str) -> None:
    model = create_model(name, drop_rate=0.5)
    x = torch.randn(4, 1, 32, 32)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.allclose(a, b)


def test_unknown_model_error_lists_known_names() -> None:
    with pytest.raises(KeyError) as err:
        create_model("resnet_huge")
    message = str(err.value)
    assert "resnet_huge" in message
    for name in IMAGE_MODELS:
        assert name in message
    with pytest.raises(KeyError, match="resnet_small"):
        model_family("nope")


def test_list_models_is_sorted_and_filters_by_family() -> None:
    assert list_models() == sorted(list_models())
    assert set(IMAGE_MODELS) <= set(list_models())
    assert list_models("no-such-family") == []


def test_register_model_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="resnet_small"):

        @register_model("image")
        def resnet_small() -> nn.Module:  # noqa: F811 (the duplicate is the point)
            return nn.Identity()


def test_kwargs_override_architecture_and_bad_values_fail_at_construction() -> None:
    model = create_model("resnet_small", widths=(8, 16), depths=(1, 2))
    assert model.num_features == 16
    with pytest.raises(ValueError, match="widths"):
        create_model("resnet_small", widths=(8, 16), depths=(1,))
    with pytest.raises(TypeError):
        create_model("squeezenet_small", no_such_option=1)


def test_reset_classifier() -> None:
    model = create_model("squeezenet_tiny", num_classes=2)
    model.reset_classifier(5)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 5)
    assert model.num_classes == 5


def test_import_models_registers_image_models_and_needs_only_torch_and_numpy() -> None:
    """`import models` alone must register the models, and import nothing a bare torch + numpy box lacks."""
    code = (
        "import sys\n"
        "import numpy, torch\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import models\n"
        "print(','.join(models.list_models('image')))\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} - before - set(sys.stdlib_module_names))))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True).stdout
    registered, new_third_party = out.strip().splitlines()
    assert registered.split(",") == IMAGE_MODELS
    assert new_third_party == "models"


def test_import_models_imports_every_module_that_registers_models() -> None:
    """A model file that `models/__init__.py` forgets to import would register nothing: `create_model` could not
    find its models unless a caller happened to import the file itself."""
    package = Path(__file__).resolve().parents[2] / "models"
    registering = sorted(f"models.{p.stem}" for p in package.glob("*.py") if "@register_model(" in p.read_text())
    assert {"models.images", "models.gan", "models.eeg_cnn"} <= set(registering)
    code = f"import sys, models\nprint(','.join(m for m in {registering!r} if m not in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=package.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
