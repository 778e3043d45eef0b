from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_histo_denoise.engine.tiling import (
    axis_grid,
    blend_window,
    plan_bands,
    reflect_indices,
)
from napari_histo_denoise.settings import check_tiling


def test_window_zero_outer_quarter_then_raised_cosine():
    w = blend_window(64, 16, taper_start=True, taper_end=True)
    assert w.dtype == np.float32 and w.shape == (64,)
    np.testing.assert_array_equal(w[:4], 0)  # outer quarter of the overlap: no weight
    np.testing.assert_array_equal(w[-4:], 0)
    np.testing.assert_array_equal(w[12:52], 1)
    assert np.all(np.diff(w[:16]) >= 0) and 0 < w[4] < 0.05
    np.testing.assert_allclose(w, w[::-1])


def test_window_untapered_at_image_borders():
    w = blend_window(64, 16, taper_start=False, taper_end=True)
    np.testing.assert_array_equal(w[:48], 1)
    assert w[-1] == 0
    np.testing.assert_array_equal(blend_window(32, 0, taper_start=True, taper_end=True), 1)


@pytest.mark.parametrize("overlap", [1, 2, 8, 16, 31])
def test_facing_tapers_sum_to_one(overlap):
    tile = 64
    left = blend_window(tile, overlap, taper_start=False, taper_end=True)
    right = blend_window(tile, overlap, taper_start=True, taper_end=False)
    np.testing.assert_allclose(left[tile - overlap :] + right[:overlap], 1, atol=1e-6)


@pytest.mark.parametrize("size", [1, 15, 16, 50, 64, 65, 113, 257, 1000])
def test_grid_covers_axis_with_positive_weight(size):
    grid = axis_grid(size, 64, 16)
    assert grid.tile % 16 == 0 and grid.tile <= 64
    assert grid.starts[0] == 0 and grid.starts[-1] + grid.tile == grid.padded
    assert grid.padded == max(size, grid.tile)
    assert all(b > a for a, b in itertools.pairwise(grid.starts))
    gaps = [grid.starts[i] + grid.tile - grid.starts[i + 1] for i in range(len(grid.starts) - 1)]
    assert all(gap >= 16 for gap in gaps)  # neighbours overlap at least by `overlap`
    assert grid.normaliser()[:size].min() > 0.99


def test_short_axis_gets_one_rounded_tile():
    grid = axis_grid(37, 256, 32)
    assert grid.tile == 48 and grid.starts == (0,) and grid.padded == 48


@pytest.mark.parametrize(("size", "rows"), [(64, 1), (113, 1), (257, 1), (257, 2), (1000, 3)])
def test_bands_partition_rows_and_join_only_neighbours(size, rows):
    grid = axis_grid(size, 64, 16)
    bands = plan_bands(grid, rows)
    assert bands[0].start == 0 and bands[-1].out_stop == size
    assert bands[-1].stop_tile == len(grid.starts)
    for prev, band in itertools.pairwise(bands):
        assert prev.out_stop == band.start and prev.stop_tile == band.first_tile
        assert band.seam_start == prev.stop and band.start <= band.seam_start <= band.seam_end
    for i, band in enumerate(bands):
        # no tile of a band reaches beyond the neighbouring bands
        for other in bands[: max(0, i - 1)]:
            assert other.stop <= band.start


def test_reflect_indices_match_numpy_reflect():
    data = np.arange(5)
    np.testing.assert_array_equal(
        data[reflect_indices(0, 16, 5)], np.pad(data, (0, 11), mode="reflect")
    )
    np.testing.assert_array_equal(reflect_indices(0, 4, 1), 0)


@pytest.mark.parametrize(
    ("tile", "overlap", "match"),
    [
        (250, 32, "multiple of 16"),
        (0, 0, "positive"),
        (64, 32, "larger than twice"),
        (64, -1, "non-negative"),
        (64.0, 8, "positive integer"),
    ],
)
def test_bad_tiling_is_a_clear_value_error(tile, overlap, match):
    with pytest.raises(ValueError, match=match):
        check_tiling(tile, overlap)
