"""Contract tests over every registered EEG model (timm's tests/test_models.py pattern), plus a learnability check."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import models.eeg_cnn  # noqa: F401  (registers the EEG models whether or not models/__init__ imports them)
import models.eeg_cnn_lstm  # noqa: F401
import models.eeg_transformer  # noqa: F401
from models.eeg_layers import temporal_pool
from models.registry import create_model, list_models, model_family
from models.training import count_parameters

# Every registered EEG model must appear here with an upper bound on its parameter count (18 channels, 4 s at
# 256 Hz, 2 outputs), so a new model cannot slip past the contract tests and a "tiny" model stays tiny.
EXPECTED_EEG_MODELS: dict[str, int] = {
    "eeg_cnn_tiny": 5_000,
    "eeg_cnn": 100_000,
    "eeg_cnn_lstm_tiny": 5_000,
    "eeg_cnn_lstm": 200_000,
    "eeg_transformer_tiny": 10_000,
    "eeg_transformer": 250_000,
}
EEG_MODELS = list_models("eeg")
# (sfreq in Hz, window in s): the shortest and a typical window, at two sampling rates.
WINDOWS = [(128.0, 2.0), (256.0, 4.0)]


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spin-waiting threads
    make each op many times slower (measured here: 24 s vs 1.3 s for the learnability test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(name: str, n_chans: int = 18, sfreq: float = 256.0, window_s: float = 4.0, **kwargs: object) -> nn.Module:
    return create_model(name, n_chans=n_chans, n_times=int(window_s * sfreq), sfreq=sfreq, **kwargs)


def test_every_registered_eeg_model_has_an_expected_entry() -> None:
    assert set(EEG_MODELS) == set(EXPECTED_EEG_MODELS)


@pytest.mark.parametrize("name", EEG_MODELS)
def test_parameter_budget(name: str) -> None:
    assert 0 < count_parameters(_model(name)) <= EXPECTED_EEG_MODELS[name]


@pytest.mark.parametrize("name", EEG_MODELS)
@pytest.mark.parametrize("n_chans", [4, 18])
def test_eeg_model_contract(name: str, n_chans: int) -> None:
    for sfreq, window_s in WINDOWS:
        torch.manual_seed(0)
        n_times = int(window_s * sfreq)
        model = create_model(name, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=sfreq)
        assert model_family(name) == "eeg"
        assert (model.n_chans, model.n_times, model.n_outputs, model.sfreq) == (n_chans, n_times, 3, sfreq)
        assert 1 <= model.min_samples <= n_times
        assert any(model.feature_layer is m for m in model.modules())

        x = torch.randn(2, n_chans, n_times)
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
            assert features.ndim == 3 and features.shape[:2] == (2, model.num_features)
            assert features.shape[2] >= 1
            pooled = model.forward_head(features, pre_logits=True)
            assert pooled.shape == (2, model.num_features)
            torch.testing.assert_close(model.forward_head(features), model(x))
            torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", EEG_MODELS)
def test_feature_layer_output_is_the_feature_map(name: str) -> None:
    """Grad-CAM over time hooks feature_layer; its output must be what forward_features returns."""
    model = _model(name).eval()
    captured: list[torch.Tensor] = []
    handle = model.feature_layer.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 18, 1024))
    handle.remove()
    assert len(captured) == 1
    torch.testing.assert_close(captured[0], features)


@pytest.mark.parametrize("name", EEG_MODELS)
def test_drop_rate_is_applied_in_training_only(name: str) -> None:
    model = _model(name, drop_rate=0.5)
    x = torch.randn(4, 18, 1024)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", EEG_MODELS)
def test_window_shorter_than_the_minimum_names_the_fix(name: str) -> None:
    minimum = _model(name).min_samples
    assert _model(name, window_s=minimum / 256.0).min_samples == minimum  # exactly the minimum is fine
    pattern = rf"window of {minimum - 1} samples is shorter than .* minimum of {minimum} samples .*raise window_s"
    with pytest.raises(ValueError, match=pattern):
        create_model(name, n_chans=18, n_times=minimum - 1, sfreq=256.0)


@pytest.mark.parametrize("name", [n for n in EEG_MODELS if n.endswith("_tiny")])
@pytest.mark.parametrize(("sfreq", "window_s"), [(100.0, 2.0), (512.0, 30.0)])
def test_other_sampling_rates_and_long_windows(name: str, sfreq: float, window_s: float) -> None:
    """The first layer is sized in seconds, so a 30 s window at 512 Hz and a 2 s one at 100 Hz both work."""
    model = _model(name, n_chans=3, sfreq=sfreq, window_s=window_s).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, int(window_s * sfreq)))
    assert out.shape == (1, 2) and torch.isfinite(out).all()


def test_receptive_field_is_measured_in_seconds_not_samples() -> None:
    """A 512 Hz net needs about as many seconds as a 256 Hz one, because its first kernel and pool scale."""
    at_256 = _model("eeg_cnn", sfreq=256.0).min_samples / 256.0
    at_512 = _model("eeg_cnn", sfreq=512.0).min_samples / 512.0
    assert 0.5 < at_256 < 2.0
    assert at_512 == pytest.approx(at_256, rel=0.2)


@pytest.mark.parametrize("name", EEG_MODELS)
def test_feature_extractor_and_reset_classifier(name: str) -> None:
    model = _model(name, n_outputs=0).eval()
    x = torch.randn(2, 18, 1024)
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    assert model.n_outputs == 5


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="n_chans"):
        create_model("eeg_cnn", n_chans=0, n_times=1024)
    with pytest.raises(ValueError, match="drop_rate"):
        create_model("eeg_cnn", n_chans=4, n_times=1024, drop_rate=1.0)
    with pytest.raises(ValueError, match="pool_type"):
        create_model("eeg_cnn", n_chans=4, n_times=1024, pool_type="median")
    with pytest.raises(ValueError, match="num_heads"):
        create_model("eeg_transformer", n_chans=4, n_times=1024, embed_dim=30, num_heads=4)
    with pytest.raises(TypeError):
        create_model("eeg_cnn_lstm", n_chans=4, n_times=1024, no_such_option=1)


def test_kwargs_override_architecture() -> None:
    model = create_model("eeg_cnn", n_chans=4, n_times=1024, widths=(8, 16, 24, 40))
    assert model.num_features == 40
    lstm = create_model("eeg_cnn_lstm", n_chans=4, n_times=1024, hidden=10, bidirectional=False, pool_type="last")
    assert lstm.num_features == 10
    assert lstm(torch.randn(2, 4, 1024)).shape == (2, 2)


def test_last_pooling_reads_each_lstm_direction_at_its_end() -> None:
    """A backward LSTM has seen the whole window at t = 0, so 'last' must read that half there."""
    features = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(2, 4, 5)
    pooled = temporal_pool(features, "last", bidirectional=True)
    torch.testing.assert_close(pooled, torch.cat([features[:, :2, -1], features[:, 2:, 0]], dim=1))


def _burst_windows(n: int, n_chans: int, n_times: int, sfreq: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Half white-noise windows, half with a 10 Hz burst of random phase, onset and electrodes added."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_chans, n_times, generator=g)
    y = torch.arange(n) % 2
    t = torch.arange(n_times) / sfreq
    for i in torch.nonzero(y).flatten():
        phase = float(torch.rand(1, generator=g)) * 2 * math.pi
        onset = int(torch.randint(0, n_times // 2, (1,), generator=g))
        chans = torch.rand(n_chans, generator=g) < 0.6
        chans[int(torch.randint(0, n_chans, (1,), generator=g))] = True  # a burst on no electrode is unlearnable
        burst = 1.5 * torch.sin(2 * math.pi * 10.0 * t + phase)
        burst[:onset] = 0.0
        x[i, chans] += burst
    return x, y


def test_eeg_cnn_tiny_learns_10_hz_bursts_from_noise() -> None:
    """A few epochs on CPU must separate burst windows from noise far better than chance on held-out windows."""
    torch.manual_seed(0)
    sfreq, n_chans, n_times = 128.0, 4, 256
    x_train, y_train = _burst_windows(192, n_chans, n_times, sfreq, seed=1)
    x_test, y_test = _burst_windows(128, n_chans, n_times, sfreq, seed=2)
    model = create_model("eeg_cnn_tiny", n_chans=n_chans, n_times=n_times, sfreq=sfreq, drop_rate=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(8):
        for idx in torch.randperm(len(y_train)).split(16):
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.9


def test_import_models_eeg_needs_only_torch_and_numpy() -> None:
    """models/ must run on a bare GPU machine: importing the EEG models pulls in no other third-party package."""
    code = (
        "import sys\n"
        "import numpy, torch\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "import models.eeg_cnn, models.eeg_cnn_lstm, models.eeg_transformer\n"
        "print(','.join(models.registry.list_models('eeg')))\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} - before - set(sys.stdlib_module_names))))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True).stdout
    registered, new_third_party = out.strip().splitlines()
    assert registered.split(",") == EEG_MODELS
    assert new_third_party == "models"
