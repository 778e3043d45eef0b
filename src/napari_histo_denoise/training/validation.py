"""Validation during training: fixed noisy crops of clean images, and their scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..events import Cancelled
from ..patches import PatchSampler
from ..settings import TrainSettings
from .loop import Loop

#: Seed of the validation crops and their noise: the same for every run, whatever ``seed``.
VAL_SEED = 20261128


class Validation:
    """Fixed tissue crops of the validation images with fixed-seed noise, and their scores."""

    def __init__(self, arrays: list[Any], names: list[str], settings: TrainSettings) -> None:
        from ..noise import parse_noise

        sampler = PatchSampler(arrays, names, 16)  # no padding: crops fit each image
        self.names = names
        self.clean = sampler.fixed_crops(settings.val_crop, settings.val_crops, VAL_SEED, 16)
        noise = parse_noise(settings.noise)
        self.noisy = [
            noise(crop, np.random.default_rng([VAL_SEED, i])).astype(np.float32)
            for i, crop in enumerate(self.clean)
        ]
        self.noisy_psnr, self.noisy_ssim = _scores(self.clean, self.noisy)

    def measure(self, loop: Loop, is_cancelled: Callable[[], bool]) -> tuple[float, float]:
        outputs = []
        for noisy in self.noisy:
            if is_cancelled():
                raise Cancelled("training cancelled during validation")
            outputs.append(loop.predict(noisy))
        return _scores(self.clean, outputs)


def _scores(clean: list[np.ndarray], images: list[np.ndarray]) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM over image pairs (the project's metrics, on [0, 1])."""
    from ..metrics import psnr, ssim

    pairs = list(zip(clean, images, strict=True))
    return float(np.mean([psnr(c, x) for c, x in pairs])), float(
        np.mean([ssim(c, x) for c, x in pairs])
    )
