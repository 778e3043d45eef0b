"""Settings of the long-running jobs (denoise, train): frozen dataclasses, validated once.

The faces (napari widget, CLI) build one of these and hand it to the core; every
check happens in ``__post_init__``, so a bad value fails with a clear ValueError
before any work starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

#: Tile sides must be multiples of this (four 2x poolings in the models).
TILE_MULTIPLE = 16


#: Training modes: supervised on clean images with synthetic noise, or Neighbor2Neighbor.
TRAIN_MODES = ("synthetic", "self-supervised")
#: Named recipes (``histo-denoise train --preset NAME``); explicit arguments override them.
#: ``release`` trains the shipped weights: blind over the noise level (Gaussian and
#: Poisson-Gaussian, std 0-55 on the 8-bit scale), a tenth of the patches clean so that
#: clean tissue is left alone, 128 px patches, stain jitter, an EMA of the weights, and
#: on CUDA the largest batch that fits and torch.compile. Give it a ``minutes`` budget.
TRAIN_PRESETS: dict[str, dict[str, object]] = {
    "release": {
        "mode": "synthetic",
        "noise": "mix:gaussian:0-55+poisson-gaussian:0-55",
        "clean_fraction": 0.1,
        "patch_size": 128,
        "batch_size": None,
        "lr": 1e-3,
        "stain_jitter": 0.05,
        "ema": 0.999,
        "compile": None,
        "minutes": 60.0,
        "steps": 1_000_000,
    },
}
#: Precision names (``"auto"``: bf16 on CUDA and on CPUs with native bf16, else fp32).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: What runs the model (``"auto"``: OpenVINO on the CPU where it is installed, else torch).
BACKENDS = ("auto", "torch", "openvino")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be at least 0 and below 1, got {value!r}")


def _check_precision_and_device(precision: object, device: object) -> None:
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; valid values are {', '.join(map(repr, PRECISIONS))}"
        )
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a name such as 'auto' or 'cuda:0', got {device!r}")


#: Architecture names the engine can build from weights (``models.MODELS``, kept torch-free).
MODEL_NAMES = ("basic", "deep")


@dataclass(frozen=True, eq=False)
class DenoiseSettings:
    """Everything that says how to denoise (the image itself is separate).

    Parameters
    ----------
    model : {"basic", "deep"}, path or torch.nn.Module
        Architecture name (with ``weights``, or the package's bundled weights), a
        bioimage.io model package of one (its architecture and weights; ``model`` and
        ``weights`` then hold those after validation), or any module mapping N x 3 x H x W
        floats in [0, 1] to the same shape.
    weights : path, state dict or None
        Trained weights for a named model: a safetensors/PyTorch file, a bioimage.io
        package (``.zip``) or a state dict.
        ``None`` for a named model means the weights bundled with the package (see
        :mod:`napari_histo_denoise.pretrained`); then ``weights`` holds their checked path
        after validation. Must be ``None`` when ``model`` is a module.
    tile_size : int
        Tile side in pixels: a multiple of 16, larger than twice ``overlap``.
    overlap : int
        Pixels shared by neighbouring tiles (blended); 0 disables blending.
    batch_size : int or None
        Tiles per forward pass; ``None`` picks one from the free device memory.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision; ``"auto"`` is bf16 on CUDA and on CPUs with native bf16
        (AVX512-BF16 or AMX), fp32 elsewhere.
    backend : {"auto", "torch", "openvino"}
        What runs the model; ``"auto"`` is OpenVINO on the CPU where the optional
        ``openvino`` package is installed, else torch.
    """

    model: object = "basic"
    weights: object = None
    tile_size: int = 256
    overlap: int = 32
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.model, (str, os.PathLike)) and self.model not in MODEL_NAMES:
            self._model_from_package()
        if isinstance(self.model, str):
            if self.weights is None:
                from .pretrained import bundled_weights

                # Frozen dataclass: the one normalisation __post_init__ makes.
                object.__setattr__(self, "weights", bundled_weights(self.model))
        elif not callable(self.model):
            raise ValueError(
                f"model must be 'basic', 'deep' or a torch.nn.Module, got {type(self.model)!r}"
            )
        elif self.weights is not None:
            raise ValueError("weights are only for a named model; a module brings its own")
        check_tiling(self.tile_size, self.overlap)
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)
        _check_precision_and_device(self.precision, self.device)
        if self.backend not in BACKENDS:
            raise ValueError(
                f"unknown backend {self.backend!r}; valid values are "
                f"{', '.join(map(repr, BACKENDS))}"
            )

    def _model_from_package(self) -> None:
        """Take a bioimage.io package given as the model: its architecture, its weights."""

        def package() -> bool:
            from .checkpoint import is_package

            return os.path.isfile(self.model) and is_package(self.model)

        if self.weights is not None or not package():
            raise ValueError(
                f"unknown model {str(self.model)!r}; valid names are "
                f"{', '.join(map(repr, MODEL_NAMES))}, a bioimage.io package (.zip) of one "
                "of them, or a torch.nn.Module"
            )
        from .bmz import package_model

        # Frozen dataclass: the package stands for a name and its weights.
        object.__setattr__(self, "weights", str(self.model))
        object.__setattr__(self, "model", package_model(self.model))


@dataclass(frozen=True)
class TrainSettings:
    """Everything that says how to train (what to train, and on which images, is separate).

    Parameters
    ----------
    mode : {"synthetic", "self-supervised"}
        ``"synthetic"``: clean images, fresh synthetic ``noise`` every step, L2 loss to the
        clean patch. ``"self-supervised"``: the images are the noisy ones; Neighbor2Neighbor.
    noise : str or None
        Noise spec (see :func:`napari_histo_denoise.noise.parse_noise`), e.g. ``"gaussian:25"``
        or ``"gaussian:15-50"``. Used for the training pairs in synthetic mode and for the
        fixed-seed noisy validation copies in both modes. ``None`` only in self-supervised
        mode without validation images.
    steps : int
        Optimiser steps (the most, when ``minutes`` is set).
    minutes : float or None
        Wall-clock budget of the training steps (validation included): training stops
        when it is spent, and the learning-rate schedule follows the budget. ``None``:
        ``steps`` alone decides.
    patch_size : int
        Side of the square training patches: a multiple of 16 (of 32 in self-supervised
        mode, whose sub-images are half as large).
    batch_size : int or None
        Patches per step; ``None``: the largest power of two (at most 128) whose training
        step fits in the free memory of a CUDA device, 8 on other devices.
    lr : float
        Peak learning rate of AdamW (linear warm-up, then cosine decay to zero).
    clean_fraction : float
        Share of the patches in each batch left without noise (synthetic mode), so that
        the model learns to leave clean tissue alone.
    stain_jitter : float
        Strength of the colour augmentation: each patch's haematoxylin, eosin and DAB
        densities are scaled and shifted by up to this fraction, and its brightness
        scaled by up to this fraction (0 turns it off).
    ema : float or None
        Decay of an exponential moving average of the weights (e.g. 0.999), which is then
        what is validated and returned; ``None`` turns it off.
    freeze_batch_norm : bool
        Normalise with batch norm's running statistics while training and leave them as
        they are (its scale and shift still learn): for fine-tuning trained weights with
        batches too small for good statistics, such as a CPU's.
    compile : bool or None
        Train through ``torch.compile``; ``None``: on CUDA only.
    val_every : int or None
        Validate every this many steps (and after the last); ``None``: about ten times per run.
    val_crop : int
        Side of the validation crops (a multiple of 16; smaller images give smaller crops).
    val_crops : int
        Tissue-preferring crops per validation image.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision; ``"auto"`` is bf16 on CUDA and on CPUs with native bf16
        (AVX512-BF16 or AMX), fp32 elsewhere.
    seed : int
        Seeds the initial weights, the patches, the noise and the neighbour choice.
    """

    mode: str = "synthetic"
    noise: str | None = "gaussian:25"
    steps: int = 2000
    minutes: float | None = None
    patch_size: int = 128
    batch_size: int | None = 16
    lr: float = 1e-3
    clean_fraction: float = 0.0
    stain_jitter: float = 0.0
    ema: float | None = None
    freeze_batch_norm: bool = False
    compile: bool | None = False
    val_every: int | None = None
    val_crop: int = 256
    val_crops: int = 4
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in TRAIN_MODES:
            raise ValueError(
                f"unknown training mode {self.mode!r}; valid modes are "
                f"{', '.join(map(repr, TRAIN_MODES))}"
            )
        if self.noise is None:
            if self.mode == "synthetic":
                raise ValueError("synthetic training needs a noise spec, e.g. 'gaussian:25'")
        else:
            from .noise import parse_noise

            parse_noise(self.noise)  # raises a ValueError naming the valid specs
        for name in ("steps", "patch_size", "val_crop", "val_crops"):
            _positive_int(name, getattr(self, name))
        for name in ("batch_size", "val_every"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.minutes is not None:
            _positive_number("minutes", self.minutes)
        _fraction("clean_fraction", self.clean_fraction)
        _fraction("stain_jitter", self.stain_jitter)
        if self.ema is not None:
            _fraction("ema", self.ema)
        if not isinstance(self.freeze_batch_norm, bool):
            raise ValueError(
                f"freeze_batch_norm must be True or False, got {self.freeze_batch_norm!r}"
            )
        if self.compile not in (True, False, None):
            raise ValueError(f"compile must be True, False or None (auto), got {self.compile!r}")
        multiple = TILE_MULTIPLE * (2 if self.mode == "self-supervised" else 1)
        if self.patch_size % multiple:
            why = " (its sub-images are half as large)" if multiple > TILE_MULTIPLE else ""
            raise ValueError(
                f"patch_size must be a multiple of {multiple} in {self.mode} mode{why}, "
                f"got {self.patch_size}"
            )
        if self.val_crop % TILE_MULTIPLE:
            raise ValueError(f"val_crop must be a multiple of 16, got {self.val_crop}")
        # Batch norm needs more than one value per channel at the 1/16 bottleneck.
        side = self.patch_size // (multiple // TILE_MULTIPLE) // TILE_MULTIPLE
        if self.batch_size is not None and self.batch_size * side * side < 2:
            raise ValueError(
                f"batch_size 1 with patch_size {self.patch_size} leaves batch norm a single "
                "value per channel; use batch_size >= 2 or a larger patch"
            )
        _positive_number("lr", self.lr)
        _check_precision_and_device(self.precision, self.device)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def validation_interval(self) -> int:
        """Steps between validations: ``val_every``, or about a tenth of the run (at most 500).

        With a ``minutes`` budget and no ``val_every``, validation follows the clock
        instead (about ten times per run); this is then the step cap's tenth.
        """
        return self.val_every or max(1, min(500, self.steps // 10))


def check_tiling(tile_size: int, overlap: int) -> None:
    """Raise a ValueError unless ``tile_size`` and ``overlap`` make a valid grid.

    ``tile_size`` must be a positive multiple of 16 and larger than twice ``overlap``;
    ``overlap`` a non-negative integer.
    """
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer, got {tile_size!r}")
    if tile_size % TILE_MULTIPLE:
        raise ValueError(f"tile_size must be a multiple of {TILE_MULTIPLE}, got {tile_size}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be a non-negative integer, got {overlap!r}")
    if tile_size <= 2 * overlap:
        raise ValueError(
            f"tile_size ({tile_size}) must be larger than twice the overlap ({overlap})"
        )
