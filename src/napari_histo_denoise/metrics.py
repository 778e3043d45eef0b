"""Image-quality metrics of the project's protocol: scikit-image's, on floats in [0, 1]."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def psnr(clean: np.ndarray, image: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, ``data_range=1.0``."""
    return float(peak_signal_noise_ratio(clean, image, data_range=1.0))


def ssim(clean: np.ndarray, image: np.ndarray) -> float:
    """Structural similarity, ``data_range=1.0``; colour images (H x W x C) channel by channel."""
    channel_axis = -1 if np.ndim(clean) == 3 else None
    return float(structural_similarity(clean, image, data_range=1.0, channel_axis=channel_axis))
