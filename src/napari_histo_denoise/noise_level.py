"""How noisy an image is, before denoising it: a blind estimate on the 8-bit scale.

scikit-image's :func:`~skimage.restoration.estimate_sigma` (a wavelet estimate of the
standard deviation of Gaussian noise) runs on a few tissue tiles of the image, read lazily
(a whole slide costs only those tiles), and the median over the tiles is the estimate: glass
is skipped because flat background says little, and the median ignores a tile of unusual
texture. Images whose estimate is under :data:`CLEAN_SIGMA` look clean: denoising them may
soften detail more than it removes noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Below this estimate (8-bit scale) an image looks clean.
CLEAN_SIGMA = 2.0
#: The smallest plane side measured (pixels).
MIN_SIDE = 16


@dataclass(frozen=True)
class NoiseEstimate:
    """The estimated noise of an image.

    Attributes
    ----------
    sigma : float
        Median over the tiles of the estimated noise standard deviation, 0-255 scale.
    tiles : tuple of float
        The estimate of each tile.
    """

    sigma: float
    tiles: tuple[float, ...]

    @property
    def looks_clean(self) -> bool:
        """Whether the image looks clean (``sigma`` under :data:`CLEAN_SIGMA`)."""
        return self.sigma < CLEAN_SIGMA

    def describe(self) -> str:
        """One line for people: the estimate, and a word of caution when it looks clean."""
        text = f"estimated noise: sigma {self.sigma:.1f} (0-255 scale, {len(self.tiles)} tiles)"
        if self.looks_clean:
            text += "; the image looks clean: denoising may soften detail"
        return text


def estimate_noise(image: Any, *, tiles: int = 8, tile: int = 256, seed: int = 0) -> NoiseEstimate:
    """Estimate the noise of an image from a few of its tissue tiles.

    Parameters
    ----------
    image : array-like or list of array-likes
        What the engine takes (numpy, dask or zarr; grey, RGB or RGBA; uint8, uint16 or
        float in [0, 1]; any leading axes, of which the first plane is measured), or a
        pyramid (level 0 is measured).
    tiles : int
        Tissue-preferring tiles to measure.
    tile : int
        Their side in pixels (smaller images give smaller tiles).
    seed : int
        Where the tiles are: the same image and seed give the same estimate.

    Raises
    ------
    ValueError
        For an image the engine would refuse, planes under 16 x 16 px, or bad ``tiles`` /
        ``tile``.
    """
    from skimage.restoration import estimate_sigma

    from .engine import ImageLayout
    from .patches import PatchSampler

    if not isinstance(tiles, int) or tiles < 1 or not isinstance(tile, int) or tile < 16:
        raise ValueError(f"tiles must be >= 1 and tile >= 16 pixels, got {tiles} and {tile}")
    level0 = image[0] if isinstance(image, Sequence) else image  # a pyramid (napari's too)
    layout = ImageLayout.of(level0)
    if min(layout.height, layout.width) < MIN_SIDE:
        raise ValueError(
            f"an image plane of {layout.height} x {layout.width} px is too small to estimate "
            f"its noise: at least {MIN_SIDE} x {MIN_SIDE}"
        )
    plane = level0[(0,) * len(layout.leading)] if layout.leading else level0
    crops = PatchSampler([plane], ["image"], 16).fixed_crops(tile, tiles, seed, 16)
    sigmas = tuple(255 * float(np.mean(estimate_sigma(crop, channel_axis=-1))) for crop in crops)
    return NoiseEstimate(float(np.median(sigmas)), sigmas)
