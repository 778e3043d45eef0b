from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio
from skimage.util import img_as_float, random_noise

from napari_histo_denoise.noise import (
    GaussianNoise,
    MixtureNoise,
    PoissonNoise,
    add_gaussian_noise,
    parse_noise,
)

GREY = np.full((96, 96, 3), 0.5)


def _both(model, value=0.5, n=4, size=96, seed=0):
    """Noisy NumPy image and torch batch of a flat image, as NumPy arrays."""
    image = np.full((size, size, 3), value)
    batch = torch.full((n, 3, size, size), value)
    return model(image, seed), model(batch, seed).numpy()


def test_specs_parse_to_canonical_models():
    assert parse_noise("gaussian:25") == GaussianNoise("gaussian:25", 25, 25)
    assert parse_noise(" Gaussian:15-50 ").spec == "gaussian:15-50"
    assert parse_noise("poisson:30.0").spec == "poisson:30"
    assert parse_noise("s&p:0.05").spec == "salt-pepper:0.05"
    mix = parse_noise("mix:gaussian:25+poisson:30")
    assert isinstance(mix, MixtureNoise) and [c.spec for c in mix.components] == [
        "gaussian:25",
        "poisson:30",
    ]
    assert len(parse_noise("mix").components) == 4
    assert parse_noise(parse_noise("mix").spec) == parse_noise("mix")
    model = parse_noise("speckle:0.1")
    assert parse_noise(model) is model


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("gauss:25", "Valid specs: 'gaussian:VALUE', 'poisson:VALUE'"),
        ("gaussian", "Valid specs"),
        ("gaussian:abc", "expected a positive number or a range LOW-HIGH"),
        ("gaussian:50-15", "0 < LOW <= HIGH <= 255"),
        ("gaussian:300", "0 < LOW <= HIGH <= 255"),
        ("poisson:0", "poisson takes peak"),
        ("salt-pepper:1.5", "fraction of values replaced"),
        ("mix:gaussian:25+blur:3", "'mix:' followed by components"),
        (25, "must be a string"),
    ],
)
def test_bad_specs_are_refused_with_the_valid_ones(spec, fragment):
    with pytest.raises(ValueError, match="noise spec") as info:
        parse_noise(spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_gaussian_residual_std_is_sigma_over_255(sigma):
    noisy, batch = _both(parse_noise(f"gaussian:{sigma}"))
    for out, residual in ((noisy, noisy - GREY), (batch, batch - 0.5)):
        assert out.min() >= 0 and out.max() <= 1
        assert residual.std() == pytest.approx(sigma / 255, rel=0.03)
        assert abs(residual.mean()) < 0.01


def test_add_gaussian_noise_follows_the_protocol_on_a_real_image():
    clean = img_as_float(data.immunohistochemistry()[:128, :128])
    noisy = add_gaussian_noise(clean, 25, seed=7)
    expected = random_noise(clean, mode="gaussian", var=(25 / 255) ** 2, clip=True, rng=7)
    np.testing.assert_array_equal(noisy, expected)
    # 20 log10(255 / 25) = 20.17 dB, a little higher where clipping trims the noise.
    assert 20.0 < peak_signal_noise_ratio(clean, noisy, data_range=1.0) < 21.0
    with pytest.raises(ValueError, match="sigma must be > 0"):
        add_gaussian_noise(clean, 0)


def test_gaussian_range_is_sampled_per_image_within_bounds():
    model = parse_noise("gaussian:15-50")
    batch = torch.full((64, 3, 48, 48), 0.5)
    stds = (model(batch, 1) - 0.5).flatten(1).std(dim=1).numpy() * 255
    images = np.full((64, 48, 48, 3), 0.5)
    stds_np = (model(images, 1) - 0.5).reshape(64, -1).std(axis=1) * 255
    for s in (stds, stds_np):
        assert s.min() > 15 * 0.93 and s.max() < 50 * 1.07
        assert s.max() - s.min() > 20  # really drawn per image, not once per batch


@pytest.mark.parametrize("value", [0.1, 0.3, 0.5])
def test_poisson_variance_is_x_over_peak(value):
    noisy, batch = _both(parse_noise("poisson:30"), value=value)
    for out in (noisy, batch):
        assert out.var() == pytest.approx(value / 30, rel=0.06)
        assert out.mean() == pytest.approx(value, abs=0.01)
        # Values are counts / peak.
        np.testing.assert_allclose(out * 30, np.round(out * 30), atol=1e-4)


def test_poisson_does_not_depend_on_distinct_values():
    # random_noise(mode="poisson") would scale by the number of distinct values.
    model = PoissonNoise("poisson:30", 30, 30)
    few = np.full((64, 64, 3), 0.5)
    many = few + np.linspace(0, 1e-6, few.size).reshape(few.shape)
    assert model(few, 0).var() == pytest.approx(model(many, 0).var(), rel=0.05)


@pytest.mark.parametrize("value", [0.3, 0.6])
def test_speckle_std_is_x_times_sqrt_variance(value):
    noisy, batch = _both(parse_noise("speckle:0.04"), value=value)
    for out in (noisy, batch):
        assert (out - value).std() == pytest.approx(value * 0.2, rel=0.04)


def test_salt_and_pepper_fraction_is_the_amount():
    noisy, batch = _both(parse_noise("salt-pepper:0.05"))
    for out in (noisy, batch):
        changed = out != 0.5
        assert changed.mean() == pytest.approx(0.05, rel=0.1)
        assert set(np.unique(out[changed])) == {0.0, 1.0}
        assert (out[changed] == 1).mean() == pytest.approx(0.5, abs=0.05)


def test_mixture_picks_one_component_per_image():
    model = parse_noise("mix:gaussian:25+salt-pepper:0.05")
    batch = torch.full((32, 3, 32, 32), 0.5)
    fractions = (model(batch, 3) != 0.5).flatten(1).float().mean(dim=1).numpy()
    gaussian = fractions > 0.9
    impulse = fractions < 0.1
    assert (gaussian | impulse).all()
    assert gaussian.any() and impulse.any()
    single = [np.mean(model(GREY, seed) != 0.5) for seed in range(12)]
    assert min(single) < 0.1 and max(single) > 0.9


@pytest.mark.parametrize("spec", ["gaussian:25", "poisson:30", "speckle:0.1", "mix"])
def test_seeded_reproducible_and_inputs_untouched(spec):
    model = parse_noise(spec)
    image = img_as_float(data.immunohistochemistry()[:32, :32])
    before = image.copy()
    np.testing.assert_array_equal(model(image, 5), model(image, 5))
    assert not np.array_equal(model(image, 5), model(image, 6))
    np.testing.assert_array_equal(image, before)
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    t_before = batch.clone()
    out = model(batch, 5)
    assert torch.equal(out, model(batch, 5))
    assert out.dtype == torch.float32 and out.shape == batch.shape
    assert torch.equal(batch, t_before)
    assert model(batch[0], 5).shape == batch[0].shape  # C x H x W works too
    assert model(image[..., 0], 5).shape == image.shape[:2]  # grey H x W works too


def test_bad_images_are_refused():
    model = parse_noise("gaussian:25")
    with pytest.raises(ValueError, match="float image"):
        model(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        model(np.full((8, 8, 3), 2.0))
    with pytest.raises(ValueError, match="float tensor"):
        model(torch.zeros((1, 3, 8, 8), dtype=torch.uint8))
    with pytest.raises(ValueError, match="N x C x H x W"):
        model(torch.zeros(8, 8))
