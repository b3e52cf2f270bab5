"""GAN training: class-balanced sampling, learning, checkpoints and resume, sampling, config validation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models.gan_training as gan_training
from models.gan import ConditionalGAN
from models.gan_training import DEFAULT_N_CRITIC, ClassBalancedSampler, GanConfig, fit_gan, sample_gan
from models.registry import create_model, list_models
from models.runtime import CHECKPOINT_NAME

GAN_MODELS = list_models("gan")
HISTORY_KEYS = {"step", "d_loss", "g_loss", "seconds"}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spin-waiting threads
    make each op many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(name: str, num_classes: int = 2, **kwargs: object) -> ConditionalGAN:
    """A GAN of either kind on its usual test input: 1 x 32 x 32 images or 4 x 256 EEG."""
    shape: dict = dict(in_chans=1, img_size=32) if model_family_kind(name) == "image" else dict(n_chans=4, n_times=256)
    gan = create_model(name, num_classes=num_classes, **{**shape, **kwargs})
    assert isinstance(gan, ConditionalGAN)
    return gan


def model_family_kind(name: str) -> str:
    return "image" if name.startswith("gan_image") else "eeg"


def toy_data(gan: ConditionalGAN, n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes at -0.5 and +0.5 with a little noise, in the GAN's sample shape."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    level = torch.where(y == 1, 0.5, -0.5).view(n, *([1] * len(gan.sample_shape)))
    return (level + 0.1 * torch.randn(n, *gan.sample_shape, generator=g)).clamp(-1, 1), y


def tiny_config(**overrides: object) -> GanConfig:
    base: dict = dict(steps=10, batch_size=8, n_critic=2, device="cpu", seed=0, log_every=2, checkpoint_every=5)
    return GanConfig(**{**base, **overrides})


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# --------------------------------------------------------------------------------------------- sampling batches
def test_class_balanced_sampler_balances_a_95_5_split() -> None:
    y = torch.tensor([0] * 95 + [1] * 5)[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    sampler = ClassBalancedSampler(y)
    g = torch.Generator().manual_seed(1)
    idx, labels = zip(*(sampler.indices(64, g) for _ in range(20)), strict=True)
    idx, labels = torch.cat(idx), torch.cat(labels)
    torch.testing.assert_close(y[idx], labels, rtol=0, atol=0)  # each index belongs to its label
    assert abs(labels.float().mean().item() - 0.5) < 0.05
    assert set(idx[labels == 1].tolist()) == set(torch.nonzero(y == 1).flatten().tolist())  # every rare item used
    fake_labels = sampler.labels(1280, g)
    assert abs(fake_labels.float().mean().item() - 0.5) < 0.05
    # only classes present are drawn, even when the labels skip one
    assert set(ClassBalancedSampler(torch.tensor([0, 0, 2])).labels(50, g).tolist()) == {0, 2}


def test_fit_gan_draws_class_balanced_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[torch.Tensor] = []
    real_indices, real_labels = ClassBalancedSampler.indices, ClassBalancedSampler.labels

    def spy_indices(self, n, generator):
        idx, labels = real_indices(self, n, generator)
        drawn.append(labels)
        return idx, labels

    def spy_labels(self, n, generator):
        labels = real_labels(self, n, generator)
        drawn.append(labels)
        return labels

    monkeypatch.setattr(ClassBalancedSampler, "indices", spy_indices)
    monkeypatch.setattr(ClassBalancedSampler, "labels", spy_labels)
    gan = build("gan_eeg_tiny")
    x, _ = toy_data(gan, n=100)
    y = torch.tensor([0] * 95 + [1] * 5)
    fit_gan(gan, x, y, tiny_config(steps=8, batch_size=32))
    labels = torch.cat(drawn)
    assert len(drawn) == 8 * (2 + 1)  # n_critic real batches + one fake-label draw per generator step
    assert abs(labels.float().mean().item() - 0.5) < 0.06


# --------------------------------------------------------------------------------------------- training
def test_fit_gan_learns_the_class_conditional_brightness() -> None:
    """Class 0 is dark and class 1 bright; if the label did not reach the generator, both classes would come out
    with the same mean brightness (the discriminator's side is tested below)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2
    x = (torch.where(y == 1, 0.8, -0.8).view(64, 1, 1, 1) + 0.05 * torch.randn(64, 1, 16, 16, generator=g)).clamp(-1, 1)
    torch.manual_seed(0)
    gan = create_model("gan_image_tiny", in_chans=1, img_size=16, num_classes=2)
    cfg = GanConfig(steps=200, batch_size=16, lr_g=2e-3, lr_d=4e-3, device="cpu", seed=0, log_every=50)
    result = fit_gan(gan, x, y, cfg)

    assert result.steps_run == 200 and result.resumed_from_step is None and result.device == "cpu"
    assert [row["step"] for row in result.history] == [50, 100, 150, 200]
    assert set(result.history[0]) == HISTORY_KEYS
    assert all(np.isfinite(row["d_loss"]) and np.isfinite(row["g_loss"]) for row in result.history)
    dark = sample_gan(gan, [0] * 32, seed=1)
    bright = sample_gan(gan, [1] * 32, seed=1)
    assert bright.mean() - dark.mean() > 0.5
    assert dark.mean() < -0.2 and bright.mean() > 0.2


@pytest.mark.parametrize("name", GAN_MODELS)
def test_discriminator_learns_which_class_a_sample_belongs_to(name: str) -> None:
    """The projection head at work: trained to accept real samples with their own label and reject them with the
    other label, the discriminator must score the right pairing higher; a head that ignored y could not."""
    torch.manual_seed(0)
    gan = build(name, **({"width": 4} if "tiny" not in name else {}))
    x, y = toy_data(gan, n=16)
    disc = gan.discriminator
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2, betas=(0.0, 0.9))
    for _ in range(30):
        loss = F.relu(1.0 - disc(x, y)).mean() + F.relu(1.0 + disc(x, 1 - y)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    disc.eval()
    with torch.no_grad():
        assert (disc(x, y) > disc(x, 1 - y)).float().mean() > 0.9


def test_wgan_gp_history_has_the_penalty_and_on_step_end_sees_every_step() -> None:
    gan = build("gan_eeg_tiny")
    x, y = toy_data(gan)
    seen: list[tuple[int, int, dict]] = []
    result = fit_gan(gan, x, y, tiny_config(steps=5), on_step_end=lambda s, n, losses: seen.append((s, n, losses)))
    assert [(s, n) for s, n, _ in seen] == [(s, 5) for s in range(1, 6)]
    assert all(set(losses) == {"d_loss", "g_loss", "gp"} for _, _, losses in seen)
    assert [row["step"] for row in result.history] == [2, 4, 5]  # every log_every steps, and the last
    assert set(result.history[0]) == HISTORY_KEYS | {"gp"}
    assert all(row["gp"] >= 0 for row in result.history)
    assert DEFAULT_N_CRITIC == {"hinge": 1, "wgan-gp": 5}


@pytest.mark.parametrize("name", ["gan_image_tiny", "gan_eeg_tiny"])
def test_interrupted_fit_gan_resumes_and_matches_an_uninterrupted_run(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference_gan = build(name)
    x, y = toy_data(reference_gan)
    reference = fit_gan(reference_gan, x, y, tiny_config())

    def crash_at_step_7(step: int, n_steps: int, losses: dict) -> None:
        if step == 7:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit_gan(build(name), x, y, tiny_config(), checkpoint_dir=tmp_path, on_step_end=crash_at_step_7)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary file left behind
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["step"] == 5 and not ckpt["finished"]

    torch.manual_seed(99)  # a different init: everything must come from the checkpoint
    resumed_gan = build(name)
    steps_seen: list[int] = []
    result = fit_gan(
        resumed_gan, x, y, tiny_config(), checkpoint_dir=tmp_path, on_step_end=lambda s, n, _: steps_seen.append(s)
    )
    assert steps_seen == [6, 7, 8, 9, 10]
    assert result.resumed_from_step == 5 and result.steps_run == 10
    assert without_timing(result.history) == without_timing(reference.history)
    reference_state = reference_gan.state_dict()
    for key, value in resumed_gan.state_dict().items():  # generator, discriminator, EMA, BatchNorm and SN buffers
        torch.testing.assert_close(value, reference_state[key], rtol=0, atol=0, msg=key)
    np.testing.assert_array_equal(sample_gan(resumed_gan, [0, 1], seed=3), sample_gan(reference_gan, [0, 1], seed=3))

    # a finished run returns its result without training again, with the final weights loaded
    again_gan = build(name)
    again = fit_gan(
        again_gan, x, y, tiny_config(), checkpoint_dir=tmp_path, on_step_end=lambda *_: steps_seen.append(0)
    )
    assert steps_seen == [6, 7, 8, 9, 10]
    assert again.resumed_from_step == 10 and again.steps_run == 10 and again.history == result.history
    torch.testing.assert_close(again_gan.state_dict(), resumed_gan.state_dict(), rtol=0, atol=0)


def test_checkpoint_from_another_setup_is_refused(tmp_path: Path) -> None:
    gan = build("gan_eeg_tiny")
    x, y = toy_data(gan)
    fit_gan(gan, x, y, tiny_config(steps=2), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"(?s)last\.pt.*config\.lr_g.*fresh run"):
        fit_gan(build("gan_eeg_tiny"), x, y, tiny_config(steps=2, lr_g=1e-3), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="class_counts"):
        fit_gan(build("gan_eeg_tiny"), x, torch.zeros_like(y), tiny_config(steps=2), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="data_shape"):
        fit_gan(build("gan_eeg_tiny"), x[:30], y[:30], tiny_config(steps=2), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="model"):
        fit_gan(build("gan_eeg_tiny", width=8), x, y, tiny_config(steps=2), checkpoint_dir=tmp_path)
    # the device is not part of the fingerprint: the same setup resumes (here: returns the finished run)
    assert fit_gan(build("gan_eeg_tiny"), x, y, tiny_config(steps=2, device=None), checkpoint_dir=tmp_path).steps_run


def test_nan_loss_raises_and_is_never_checkpointed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_d_loss = gan_training._d_loss

    def nan_d_loss(*args, **kwargs):
        loss, gp = real_d_loss(*args, **kwargs)
        return loss * float("nan"), gp

    monkeypatch.setattr(gan_training, "_d_loss", nan_d_loss)
    gan = build("gan_image_tiny")
    x, y = toy_data(gan)
    with pytest.raises(FloatingPointError, match=r"step 2.*d_loss=nan.*lr_d"):
        fit_gan(gan, x, y, tiny_config(checkpoint_every=2), checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    with pytest.raises(FloatingPointError, match="step 1"):  # on_step_end reads every step's losses
        fit_gan(gan, x, y, tiny_config(), on_step_end=lambda *a: None)


def test_ema_tracks_the_generator() -> None:
    gan = build("gan_image_tiny")
    x, y = toy_data(gan)
    fit_gan(gan, x, y, tiny_config(steps=4, ema_decay=None))
    torch.testing.assert_close(gan.generator_ema.state_dict(), gan.generator.state_dict(), rtol=0, atol=0)
    fit_gan(gan, x, y, tiny_config(steps=4, ema_decay=0.999))
    ema, live = gan.generator_ema.state_dict(), gan.generator.state_dict()
    assert any(not torch.equal(ema[k], live[k]) for k in ema)


# --------------------------------------------------------------------------------------------- sample_gan
def test_sample_gan_is_deterministic_for_a_seed() -> None:
    gan = build("gan_image_tiny")
    x, y = toy_data(gan)
    fit_gan(gan, x, y, tiny_config(steps=3))
    labels = [0, 1, 1, 0, 1]
    a = sample_gan(gan, labels, seed=7)
    assert a.dtype == np.float32 and a.shape == (5, *gan.sample_shape) and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, sample_gan(gan, np.array(labels), seed=7))
    np.testing.assert_allclose(a, sample_gan(gan, torch.tensor(labels), seed=7, batch_size=2), atol=1e-5)
    assert not np.allclose(a, sample_gan(gan, labels, seed=8))
    assert not np.allclose(a, sample_gan(gan, labels, seed=7, use_ema=False))
    assert gan.generator.training and gan.generator_ema.training  # the mode is restored
    assert sample_gan(gan, [], seed=0).shape == (0, *gan.sample_shape)
    with pytest.raises(ValueError, match=r"labels span \[0, 2\].*num_classes=2"):
        sample_gan(gan, [0, 2], seed=0)


# --------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(steps=0), "steps=0"),
        (dict(batch_size=1), "batch_size=1"),
        (dict(lr_g=0.0), "lr_g=0.0"),
        (dict(lr_d=float("nan")), "lr_d=nan"),
        (dict(betas=(0.5, 1.0)), r"betas=\(0.5, 1.0\)"),
        (dict(n_critic=0), "n_critic=0"),
        (dict(gp_weight=-1.0), "gp_weight=-1.0"),
        (dict(ema_decay=1.0), "ema_decay=1.0"),
        (dict(checkpoint_every=0), "checkpoint_every=0"),
        (dict(log_every=0), "log_every=0"),
    ],
)
def test_config_validation_names_the_value(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GanConfig(**overrides)


def test_fit_gan_validates_the_data() -> None:
    gan = build("gan_image_tiny")
    x, y = toy_data(gan)
    cfg = tiny_config(steps=1)
    with pytest.raises(ValueError, match="32 samples but y has 31"):
        fit_gan(gan, x, y[:31], cfg)
    with pytest.raises(ValueError, match=r"\(1, 16, 16\).*\(1, 32, 32\)"):
        fit_gan(gan, x[:, :, :16, :16], y, cfg)
    with pytest.raises(ValueError, match=r"labels span \[0, 2\].*num_classes=2"):
        fit_gan(gan, x, y * 2, cfg)
    with pytest.raises(ValueError, match="no samples"):
        fit_gan(gan, x[:0], y[:0], cfg)
    with pytest.raises(ValueError, match=r"x reaches \|\d+\|.*127\.5"):
        fit_gan(gan, x * 255, y, cfg)
    with pytest.raises(ValueError, match="integer"):
        fit_gan(gan, x, y.float(), cfg)
    x_nan = x.clone()
    x_nan[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit_gan(gan, x_nan, y, cfg)
