"""The fit loop: learning, determinism, checkpoints and resume, early stopping, weighting, prediction."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import models.images  # noqa: F401  (registers the image models)
from models.registry import create_model
from models.runtime import CHECKPOINT_NAME
from models.training import (
    FitConfig,
    TensorBatches,
    classification_metrics,
    count_parameters,
    fit,
    improved,
    predict_proba,
    weighted_cross_entropy,
)

TIMING_KEYS = {"seconds", "images_per_s"}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spin-waiting
    threads make each op up to 100x slower (measured: 1.0 s vs 0.012 s per resnet_tiny step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blob_images(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy grey images; class 1 has a bright 6 x 6 'defect' somewhere, class 0 is noise only."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 * torch.randn(n, 1, size, size, generator=g)
    for i in torch.nonzero(y).flatten().tolist():
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        x[i, 0, r : r + 6, c : c + 6] += 1.5
    return x, y


def vectors(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian clouds in 16 dimensions, easy but not trivially separable with noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 16, generator=g) + (2.0 * y - 1.0)[:, None] * 0.8
    return x, y


def mlp(seed: int = 0) -> nn.Module:
    """A tiny model with dropout, so RNG state matters for determinism and resume."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))


@pytest.fixture()
def vector_loaders() -> tuple[DataLoader, DataLoader]:
    x, y = vectors(96, seed=0)
    xv, yv = vectors(48, seed=1)
    # shuffle=True draws from torch's global RNG, which fit seeds and checkpoints
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), DataLoader(TensorDataset(xv, yv), 32)


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def cfg(**overrides: object) -> FitConfig:
    base: dict = dict(epochs=4, lr=1e-2, patience=None, device="cpu", seed=0)
    return FitConfig(**{**base, **overrides})


def test_fit_learns_separable_images_and_keeps_the_best_epoch() -> None:
    x, y = blob_images(96, seed=0)
    xv, yv = blob_images(64, seed=1)
    train = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=64)
    torch.manual_seed(0)
    model = create_model("resnet_tiny")
    result = fit(model, train, val, cfg(epochs=5, lr=1e-2))

    assert result.epochs_run == 5 and result.resumed_from_epoch is None and not result.stopped_early
    assert result.device == "cpu"
    assert result.best_metric > 0.9
    best_row = result.history[result.best_epoch - 1]
    assert (
        best_row["val_balanced_accuracy"]
        == result.best_metric
        == max(r["val_balanced_accuracy"] for r in result.history)
    )
    # the model holds the best epoch's weights, not the last epoch's
    proba = predict_proba(model, val)
    assert np.isclose((proba.argmax(1) == yv.numpy()).mean(), best_row["val_accuracy"])
    assert set(result.history[0]) == {
        "epoch",
        "lr",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
        "seconds",
        "images_per_s",
    }
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_gives_identical_history_and_another_seed_does_not(vector_loaders) -> None:
    train, val = vector_loaders
    runs = [fit(mlp(), train, val, cfg(seed=seed)).history for seed in (3, 3, 4)]
    assert without_timing(runs[0]) == without_timing(runs[1])
    assert without_timing(runs[0]) != without_timing(runs[2])


