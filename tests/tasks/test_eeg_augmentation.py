"""EEG augmentations: each does what its name says, probability 0 is the identity, and a seed fixes the output."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tasks.cache import StageResult
from tasks.config import EegAugmentConfig
from tasks.eeg_augmentation import (
    TRANSFORMS,
    AmplitudeScale,
    ChannelDropout,
    EEGAugment,
    FrequencyShift,
    GaussianNoise,
    SignFlip,
    TimeMask,
    TimeShift,
    amplitude_scale,
    augmentation_examples,
    build_eeg_augment,
    build_eeg_augment_from_config,
    channel_dropout,
    eeg_augment_from_record,
    frequency_shift,
    gaussian_noise,
    sign_flip,
    time_mask,
    time_shift,
)

SFREQ = 256.0


@pytest.fixture()
def window() -> np.ndarray:
    """4 channels x 4 s at 256 Hz: a 10 Hz rhythm of a different amplitude per channel plus a little noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(4 * SFREQ)) / SFREQ
    rhythm = np.sin(2 * np.pi * 10.0 * t)
    x = np.array([1.0, 2.0, 0.5, 3.0])[:, None] * rhythm + 0.05 * rng.standard_normal((4, t.size))
    return x.astype(np.float32)


def _peak_hz(x: np.ndarray, sfreq: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), axis=-1)).mean(axis=0)
    return float(np.fft.rfftfreq(x.shape[-1], 1 / sfreq)[np.argmax(spectrum)])


# --------------------------------------------------------------------------------------------- pure functions
def test_time_shift_roll_moves_the_signal_circularly(window: np.ndarray) -> None:
    out = time_shift(window, 37, "roll")
    np.testing.assert_array_equal(out[:, 37:], window[:, :-37])
    np.testing.assert_array_equal(out[:, :37], window[:, -37:])
    np.testing.assert_array_equal(time_shift(window, -5, "roll")[:, :-5], window[:, 5:])


def test_time_shift_pad_zero_fills_the_vacated_end(window: np.ndarray) -> None:
    later = time_shift(window, 37, "pad")
    np.testing.assert_array_equal(later[:, 37:], window[:, :-37])
    assert not later[:, :37].any()
    earlier = time_shift(window, -37, "pad")
    np.testing.assert_array_equal(earlier[:, :-37], window[:, 37:])
    assert not earlier[:, -37:].any()
    assert not time_shift(window, 5000, "pad").any()
    with pytest.raises(ValueError, match="mode"):
        time_shift(window, 1, "wrap")  # type: ignore[arg-type]


def test_amplitude_scale_scales_globally_or_per_channel(window: np.ndarray) -> None:
    np.testing.assert_allclose(amplitude_scale(window, 1.5), 1.5 * window, rtol=1e-6)
    factors = np.array([1.0, 0.5, 2.0, 0.0])
    np.testing.assert_allclose(amplitude_scale(window, factors), factors[:, None] * window, rtol=1e-6)


def test_gaussian_noise_is_relative_to_each_channels_std(window: np.ndarray) -> None:
    noise = gaussian_noise(window, 0.2, np.random.default_rng(1)) - window
    ratio = noise.std(axis=1) / window.std(axis=1)
    np.testing.assert_allclose(ratio, 0.2, rtol=0.1)
    flat = np.zeros((2, 100), dtype=np.float32)
    assert not gaussian_noise(flat, 0.5, np.random.default_rng(1)).any()


def test_channel_dropout_zeros_exactly_the_masked_channels(window: np.ndarray) -> None:
    out = channel_dropout(window, np.array([False, True, False, True]))
    assert not out[[1, 3]].any()
    np.testing.assert_array_equal(out[[0, 2]], window[[0, 2]])
    with pytest.raises(ValueError, match="one flag per channel"):
        channel_dropout(window, np.array([True]))


