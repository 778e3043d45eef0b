"""Property tests of the engine over image shapes, tile sizes and overlaps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from napari_histo_denoise.engine import denoise
from napari_histo_denoise.engine.tiling import axis_grid, plan_bands


class Identity(nn.Module):
    def forward(self, x):
        return x.clone()


class Blur(nn.Module):
    def forward(self, x):  # 9 x 9 box blur, zero padding: radius 4
        return F.conv2d(x, torch.full((3, 1, 9, 9), 1 / 81), padding=4, groups=3)


@st.composite
def tilings(draw, min_overlap=0):
    tile = draw(st.sampled_from([t for t in (16, 32, 48, 64, 96) if t > 2 * min_overlap]))
    overlap = draw(st.integers(min_overlap, (tile - 1) // 2))
    return tile, overlap


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 150),
    rgb=st.booleans(),
    tiling=tilings(),
    batch=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_identity_is_exact_for_any_grid(height, width, rgb, tiling, batch, seed):
    shape = (height, width, 3) if rgb else (height, width)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    tile, overlap = tiling
    result = denoise(image, Identity(), tile_size=tile, overlap=overlap, batch_size=batch)
    np.testing.assert_array_equal(result.compute(scheduler="sync"), image)


@settings(max_examples=15, deadline=None)
@given(
    height=st.integers(48, 200),
    width=st.integers(48, 200),
    tiling=tilings(min_overlap=16),
    seed=st.integers(0, 2**16),
)
def test_local_module_tiled_equals_whole_when_overlap_covers_its_reach(
    height, width, tiling, seed
):
    tile, overlap = tiling
    image = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    # axes shorter than a tile are reflect-padded to a multiple of 16, as the engine does
    pad = [(0, -n % 16 if n < tile else 0) for n in (height, width)] + [(0, 0)]
    with torch.inference_mode():
        whole = Blur()(torch.from_numpy(np.pad(image, pad, mode="reflect")).permute(2, 0, 1)[None])
    whole = whole[0].permute(1, 2, 0).numpy()[:height, :width]
    options = dict(tile_size=tile, overlap=overlap, precision="fp32")  # the tiling is exact
    tiled = denoise(image, Blur(), **options).compute(scheduler="sync")
    np.testing.assert_allclose(tiled, np.clip(whole, 0, 1), rtol=0, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 5000), tiling=tilings(), rows=st.integers(1, 6))
def test_grid_and_bands_cover_every_row_once(size, tiling, rows):
    tile, overlap = tiling
    grid = axis_grid(size, tile, overlap)
    assert grid.normaliser()[:size].min() > 0.99
    bands = plan_bands(grid, rows)
    covered = np.concatenate([np.arange(b.start, b.out_stop) for b in bands])
    np.testing.assert_array_equal(covered, np.arange(size))
    for i, band in enumerate(bands):
        assert band.seam_start <= min(band.seam_end, size)
        assert all(other.stop <= band.start for other in bands[: max(0, i - 1)])
