"""Tissue masks: where a slide has tissue rather than white glass."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .pyramid import as_levels

#: Longest side of the low-resolution image the tissue mask is computed on.
MASK_SIDE = 2048
#: Mean brightness (fraction of the dtype's range) the bright Otsu class must reach to be
#: glass; below it the image has no background and all of it is tissue.
GLASS_BRIGHTNESS = 0.88


def tissue_mask(data: Any, *, max_side: int = MASK_SIDE) -> np.ndarray:
    """Find tissue (not white glass) on a low-resolution view of a slide.

    The largest pyramid level whose longest side is at most ``max_side`` is used (else the
    smallest level, subsampled to fit). Tissue is what is darker than
    Otsu's threshold on the smoothed grey image, grown by two pixels so that tissue edges are
    kept. If the bright class is not near white (mean below ``GLASS_BRIGHTNESS``), the image has no
    glass and all of it is tissue.

    Parameters
    ----------
    data : array-like, list of array-like, or path
        The slide (``(Y, X[, C])`` or a pyramid, level 0 first, or a file to read).
    max_side : int
        Longest side of the low-resolution image the mask is computed on.

    Returns
    -------
    numpy.ndarray of bool
        The mask, ``True`` on tissue, at a resolution of its own (map it to level 0 by the
        ratio of shapes).
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    levels = as_levels(data)
    fitting = [lv for lv in levels if max(lv.shape[:2]) <= max_side]
    low = fitting[0] if fitting else levels[-1]
    step = max(1, math.ceil(max(low.shape[:2]) / max_side))
    image = np.asarray(low[::step, ::step].compute(), dtype=np.float32)
    if np.issubdtype(low.dtype, np.integer):
        image /= np.iinfo(low.dtype).max
    grey = image[..., :3].mean(axis=-1) if image.ndim == 3 else image
    if float(grey.max() - grey.min()) < 1e-6:
        return np.full(grey.shape, grey.mean() < GLASS_BRIGHTNESS)
    grey = ndimage.gaussian_filter(grey, sigma=1.0)  # Otsu on smoothed grey: fewer specks
    threshold = threshold_otsu(grey)
    background = grey > threshold
    if grey[background].mean() < GLASS_BRIGHTNESS:
        return np.ones(grey.shape, dtype=bool)
    return ndimage.binary_dilation(~background, iterations=2)