def test_interrupted_fit_resumes_and_matches_an_uninterrupted_run(vector_loaders, tmp_path: Path) -> None:
    train, val = vector_loaders
    reference_model = mlp()
    reference = fit(reference_model, train, val, cfg())

    def stop_after_epoch_2(row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(mlp(), train, val, cfg(), checkpoint_dir=tmp_path, on_epoch_end=stop_after_epoch_2)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary file left behind
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["epoch"] == 2 and not ckpt["finished"]

    resumed_model = mlp(seed=99)  # different init: everything must come from the checkpoint
    epochs_seen: list[int] = []
    result = fit(
        resumed_model, train, val, cfg(), checkpoint_dir=tmp_path, on_epoch_end=lambda r: epochs_seen.append(r["epoch"])
    )
    assert result.resumed_from_epoch == 2
    assert result.epochs_run == 4
    assert epochs_seen == [3, 4]
    assert without_timing(result.history) == without_timing(reference.history)
    for a, b in zip(resumed_model.state_dict().values(), reference_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # a finished run returns its result without training again, with the best weights loaded
    batches: list[int] = []
    again_model = mlp(seed=7)
    again = fit(again_model, train, val, cfg(), checkpoint_dir=tmp_path, on_batch_end=lambda i, n: batches.append(i))
    assert batches == []
    assert again.resumed_from_epoch == 4 and again.epochs_run == 4
    assert again.history == result.history
    torch.testing.assert_close(again_model[0].weight, resumed_model[0].weight)


def test_checkpoint_from_another_setup_is_refused(vector_loaders, tmp_path: Path) -> None:
    train, val = vector_loaders
    fit(mlp(), train, val, cfg(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"(?s)last\.pt.*config\.lr.*fresh run"):
        fit(mlp(), train, val, cfg(epochs=1, lr=5e-3), checkpoint_dir=tmp_path)
    smaller_batches = DataLoader(train.dataset, batch_size=8, shuffle=True)
    with pytest.raises(ValueError, match="n_batches"):
        fit(mlp(), smaller_batches, val, cfg(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="class_weights"):
        fit(mlp(), train, val, cfg(epochs=1), checkpoint_dir=tmp_path, class_weights=torch.tensor([1.0, 2.0]))


def test_early_stopping_stops_when_the_monitored_metric_stalls(vector_loaders) -> None:
    train, val = vector_loaders
    # lr = 0: the weights never change, so the validation loss never improves after epoch 1
    config = cfg(epochs=10, lr=0.0, schedule="constant", patience=2, monitor="loss", weight_decay=0.0)
    result = fit(mlp(), train, val, config)
    assert result.stopped_early
    assert result.epochs_run == 3
    assert result.best_epoch == 1
    assert math.isclose(result.best_metric, result.history[0]["val_loss"])


def test_patience_none_runs_every_epoch(vector_loaders) -> None:
    train, val = vector_loaders
    result = fit(mlp(), train, val, cfg(epochs=3, lr=0.0, schedule="constant", patience=None))
    assert result.epochs_run == 3 and not result.stopped_early


def test_weighted_cross_entropy_matches_pytorch_and_respects_sample_weights() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 1])
    cw = torch.tensor([1.0, 3.0, 0.5])
    torch.testing.assert_close(weighted_cross_entropy(logits, y), F.cross_entropy(logits, y))
    torch.testing.assert_close(weighted_cross_entropy(logits, y, cw), F.cross_entropy(logits, y, weight=cw))
    assert not torch.isclose(weighted_cross_entropy(logits, y, cw), weighted_cross_entropy(logits, y))

    # a zero sample weight removes the sample; doubling every weight changes nothing (normalised by the sum)
    w = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(weighted_cross_entropy(logits, y, cw, w), F.cross_entropy(logits[:5], y[:5], weight=cw))
    torch.testing.assert_close(weighted_cross_entropy(logits, y, cw, 2 * w), weighted_cross_entropy(logits, y, cw, w))

    # the numpy validation loss agrees with the torch training loss
    metrics = classification_metrics(logits.numpy(), y.numpy(), cw.numpy(), w.numpy())
    assert math.isclose(metrics["loss"], weighted_cross_entropy(logits, y, cw, w).item(), rel_tol=1e-5)


def test_class_and_sample_weights_change_the_training_loss(vector_loaders) -> None:
    train, val = vector_loaders
    x, y = train.dataset.tensors
    plain = fit(mlp(), train, val, cfg(epochs=1)).history[0]["train_loss"]
    class_weighted = fit(mlp(), train, val, cfg(epochs=1), class_weights=torch.tensor([1.0, 4.0]))
    w = torch.where(y == 1, 4.0, 1.0)
    weighted_loader = DataLoader(TensorDataset(x, y, w), batch_size=16, shuffle=True)
    sample_weighted = fit(mlp(), weighted_loader, val, cfg(epochs=1)).history[0]["train_loss"]
    assert class_weighted.history[0]["train_loss"] != plain
    assert sample_weighted != plain


def test_classification_metrics_balanced_accuracy_is_mean_recall() -> None:
    y = np.array([0, 0, 0, 1])
    logits = np.array([[2.0, 0.0]] * 4)  # always predicts class 0
    metrics = classification_metrics(logits, y)
    assert metrics["accuracy"] == 0.75
    assert metrics["balanced_accuracy"] == 0.5
    assert math.isclose(
        metrics["loss"], -np.log(np.exp(2) / (np.exp(2) + 1)) * 0.75 + 0.25 * -np.log(1 / (np.exp(2) + 1))
    )


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_schedules_warm_up_and_anneal(vector_loaders, schedule: str) -> None:
    train, val = vector_loaders
    result = fit(mlp(), train, val, cfg(epochs=2, schedule=schedule, warmup_frac=0.25))
    lrs = [row["lr"] for row in result.history]
    if schedule == "constant":
        assert lrs == [1e-2, 1e-2]
    else:
        assert lrs[0] > 1e-3  # after warm-up, near the peak
        assert lrs[-1] < 0.05 * 1e-2  # annealed to ~0 by the last step


def test_hooks_and_batch_transform_see_training_batches_only(vector_loaders) -> None:
    train, val = vector_loaders
    batch_calls: list[tuple[int, int]] = []
    rows: list[dict] = []
    transformed: list[int] = []

    def transform(x: torch.Tensor) -> torch.Tensor:
        transformed.append(len(x))
        return x + 0.01 * torch.randn_like(x)

    fit(
        mlp(),
        train,
        val,
        cfg(epochs=2),
        on_batch_end=lambda i, n: batch_calls.append((i, n)),
        on_epoch_end=rows.append,
        batch_transform=transform,
    )
    n = len(train)
    assert batch_calls == [(i, n) for i in range(n)] * 2
    assert [r["epoch"] for r in rows] == [1, 2]
    assert sum(transformed) == 2 * len(train.dataset)  # never called on the validation set


def test_fit_without_validation_keeps_the_last_epoch(vector_loaders) -> None:
    train, _ = vector_loaders
    result = fit(mlp(), train, None, cfg(epochs=2, patience=2))
    assert result.best_epoch == 2 and math.isnan(result.best_metric)
    assert result.history[-1]["val_loss"] is None


def test_predict_proba_rows_sum_to_one_in_loader_order(vector_loaders) -> None:
    _, val = vector_loaders
    model = mlp()
    proba = predict_proba(model, val)
    x, _ = val.dataset.tensors
    assert proba.shape == (len(x), 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(proba, torch.softmax(model(x), dim=1).numpy(), rtol=1e-5, atol=1e-6)
    # unlabelled batches of another size give the same rows, and predict_proba leaves the train/eval mode as it found it
    model.train()
    unlabelled = list(torch.split(x, 7))  # bare inputs, no labels
    np.testing.assert_allclose(predict_proba(model, unlabelled), proba, rtol=1e-5, atol=1e-6)
    assert model.training


def test_tensor_batches_behave_like_a_loader() -> None:
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    w = torch.ones(10)
    assert len(TensorBatches(x, y, batch_size=4)) == 3
    assert len(TensorBatches(x, y, batch_size=4, drop_last=True)) == 2
    torch.manual_seed(0)
    batches = list(TensorBatches(x, y, w, batch_size=4, shuffle=True))
    assert [len(b) for b in batches] == [3, 3, 3]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert all(torch.equal(b[0][:, 0].long(), b[1]) for b in batches)  # rows stay aligned
    assert [len(b) for b in TensorBatches(x, batch_size=4)] == [1, 1, 1]  # inputs only, for prediction
    with pytest.raises(ValueError, match="equal length"):
        TensorBatches(x, y[:5])
    with pytest.raises(ValueError, match="without labels"):
        TensorBatches(x, None, w)


def test_fit_accepts_tensor_batches(vector_loaders) -> None:
    x, y = vector_loaders[0].dataset.tensors
    xv, yv = vector_loaders[1].dataset.tensors
    train = TensorBatches(x, y, batch_size=16, shuffle=True, drop_last=True)
    result = fit(mlp(), train, TensorBatches(xv, yv, batch_size=32), cfg(epochs=3))
    assert result.best_metric > 0.8


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="schedule"):
        FitConfig(schedule="step")
    with pytest.raises(ValueError, match="monitor"):
        FitConfig(monitor="f1")
    with pytest.raises(ValueError, match="patience"):
        FitConfig(patience=0)


def test_count_parameters_counts_trainable_only() -> None:
    model = nn.Linear(4, 3)
    assert count_parameters(model) == 15
    model.bias.requires_grad_(False)
    assert count_parameters(model) == 12


def test_onecycle_survives_runs_shorter_than_its_warmup() -> None:
    """2 epochs x 5 batches used to crash OneCycleLR (a warm-up of under two steps divides by zero)."""
    from models.registry import create_model
    from models.training import FitConfig, TensorBatches, fit

    torch.manual_seed(0)
    x, y = torch.randn(10, 1, 32, 32), torch.randint(0, 2, (10,))
    for epochs, batch in ((2, 2), (1, 5), (1, 10)):
        result = fit(
            create_model("resnet_tiny"),
            TensorBatches(x, y, batch_size=batch),
            None,
            FitConfig(epochs=epochs, schedule="onecycle", patience=None),
        )
        assert result.epochs_run == epochs


def test_improved_follows_the_monitor_direction() -> None:
    assert improved(0.5, math.nan, "loss") and not improved(math.nan, math.nan, "accuracy")
    assert improved(0.4, 0.5, "loss") and not improved(0.6, 0.5, "loss")
    assert improved(0.6, 0.5, "balanced_accuracy") and not improved(0.5, 0.5, "accuracy")


def test_backbone_lr_scale_zero_trains_the_head_only(vector_loaders) -> None:
    train, val = vector_loaders
    model = mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, train, val, cfg(epochs=2, patience=None, backbone_lr_scale=0.0, head_prefix="3."))
    after = dict(model.named_parameters())
    assert torch.equal(after["0.weight"], before["0.weight"])
    assert not torch.equal(after["3.weight"], before["3.weight"])


def test_freeze_epochs_hold_the_backbone_then_release_it(vector_loaders) -> None:
    train, val = vector_loaders
    model = mlp()
    start = model[0].weight.detach().clone()
    seen: list[bool] = []
    hook = lambda row: seen.append(torch.equal(model[0].weight, start))  # noqa: E731
    fit(model, train, None, cfg(epochs=3, patience=None, freeze_epochs=2, head_prefix="3."), on_epoch_end=hook)
    assert seen == [True, True, False]
    assert all(p.requires_grad for p in model.parameters())


def test_discriminative_settings_need_a_named_head(vector_loaders) -> None:
    train, val = vector_loaders
    with pytest.raises(ValueError, match="head"):
        fit(mlp(), train, val, cfg(epochs=1, backbone_lr_scale=0.1))
    with pytest.raises(ValueError, match="freeze_epochs"):
        cfg(epochs=2, freeze_epochs=2)
