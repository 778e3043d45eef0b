"""Sample data: a noisy IHC image and the bundled CMU-1 H&E region."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Gaussian noise of the IHC sample (8-bit units) and its fixed seed, per the data protocol.
IHC_SIGMA = 25
IHC_SEED = 0

CMU1_PATH = Path(__file__).resolve().parent.parent / "data" / "cmu1_small_region.svs"


def noisy_ihc() -> list[tuple[Any, dict[str, Any], str]]:
    """Return scikit-image's IHC image with fixed Gaussian noise (sigma 25) as an RGB layer."""
    from skimage.data import immunohistochemistry
    from skimage.util import img_as_float, img_as_ubyte

    from ..noise import add_gaussian_noise

    noisy = add_gaussian_noise(img_as_float(immunohistochemistry()), IHC_SIGMA, IHC_SEED)
    meta = {"name": f"IHC (noisy, sigma {IHC_SIGMA})", "rgb": True}
    return [(img_as_ubyte(noisy), meta, "image")]


def cmu1_region() -> list[tuple[Any, dict[str, Any], str]]:
    """Return the bundled CMU-1 small-region slide (CC0) as an RGB layer with its pixel size."""
    from ..io import read_image

    data, meta = read_image(CMU1_PATH)
    kwargs: dict[str, Any] = {"name": "CMU-1 small region (H&E)", "rgb": True}
    if meta.get("mpp"):
        kwargs["scale"] = tuple(meta["scale"])
        kwargs["units"] = (meta["units"], meta["units"])
    return [(data, kwargs, "image")]
