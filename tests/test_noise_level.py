"""The blind noise estimate: close to the true sigma on real H&E, the same from every face."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import napari_histo_denoise as hd
from napari_histo_denoise.cli import main
from napari_histo_denoise.io import read_image
from napari_histo_denoise.noise import parse_noise
from napari_histo_denoise.noise_level import CLEAN_SIGMA, estimate_noise

SLIDE = Path(hd.__file__).parent / "data" / "cmu1_small_region.svs"


@pytest.fixture(scope="module")
def he():
    """A 512 px tissue region of the bundled H&E slide, float in [0, 1]."""
    image, _ = read_image(SLIDE)
    return np.asarray(image[2200:2712, 1200:1712], dtype=np.float64) / 255


@pytest.mark.parametrize("kind", ["gaussian", "poisson-gaussian"])
@pytest.mark.parametrize("sigma", [5, 15, 25, 50])
def test_the_estimate_follows_the_true_sigma(he, kind, sigma):
    noisy = parse_noise(f"{kind}:{sigma}")(he, 0)
    estimate = estimate_noise(noisy, tiles=4, tile=128)
    # The slide's own noise floor (about 3) adds in quadrature; at sigma 50, clipping at 0
    # and 1 (this region is bright) takes up to a sixth away.
    expected = np.hypot(sigma, 3)
    low = 0.8 if sigma == 50 else 0.9
    assert low * expected < estimate.sigma < 1.1 * expected
    assert not estimate.looks_clean and len(estimate.tiles) == 4


def test_a_clean_looking_image_is_flagged(he):
    smooth = np.repeat(np.repeat(he[::4, ::4], 4, axis=0), 4, axis=1)  # no pixel noise left
    estimate = estimate_noise(smooth, tiles=4, tile=128)
    assert estimate.sigma < CLEAN_SIGMA and estimate.looks_clean
    assert "may soften detail" in estimate.describe()


def test_every_layout_and_face_gives_the_same_estimate(he, capsys):
    uint8 = (he * 255).round().astype(np.uint8)
    reference = estimate_noise(uint8)
    lazy = da.from_array(uint8, chunks=100)
    assert estimate_noise(lazy) == reference  # read lazily, tile by tile
    assert estimate_noise([lazy, lazy[::2, ::2]]) == reference  # a pyramid: level 0
    assert estimate_noise(np.stack([uint8, uint8 // 2])) == reference  # a stack: first plane
    assert hd.estimate_noise(uint8) == reference

    slide = estimate_noise(read_image(SLIDE)[0])
    assert main(["estimate-noise", str(SLIDE), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sigma"] == slide.sigma and record["looks_clean"] == slide.looks_clean
    assert main(["estimate-noise", str(SLIDE)]) == 0
    assert f"sigma {slide.sigma:.1f}" in capsys.readouterr().out


def test_bad_requests_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="tiles must be >= 1"):
        estimate_noise(np.zeros((64, 64, 3), np.uint8), tiles=0)
    with pytest.raises(ValueError, match="8 x 8 px is too small to estimate its noise"):
        estimate_noise(np.zeros((8, 8, 3), np.uint8))
    assert main(["estimate-noise", str(tmp_path / "missing.png")]) == 2
