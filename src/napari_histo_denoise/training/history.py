"""What a run records and returns: progress events, history, best weights, metadata."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import device_name
from ..lineage import LINEAGE_KEY, chunk, lineage
from ..settings import TrainSettings
from .loop import WEIGHT_DECAY, Loop
from .model import cpu_state
from .schedule import Budget
from .validation import Validation


@dataclass(frozen=True)
class TrainProgress:
    """One training step done.

    ``val_psnr``/``val_ssim`` are the latest validation figures (None before the first),
    measured after step ``val_step``; ``fraction`` is how much of the run is done, by steps
    or by the ``minutes`` budget; ``lr`` is the learning rate of this step.
    """

    step: int
    steps: int
    loss: float
    val_psnr: float | None = None
    val_ssim: float | None = None
    elapsed_s: float = 0.0
    fraction: float = 0.0
    lr: float | None = None
    val_step: int | None = None


@dataclass
class TrainResult:
    """The trained model (best validation weights when validated), its metadata, its history.

    ``metadata`` is what :func:`napari_histo_denoise.checkpoint.save_weights` stores;
    ``history`` holds ``loss`` and ``lr`` per step and ``val``: one dict (step, psnr,
    ssim) per validation, step 0 being the initial weights.
    """

    model: nn.Module
    metadata: dict[str, Any]
    history: dict[str, list] = field(default_factory=dict)

    def save(self, path: str | os.PathLike, *, int8: bool = False) -> list[Path]:
        """Write the weights and, beside them, the report and the curves (and int8 weights).

        ``NAME.safetensors`` (see :func:`~napari_histo_denoise.checkpoint.save_weights`),
        ``NAME.json`` (metadata and history), ``NAME.curves.png`` and with ``int8``
        ``NAME.int8.safetensors`` (see :mod:`napari_histo_denoise.train_report`).

        Returns
        -------
        list of pathlib.Path
            The files written, the weights first.
        """
        from ..checkpoint import save_weights
        from ..train_report import int8_path, write_report

        weights = save_weights(path, self.model, self.metadata)
        files = [weights, *write_report(weights, self.metadata, self.history)]
        if int8:
            files.append(save_weights(int8_path(weights), self.model, self.metadata, dtype="int8"))
        return files


class Record:
    """The run's history and its best validation so far (with those weights, on the CPU)."""

    def __init__(self) -> None:
        self.history: dict[str, list] = {"loss": [], "lr": [], "val": []}
        self.best: tuple[float, float, int, dict[str, torch.Tensor]] | None = None

    def validate(
        self, step: int, validation: Validation, loop: Loop, is_cancelled: Callable[[], bool]
    ) -> None:
        psnr, ssim = validation.measure(loop, is_cancelled)
        self.history["val"].append({"step": step, "psnr": psnr, "ssim": ssim})
        if self.best is None or psnr > self.best[0]:
            self.best = (psnr, ssim, step, cpu_state(loop.evaluated))


def metadata(
    settings: TrainSettings,
    run: dict[str, Any],
    validation: Validation | None,
    best: tuple | None,
    device: torch.device,
    precision: str,
    budget: Budget,
    steps_done: int,
    batch_size: int,
) -> dict[str, Any]:
    """The metadata of a finished run, as the weights file and its report keep it."""
    meta: dict[str, Any] = {
        "architecture": run["architecture"],
        "mode": settings.mode,
        "method": "neighbor2neighbor" if settings.mode == "self-supervised" else "synthetic-noise",
        "loss": "mse",
        "noise": settings.noise,
        "clean_fraction": settings.clean_fraction,
        "steps": steps_done,
        "max_steps": settings.steps,
        "minutes": settings.minutes,
        "patch_size": settings.patch_size,
        "batch_size": batch_size,
        "lr": settings.lr,
        "optimizer": f"AdamW(weight_decay={WEIGHT_DECAY}), warm-up + cosine",
        "stain_jitter": settings.stain_jitter,
        "ema": settings.ema,
        "freeze_batch_norm": settings.freeze_batch_norm,
        "seed": settings.seed,
        "device": str(device),
        "precision": precision,
        "elapsed_s": round(budget.elapsed(), 1),
        "train_images": list(run["train_images"]),
        "init_weights": run["init_weights"],
        "init_sha256": run["init_sha256"],
        "machine": device_name(device),
    }
    if validation is not None:
        meta.update(
            val_images=validation.names,
            val_crop=settings.val_crop,
            val_crops=len(validation.clean),
            val_noisy_psnr=round(validation.noisy_psnr, 4),
            val_noisy_ssim=round(validation.noisy_ssim, 4),
            best_val_psnr=round(best[0], 4),
            best_val_ssim=round(best[1], 4),
            best_step=best[2],
        )
    meta[LINEAGE_KEY] = lineage(run["parents"], chunk(meta))
    return meta