def test_frequency_shift_moves_a_10_hz_peak_to_12_hz(window: np.ndarray) -> None:
    assert _peak_hz(window, SFREQ) == pytest.approx(10.0, abs=0.3)
    up = frequency_shift(window, 2.0, SFREQ)
    assert _peak_hz(up, SFREQ) == pytest.approx(12.0, abs=0.3)
    assert _peak_hz(frequency_shift(window, -2.0, SFREQ), SFREQ) == pytest.approx(8.0, abs=0.3)
    # a single-sideband shift keeps the envelope: the amplitude of each channel is unchanged away from the edges
    core = slice(64, -64)
    np.testing.assert_allclose(up[:, core].std(axis=1), window[:, core].std(axis=1), rtol=0.05)
    np.testing.assert_allclose(frequency_shift(window, 0.0, SFREQ), window, atol=1e-4)


def test_time_mask_zeros_one_span(window: np.ndarray) -> None:
    out = time_mask(window, 100, 50)
    assert not out[:, 100:150].any()
    np.testing.assert_array_equal(out[:, :100], window[:, :100])
    np.testing.assert_array_equal(out[:, 150:], window[:, 150:])


def test_sign_flip_negates(window: np.ndarray) -> None:
    np.testing.assert_array_equal(sign_flip(window), -window)


def test_pure_functions_never_modify_their_input(window: np.ndarray) -> None:
    before = window.copy()
    for out in (
        time_shift(window, 3, "pad"),
        amplitude_scale(window, 2.0),
        gaussian_noise(window, 0.1, np.random.default_rng(0)),
        channel_dropout(window, np.ones(4, dtype=bool)),
        frequency_shift(window, 1.0, SFREQ),
        time_mask(window, 0, 10),
        sign_flip(window),
    ):
        assert out.dtype == np.float32 and out.shape == window.shape
    np.testing.assert_array_equal(window, before)


# --------------------------------------------------------------------------------------------- transforms
ALWAYS = {
    "time_shift": TimeShift(p=1.0, max_shift_s=0.5),
    "frequency_shift": FrequencyShift(p=1.0),
    "amplitude_scale": AmplitudeScale(p=1.0),
    "sign_flip": SignFlip(p=1.0),
    "gaussian_noise": GaussianNoise(p=1.0),
    "channel_dropout": ChannelDropout(p=1.0, drop_prob=0.5),
    "time_mask": TimeMask(p=1.0, max_mask_s=1.0),
}


def test_every_transform_is_covered_here() -> None:
    assert set(ALWAYS) == set(TRANSFORMS)


@pytest.mark.parametrize("name", sorted(ALWAYS))
def test_probability_one_changes_and_zero_is_the_identity(name: str, window: np.ndarray) -> None:
    transform = ALWAYS[name]
    changed = [not np.array_equal(transform(window, np.random.default_rng(s), SFREQ), window) for s in range(5)]
    assert any(changed)
    off = dataclasses.replace(transform, p=0.0)
    for s in range(5):
        np.testing.assert_array_equal(off(window, np.random.default_rng(s), SFREQ), window)
    pipeline = EEGAugment([transform], SFREQ, p=0.0)
    np.testing.assert_array_equal(pipeline(window, np.random.default_rng(0)), window)


@pytest.mark.parametrize("name", sorted(ALWAYS))
def test_same_seed_same_output_different_seed_different(name: str, window: np.ndarray) -> None:
    aug = EEGAugment([ALWAYS[name]], SFREQ)
    a = aug(window, np.random.default_rng(7))
    np.testing.assert_array_equal(a, aug(window, np.random.default_rng(7)))
    if name != "sign_flip":  # a sign flip has no parameter to vary
        outputs = [aug(window, np.random.default_rng(s)) for s in range(8, 12)]
        assert any(not np.array_equal(a, b) for b in outputs)


