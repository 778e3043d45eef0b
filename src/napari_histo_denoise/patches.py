"""Training patches: tissue-preferring random crops with flips and rotations; stain jitter.

Images are kept as they were given (usually uint8, possibly lazy) and only the
sampled patches are converted to float32 RGB in [0, 1], so a folder of large
slides costs no more memory than the slides themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: A pixel counts as tissue when its colour spread (max - min over RGB) reaches this...
TISSUE_CHROMA = 0.06
#: ...or when its brightest channel is below this (dark stain, nuclei, ink).
TISSUE_MAX_VALUE = 0.75


def to_float_rgb(array: object, *, name: str = "image") -> np.ndarray:
    """Return ``array`` as a new float32 H x W x 3 array in [0, 1].

    Integer images are scaled by their dtype's maximum (never per image), grey
    images are repeated to RGB, an alpha channel is dropped. Float images must
    already lie in [0, 1].

    Raises
    ------
    ValueError
        If the shape is not H x W, H x W x 3 or H x W x 4, or the dtype or value range
        is not an image's.
    """
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{name}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {data.shape}"
        )
    data = data[..., :3] if data.shape[-1] == 4 else data
    if data.dtype == bool:
        out = data.astype(np.float32)
    elif np.issubdtype(data.dtype, np.integer):
        if np.issubdtype(data.dtype, np.signedinteger) and data.size and data.min() < 0:
            raise ValueError(f"{name}: integer images must not hold negative values")
        out = data.astype(np.float32) / np.float32(np.iinfo(data.dtype).max)
    elif np.issubdtype(data.dtype, np.floating):
        out = data.astype(np.float32)  # a copy: callers' arrays are never modified
        if out.size and (not np.isfinite(out).all() or out.min() < 0 or out.max() > 1):
            raise ValueError(f"{name}: float images must hold finite values in [0, 1]")
    else:
        raise ValueError(f"{name}: unsupported dtype {data.dtype}; use uint8, uint16 or float")
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return out


def tissue_fraction(patch: np.ndarray) -> float:
    """Fraction of the pixels of a float RGB ``patch`` that look like tissue, not glass."""
    # Elementwise over the three channels: numpy's reduce over a length-3 axis is ~10x slower.
    r, g, b = patch[..., 0], patch[..., 1], patch[..., 2]
    hi = np.maximum(np.maximum(r, g), b)
    lo = np.minimum(np.minimum(r, g), b)
    return float(np.mean(((hi - lo) >= TISSUE_CHROMA) | (hi < TISSUE_MAX_VALUE)))


def augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply one of the eight flips/90-degree rotations of the square, chosen by ``rng``."""
    patch = np.rot90(patch, k=int(rng.integers(4)), axes=(0, 1))
    if rng.integers(2):
        patch = patch[:, ::-1]
    return np.ascontiguousarray(patch)


