"""Train the basic or deep model: synthetic noise on clean images, or Neighbor2Neighbor.

One implementation, two ways to drive it: :func:`iter_train` is a generator that
yields a :class:`TrainProgress` after every step and returns the
:class:`TrainResult` (the napari widget wraps it in a thread worker, the CLI drives
it with a progress bar); :func:`train` runs it to the end.

Loss: mean squared error in both modes. PSNR, the figure users compare, is a
function of the MSE, so L2 optimises it directly and its minimiser is the mean of
the clean images given the noisy one (the MMSE estimate); Neighbor2Neighbor needs
L2 as well, since only under L2 does the target's own noise average out.

The modules of this package, one job each: :mod:`.run` (one run: setup, resume, the steps
and their checkpoints), :mod:`.loop` (model, optimiser, precision and weight average of a
step), :mod:`.schedule` (the step or clock budget: learning rate, when to validate),
:mod:`.validation` (fixed noisy crops and their scores), :mod:`.history` (progress events,
history, best weights, metadata, the result), :mod:`.state` (the resumable state),
:mod:`.model` (the model to train and the weights it starts from), :mod:`.images` and
:mod:`.batches` (training images, and batches drawn ahead in threads).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Mapping
from typing import Any

import torch
from torch import nn

from ..events import cancel_check, drain
from ..settings import TrainSettings
from .history import TrainProgress, TrainResult
from .images import load_images
from .run import Run, TrainingDiverged, run_steps

__all__ = [
    "TrainProgress",
    "TrainResult",
    "TrainingDiverged",
    "iter_train",
    "load_images",
    "train",
]

Cancel = threading.Event | Callable[[], bool] | None


def train(
    images: Any,
    model: str | nn.Module = "basic",
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a model and return it with its metadata and history.

    Takes the same arguments as :func:`iter_train` and runs it to the end.

    Returns
    -------
    TrainResult
    """
    return drain(iter_train(images, model, progress=progress, **options))


def iter_train(
    images: Any,
    model: str | nn.Module = "basic",
    *,
    mode: str = "synthetic",
    noise: str | None = "gaussian:25",
    steps: int = 2000,
    minutes: float | None = None,
    patch_size: int = 128,
    batch_size: int | None = 16,
    lr: float = 1e-3,
    clean_fraction: float = 0.0,
    stain_jitter: float = 0.0,
    ema: float | None = None,
    freeze_batch_norm: bool = False,
    compile: bool | None = False,
    val_images: Any = None,
    val_every: int | None = None,
    val_crop: int = 256,
    val_crops: int = 4,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: Cancel = None,
    init_weights: str | os.PathLike | Mapping[str, torch.Tensor] | nn.Module | None = None,
    resume: str | os.PathLike | None = None,
    state: str | os.PathLike | None = None,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train a model, yielding a :class:`TrainProgress` after every step.

    The keyword arguments named like the fields of
    :class:`~napari_histo_denoise.settings.TrainSettings` mean the same (see there), so
    ``iter_train(images, **dataclasses.asdict(settings))`` runs a settings object.

    Parameters
    ----------
    images : array, path, folder, or a list of them
        Training images: numpy/dask arrays (H x W x 3, uint8, uint16 or float in [0, 1]),
        image files (PNG, JPEG, TIFF, SVS and other slides: level 0) or folders of them.
        Clean images in synthetic mode, noisy ones in self-supervised mode.
    model : {"basic", "deep"} or torch.nn.Module
        Architecture to train from scratch, or a module (a copy is trained; yours is untouched).
    val_images : same kinds as ``images``, optional
        Clean images. Fixed tissue crops of them get fixed-seed ``noise``; PSNR/SSIM of the
        model on these are measured at step 0, every ``val_every`` steps and at the end,
        and the best weights are kept and returned.
    progress : callable, optional
        Called with every :class:`TrainProgress` (as well as yielding it).
    cancel : threading.Event or callable, optional
        Checked before every step and between validation crops; when set (or returning
        True) training stops with :class:`~napari_histo_denoise.engine.Cancelled`.
    init_weights : path, state dict or torch.nn.Module, optional
        Start from these weights (fine-tune) instead of a random initialisation; the
        optimiser and the schedule start afresh.
    resume : path, optional
        Go on with an unfinished run from its state file (``state`` of that run): model,
        optimiser, schedule, step, clock, random states, weight average, best weights and
        history are restored, so the result is the one the run would have given
        uninterrupted. The images and settings must be the run's (``device``,
        ``precision`` and ``compile`` may change).
    state : path, optional
        Where to keep this run's resumable state (a safetensors file, see
        :mod:`~napari_histo_denoise.train_state`): written at every validation point
        (about ten times a run) and when the run is cancelled or its generator closed,
        deleted when the run completes.

    Returns
    -------
    TrainResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    ValueError
        For bad settings, images, model names or weights, or a ``resume`` state of
        another run (specific messages).
    Cancelled
        When ``cancel`` is set.
    TrainingDiverged
        When the loss becomes NaN or infinite.
    """
    settings = TrainSettings(
        mode=mode,
        noise=noise,
        steps=steps,
        minutes=minutes,
        patch_size=patch_size,
        batch_size=batch_size,
        lr=lr,
        clean_fraction=clean_fraction,
        stain_jitter=stain_jitter,
        ema=ema,
        freeze_batch_norm=freeze_batch_norm,
        compile=compile,
        val_every=val_every,
        val_crop=val_crop,
        val_crops=val_crops,
        device=device,
        precision=precision,
        seed=seed,
    )
    is_cancelled = cancel_check(cancel)
    if val_images is not None and settings.noise is None:
        raise ValueError("val_images need a noise spec to make their noisy copies; pass noise=")
    run = Run(settings, images, model, val_images, init_weights, resume)
    return (yield from run_steps(run, is_cancelled, progress, state))
