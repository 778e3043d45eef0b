"""The bundled sample slide, and noisy crops of it (or of any image) with their clean originals.

The demo, the before/after picture and the test input of an exported bioimage.io package
all cut their crop here, from the bottom half of the bundled CMU-1 H&E slide, which no
training run of the bundled weights ever saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The bundled CMU-1 small-region slide (Aperio SVS, H&E skin).
SAMPLE = Path(__file__).resolve().parent / "data" / "cmu1_small_region.svs"
#: Top-left corner (y, x) of the default crop of the bundled slide: in its bottom half,
#: epidermis (nuclei) beside dermis (collagen stroma).
SAMPLE_CROP_AT = (2500, 1330)


def noisy_crop(
    size: int,
    sigma: float,
    seed: int,
    image: Path | None = None,
    at: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Cut a square crop of level 0 of an image and add Gaussian noise to it.

    Parameters
    ----------
    size : int
        Side of the crop in pixels.
    sigma : float
        Noise std on the 0-255 scale (:func:`~napari_histo_denoise.noise.add_gaussian_noise`).
    seed : int
        Seed of the noise.
    image : pathlib.Path, optional
        A clean image or slide; default :data:`SAMPLE`.
    at : (int, int), optional
        Top-left corner (y, x); default :data:`SAMPLE_CROP_AT` for the sample, else the
        image's centre.

    Returns
    -------
    clean, noisy : numpy.ndarray
        float32 H x W x 3 in [0, 1].
    at : (int, int)
        The corner used.

    Raises
    ------
    ValueError
        If the crop does not fit the image.
    """
    from .io import read_image
    from .noise import add_gaussian_noise
    from .patches import to_float_rgb

    path = image or SAMPLE
    levels, _ = read_image(path)
    level0 = levels[0] if isinstance(levels, list) else levels
    height, width = int(level0.shape[0]), int(level0.shape[1])
    if at is None:
        at = SAMPLE_CROP_AT if image is None else ((height - size) // 2, (width - size) // 2)
    y, x = at
    if size < 16 or y < 0 or x < 0 or y + size > height or x + size > width:
        raise ValueError(
            f"a {size} px crop at y {y}, x {x} does not fit the {width} x {height} image"
        )
    clean = to_float_rgb(np.asarray(level0[y : y + size, x : x + size]), name=path.name)
    noisy = add_gaussian_noise(clean, sigma, seed=seed).astype(np.float32)
    return clean, noisy, (y, x)