def jitter_stain(batch: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Vary each patch's staining and brightness within plausible bounds, on its device.

    Each patch's optical density is split into haematoxylin, eosin and DAB densities
    (Ruifrok and Johnston's matrix, as :func:`skimage.color.rgb2hed`); each is scaled by
    ``1 + a`` and shifted by ``b`` with ``a, b`` uniform in ``[-strength, strength]`` (the
    HED jitter of Tellez et al., 2018), recombined, and the brightness scaled by ``1 + c``,
    ``c`` likewise. Colours stay those of a stain, never an arbitrary hue; with
    ``strength`` 0 the patches come back unchanged (to float32 rounding).

    Parameters
    ----------
    batch : torch.Tensor
        N x 3 x H x W RGB floats in [0, 1], on any device (never modified).
    rng : numpy.random.Generator
        Source of the per-patch factors.
    strength : float
        The bound of ``a``, ``b`` and ``c``.

    Returns
    -------
    torch.Tensor
        A new float32 batch in [0, 1] on the same device.
    """
    import torch
    from skimage.color import hed_from_rgb, rgb_from_hed

    n = batch.shape[0]
    scale = 1 + rng.uniform(-strength, strength, (n, 3))
    shift = rng.uniform(-strength, strength, (n, 3))
    brightness = 1 + rng.uniform(-strength, strength, n)
    # The jitter is linear in optical density, so RGB density -> HED -> jittered -> RGB
    # density folds into one 3 x 3 matrix and an offset per patch.
    matrix = np.einsum("ij,nj,jk->nik", hed_from_rgb, scale, rgb_from_hed)
    offset = shift @ rgb_from_hed

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float32, device=batch.device)

    density = -torch.log(batch.float().clamp(min=1e-6))
    mixed = torch.einsum("nchw,nck->nkhw", density, tensor(matrix))
    rgb = torch.exp(-(mixed + tensor(offset)[:, :, None, None]))
    return (rgb * tensor(brightness)[:, None, None, None]).clamp_(0, 1)


@dataclass
class _Source:
    data: object  # H x W x C array-like (numpy, dask, zarr)
    name: str
    height: int
    width: int


class PatchSampler:
    """Draw square patches from a set of images, preferring tissue over background.

    Each patch comes from an image chosen with probability proportional to its
    area, at a uniformly random position. Up to ``tries`` positions are drawn; the
    first whose tissue fraction reaches ``min_tissue`` is taken, otherwise the one
    with the most tissue, so background is rare but never an error.

    Sampling only reads the sampler, so threads may sample at once (each with its own
    generator). Stain jitter is not applied here: :func:`jitter_stain` varies whole batches
    on the training device, where it costs next to nothing.

    Parameters
    ----------
    images : sequence of array-like
        H x W, H x W x 3 or H x W x 4 images (numpy, dask or zarr).
    names : sequence of str
        One name per image, for error messages.
    patch_size : int
        Side of the square patches. Images smaller than this are reflect-padded.
    min_tissue : float
        Tissue fraction at which a patch is accepted at once.
    tries : int
        Positions drawn per patch before the best one is taken.
    """

    def __init__(
        self,
        images: Sequence[object],
        names: Sequence[str],
        patch_size: int,
        *,
        min_tissue: float = 0.5,
        tries: int = 8,
    ) -> None:
        if not images:
            raise ValueError("no images to sample patches from")
        self.patch_size = patch_size
        self.min_tissue = min_tissue
        self.tries = tries
        self.sources = []
        for data, name in zip(images, names, strict=True):
            if len(data.shape) not in (2, 3):
                raise ValueError(f"{name}: expected a 2-D RGB or grey image, got {data.shape}")
            h, w = int(data.shape[0]), int(data.shape[1])
            if h < patch_size or w < patch_size:
                data = _reflect_pad(to_float_rgb(data, name=name), patch_size)
                h, w = data.shape[:2]
            self.sources.append(_Source(data, name, h, w))
        areas = np.array([s.height * s.width for s in self.sources], dtype=np.float64)
        self._weights = areas / areas.sum()

    def _crop(self, src: _Source, y: int, x: int, h: int, w: int) -> np.ndarray:
        return to_float_rgb(src.data[y : y + h, x : x + w], name=src.name)

    def _tissue_crop(self, src: _Source, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        best, best_score = None, -1.0
        for _ in range(self.tries):
            y = int(rng.integers(src.height - h + 1))
            x = int(rng.integers(src.width - w + 1))
            crop = self._crop(src, y, x, h, w)
            score = tissue_fraction(crop)
            if score >= self.min_tissue:
                return crop
            if score > best_score:
                best, best_score = crop, score
        return best

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``batch_size`` augmented patches as a float32 N x 3 x P x P array."""
        p = self.patch_size
        out = np.empty((batch_size, 3, p, p), dtype=np.float32)
        for i in range(batch_size):
            src = self.sources[int(rng.choice(len(self.sources), p=self._weights))]
            out[i] = augment(self._tissue_crop(src, p, p, rng), rng).transpose(2, 0, 1)
        return out

    def fixed_crops(self, size: int, per_image: int, seed: int, multiple: int) -> list[np.ndarray]:
        """Return ``per_image`` tissue-preferring crops of each image, the same for a given seed.

        Crops are ``size`` square, or the largest multiple of ``multiple`` that fits a
        smaller image. Used for validation, so no augmentation.
        """
        crops = []
        for index, src in enumerate(self.sources):
            h = min(size, src.height - src.height % multiple)
            w = min(size, src.width - src.width % multiple)
            if h == 0 or w == 0:
                raise ValueError(
                    f"{src.name}: {src.height} x {src.width} is smaller than {multiple} pixels"
                )
            rng = np.random.default_rng([seed, index])
            crops.extend(self._tissue_crop(src, h, w, rng) for _ in range(per_image))
        return crops


def _reflect_pad(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    # "symmetric" never needs more than one repeat per side, whatever the image size.
    while pad_h or pad_w:
        step_h, step_w = min(pad_h, image.shape[0]), min(pad_w, image.shape[1])
        image = np.pad(image, ((0, step_h), (0, step_w), (0, 0)), mode="symmetric")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return image
