"""Neighbor2Neighbor: self-supervised denoising from single noisy images.

Huang et al., "Neighbor2Neighbor: Self-Supervised Denoising from Single Noisy
Images", CVPR 2021. Each 2 x 2 cell of a noisy image gives two *different*,
adjacent pixels, chosen at random per cell; this makes two half-resolution images
``g1(y)`` and ``g2(y)`` of nearly the same content whose noise is independent
(pixel-wise independent noise assumed). The network learns ``f(g1(y)) ~ g2(y)``;
with an L2 loss the noise of the target averages out, as in Noise2Noise. A
regulariser corrects for the small content shift between the two neighbours:
the same sub-samplers applied to the denoised full image, ``g1(f(y)) - g2(f(y))``
(computed without gradient), should equal ``f(g1(y)) - g2(y)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

#: Final weight of the regulariser; it ramps up linearly from 0 (the paper's schedule).
GAMMA = 2.0

# Positions in a 2 x 2 cell, row-major: 0 1 / 2 3. Ordered pairs of edge-adjacent positions.
_PAIRS = np.array([(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2)])


def neighbour_indices(
    shape: tuple[int, ...], rng: np.random.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one random pair of adjacent positions per 2 x 2 cell of an N x C x H x W batch.

    Returns two N x 1 x H/2 x W/2 index tensors (values 0-3) that differ in every cell.
    """
    n, _, h, w = shape
    choice = _PAIRS[rng.integers(len(_PAIRS), size=(n, 1, h // 2, w // 2))]
    first = torch.from_numpy(choice[..., 0]).to(device)
    second = torch.from_numpy(choice[..., 1]).to(device)
    return first, second


def subsample(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick the pixel ``index`` of every 2 x 2 cell: N x C x H x W -> N x C x H/2 x W/2."""
    n, c, h, w = images.shape
    cells = images.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5)
    cells = cells.reshape(n, c, h // 2, w // 2, 4)
    picked = torch.gather(cells, -1, index.unsqueeze(-1).expand(n, c, -1, -1, 1))
    return picked.squeeze(-1)


def neighbor2neighbor_loss(
    model: torch.nn.Module,
    noisy: torch.Tensor,
    rng: np.random.Generator,
    gamma: float,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Compute the Neighbor2Neighbor loss of ``model`` on a batch of noisy images.

    Parameters
    ----------
    model : torch.nn.Module
        The denoiser (called on the full batch, without gradient, and on one sub-image).
    noisy : torch.Tensor
        N x 3 x H x W noisy images; H/2 and W/2 must suit the model.
    rng : numpy.random.Generator
        Chooses the neighbour pairs.
    gamma : float
        Weight of the regulariser.
    memory_format : torch.memory_format
        Layout for the model's input (channels_last on CUDA and in bf16 on the CPU).

    Returns
    -------
    torch.Tensor
        Scalar loss, float32: ``mse(f(g1), g2) + gamma * mse(f(g1) - g2, g1(f(y)) - g2(f(y)))``.
    """
    first, second = neighbour_indices(noisy.shape, rng, noisy.device)
    with torch.no_grad():
        full = model(noisy).float()
    g1 = subsample(noisy, first).contiguous(memory_format=memory_format)
    g2 = subsample(noisy, second)
    out = model(g1).float()
    target_shift = subsample(full, first) - subsample(full, second)
    return F.mse_loss(out, g2) + gamma * F.mse_loss(out - g2, target_shift)