def test_transforms_draw_what_they_promise(window: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        out = ALWAYS["time_mask"](window, rng, SFREQ)
        zero_cols = ~out.any(axis=0)
        assert zero_cols.sum() <= SFREQ * 1.0 + 1
        if zero_cols.any():  # one contiguous span
            idx = np.flatnonzero(zero_cols)
            assert idx[-1] - idx[0] + 1 == idx.size
        dropped = ~ALWAYS["channel_dropout"](window, rng, SFREQ).any(axis=1)
        assert dropped.sum() < window.shape[0]  # never every channel
        scaled = ALWAYS["amplitude_scale"](window, rng, SFREQ)
        factor = float(np.median(scaled / window))
        assert 1 / 1.25 - 1e-6 <= factor <= 1.25 + 1e-6
        np.testing.assert_allclose(scaled, factor * window, rtol=1e-5, atol=1e-6)
        shifted = ALWAYS["time_shift"](window, rng, SFREQ)
        assert any(np.array_equal(shifted, np.roll(window, k, axis=1)) for k in range(-128, 129))


def test_transform_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match=r"sign_flip\.p"):
        SignFlip(p=1.5)
    with pytest.raises(ValueError, match="max_factor"):
        AmplitudeScale(max_factor=0.5)
    with pytest.raises(ValueError, match="max_shift_s"):
        TimeShift(max_shift_s=-1.0)


# --------------------------------------------------------------------------------------------- pipeline
def test_build_from_config_orders_canonically_and_round_trips_through_json(window: np.ndarray) -> None:
    aug = build_eeg_augment(
        SFREQ,
        p=0.9,
        sign_flip={"p": 0.3},
        time_shift=0.5,
        time_mask={"p": 0.2, "max_mask_s": 0.25},
        gaussian_noise=None,
    )
    assert [t.name for t in aug.transforms] == ["time_shift", "sign_flip", "time_mask"]
    same = build_eeg_augment(SFREQ, p=0.9, time_mask={"p": 0.2, "max_mask_s": 0.25}, time_shift=0.5, sign_flip=0.3)
    assert same.to_dict() == aug.to_dict()
    restored = EEGAugment.from_dict(json.loads(json.dumps(aug.to_dict())))
    assert restored.to_dict() == aug.to_dict()
    for seed in range(5):
        np.testing.assert_array_equal(
            restored(window, np.random.default_rng(seed)), aug(window, np.random.default_rng(seed))
        )


def test_unknown_names_are_errors_that_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="time_shift"):
        build_eeg_augment(SFREQ, time_warp=0.5)
    with pytest.raises(ValueError, match="max_shift_s"):
        build_eeg_augment(SFREQ, time_shift={"p": 0.5, "max_shift": 1.0})


def test_full_pipeline_is_per_sample_deterministic_and_leaves_the_input_alone(window: np.ndarray) -> None:
    aug = build_eeg_augment(SFREQ, **{name: 0.5 for name in TRANSFORMS})
    before = window.copy()
    seeds = [[0, epoch, index] for epoch in range(2) for index in range(3)]
    first = [aug(window, np.random.default_rng(s)) for s in seeds]
    again = [aug(window, np.random.default_rng(s)) for s in reversed(seeds)][::-1]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and a.shape == window.shape and np.isfinite(a).all()
    assert len({a.tobytes() for a in first}) == len(first)
    np.testing.assert_array_equal(window, before)


def test_augmentation_examples_one_reproducible_copy_per_seed(window: np.ndarray) -> None:
    aug = build_eeg_augment(SFREQ, time_shift=1.0, gaussian_noise=1.0)
    examples = augmentation_examples(window, aug, [1, 2, 3])
    assert len(examples) == 3
    np.testing.assert_array_equal(examples[1], augmentation_examples(window, aug, [2])[0])
    assert not np.array_equal(examples[0], examples[1])


def test_the_augment_record_rebuilds_the_sections_pipeline(window: np.ndarray) -> None:
    cfg = EegAugmentConfig(time_shift=0.5, gaussian_noise=0.0, sign_flip=0.3)
    summary = json.loads(json.dumps({"config": cfg.model_dump()}))  # as a cached record reads it back
    record = StageResult(stage="augment", key="k", path="", cached=True, seconds=0.0, summary=summary)
    direct = build_eeg_augment_from_config(cfg.model_dump(), SFREQ)
    rebuilt = eeg_augment_from_record(record, SFREQ)
    assert "gaussian_noise" not in [t.name for t in rebuilt.transforms]
    assert rebuilt.to_dict() == direct.to_dict()
    np.testing.assert_array_equal(rebuilt(window, np.random.default_rng(3)), direct(window, np.random.default_rng(3)))
