"""Conditional GAN networks: the registry contract, shapes of every supported size, construction errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from models.gan import IMAGE_SIZES, ConditionalGAN, eeg_seed_length
from models.registry import create_model, list_models, model_family
from models.training import count_parameters

# Every registered GAN must appear here with an upper bound on its parameter count (generator + discriminator +
# EMA copy; images 1 x 64 x 64, EEG 18 x 1024, two classes), so a new GAN cannot slip past the contract tests and
# a "tiny" one stays tiny.
EXPECTED_GAN_MODELS: dict[str, int] = {
    "gan_image_tiny": 50_000,
    "gan_image": 300_000,
    "gan_eeg_tiny": 50_000,
    "gan_eeg": 300_000,
}
GAN_MODELS = list_models("gan")


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


# --------------------------------------------------------------------------------------------- models
def test_every_registered_gan_has_an_expected_entry() -> None:
    assert set(GAN_MODELS) == set(EXPECTED_GAN_MODELS)
    assert all(model_family(name) == "gan" for name in GAN_MODELS)


@pytest.mark.parametrize("name", GAN_MODELS)
def test_parameter_budget(name: str) -> None:
    shape: dict = dict(img_size=64) if model_family_kind(name) == "image" else dict(n_chans=18, n_times=1024)
    gan = create_model(name, num_classes=2, **shape)
    assert 0 < count_parameters(gan) <= EXPECTED_GAN_MODELS[name]
    assert count_parameters(gan.generator_ema) == 0  # the EMA copy is updated by hand, never by an optimizer


@pytest.mark.parametrize("name", GAN_MODELS)
@pytest.mark.parametrize("variant", ["grey", "colour"])
def test_gan_contract(name: str, variant: str) -> None:
    kind = model_family_kind(name)
    torch.manual_seed(0)
    if kind == "image":
        in_chans = 1 if variant == "grey" else 3
        gan = build(name, num_classes=3, in_chans=in_chans)
        assert gan.sample_shape == (in_chans, 32, 32) and gan.loss == "hinge"
    else:
        n_chans = 4 if variant == "grey" else 3  # for EEG the variant is an even and an odd channel count
        gan = build(name, num_classes=3, n_chans=n_chans, n_times=256 if variant == "grey" else 250)
        assert gan.sample_shape == ((4, 256) if variant == "grey" else (3, 250)) and gan.loss == "wgan-gp"
    assert (gan.kind, gan.num_classes) == (kind, 3)

    z, y = torch.randn(5, gan.z_dim), torch.tensor([0, 1, 2, 1, 0])
    fake = gan.generator(z, y)
    assert fake.shape == (5, *gan.sample_shape)
    assert fake.abs().max() <= 1.0 and fake.std() > 0
    scores = gan.discriminator(fake, y)
    assert scores.shape == (5,) and torch.isfinite(scores).all()
    scores.sum().backward()
    for net in (gan.generator, gan.discriminator):
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the label changes the sample: conditioning is wired in (the embeddings start random)
    gan.eval()
    with torch.no_grad():
        assert not torch.allclose(gan(z, torch.zeros(5, dtype=torch.long)), gan(z, torch.full((5,), 2)))
        torch.testing.assert_close(gan(z, y), gan.generator_ema(z, y), rtol=0, atol=0)


@pytest.mark.parametrize("img_size", IMAGE_SIZES)
def test_image_gan_makes_every_supported_size(img_size: int) -> None:
    gan = create_model("gan_image_tiny", in_chans=3, img_size=img_size, num_classes=2)
    with torch.no_grad():
        fake = gan.generator(torch.randn(2, gan.z_dim), torch.tensor([0, 1]))
        assert fake.shape == (2, 3, img_size, img_size)
        assert gan.discriminator(fake, torch.tensor([0, 1])).shape == (2,)


@pytest.mark.parametrize(("n_chans", "n_times"), [(1, 16), (3, 250), (5, 640), (2, 1000), (18, 1024), (2, 1031)])
def test_eeg_gan_makes_any_window_length(n_chans: int, n_times: int) -> None:
    gan = create_model("gan_eeg_tiny", n_chans=n_chans, n_times=n_times, num_classes=2)
    seed_len, n_up = eeg_seed_length(n_times)
    assert seed_len * 2**n_up >= n_times > (seed_len - 1) * 2**n_up  # crops less than one seed step
    with torch.no_grad():
        fake = gan.generator(torch.randn(2, gan.z_dim), torch.tensor([0, 1]))
        assert fake.shape == (2, n_chans, n_times)
        assert gan.discriminator(fake, torch.tensor([0, 1])).shape == (2,)


def test_invalid_shapes_fail_at_construction_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"img_size=48.*16, 32, 64, 128.*resize the images to 32 px"):
        create_model("gan_image", img_size=48)
    with pytest.raises(ValueError, match=r"img_size=256.*resize the images to 128 px"):
        create_model("gan_image_tiny", img_size=256)
    with pytest.raises(ValueError, match=r"12 samples.*minimum of 16.*raise window_s"):
        create_model("gan_eeg", n_chans=2, n_times=12)
    with pytest.raises(ValueError, match="n_chans=0"):
        create_model("gan_eeg", n_chans=0, n_times=256)
    with pytest.raises(ValueError, match="num_classes=0"):
        create_model("gan_image", num_classes=0)
    with pytest.raises(ValueError, match="loss='wgan'"):
        create_model("gan_image", loss="wgan")


def test_loss_choice_sets_spectral_norm_on_the_eeg_critic() -> None:
    def has_sn(gan: ConditionalGAN) -> bool:
        return any("parametrizations" in k for k in gan.discriminator.state_dict())

    assert not has_sn(create_model("gan_eeg_tiny", n_chans=2, n_times=64))  # WGAN-GP: the penalty constrains it
    assert has_sn(create_model("gan_eeg_tiny", n_chans=2, n_times=64, loss="hinge"))
    assert has_sn(create_model("gan_image_tiny"))
