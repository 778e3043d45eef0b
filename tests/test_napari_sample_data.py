"""Sample data: the noisy IHC image and the bundled CMU-1 H&E region open through napari."""

from __future__ import annotations

import numpy as np
from skimage.data import immunohistochemistry
from skimage.metrics import peak_signal_noise_ratio

from napari_histo_denoise.noise import add_gaussian_noise

PLUGIN = "napari-histo-denoise"


def test_noisy_ihc_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample(PLUGIN, "noisy_ihc")
    clean = immunohistochemistry()
    assert layer.rgb and layer.data.dtype == np.uint8 and layer.data.shape == clean.shape
    # Gaussian sigma 25 on 8-bit data: about 20 dB against the clean image, reproducibly.
    psnr = peak_signal_noise_ratio(clean, layer.data)
    assert 19.0 < psnr < 22.0
    expected = add_gaussian_noise(clean, 25, 0)
    np.testing.assert_allclose(layer.data / 255.0, expected, atol=1 / 255)


def test_cmu1_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample(PLUGIN, "cmu1_region")
    level0 = layer.data[0] if layer.multiscale else layer.data
    assert layer.rgb and tuple(level0.shape) == (2967, 2220, 3)
    # The slide records its pixel size (about 0.5 µm); the layer is placed in microns.
    assert 0.3 < layer.scale[0] < 0.7 and layer.scale[0] == layer.scale[1]
    assert str(layer.units[0]) == "micrometer"
    crop = np.asarray(level0[1000:1064, 1000:1064])
    assert crop.dtype == np.uint8 and crop.std() > 5  # real tissue, not an empty tile
