"""A training run's resumable state, in one safetensors file that runs no code when read.

Tensors (the model, its weight average, the best weights so far, the optimiser's
moments, the torch random states, the loss and learning rate of every step) are the
file's tensors; everything else (step, clock, the numpy generators' states, the
validation history, the best record, the settings, the image names) is one JSON
document in its header metadata. One file, written under a temporary name and
renamed, so a state on disk is always whole and never half of two different steps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .files import atomic_output, give_default_mode

#: Header-metadata key of the JSON document.
STATE_KEY = "napari_histo_denoise_train_state"
#: Version of the layout; a reader refuses others. 2: the patch stream seeds one generator
#: per batch, and the step stream also draws the stain jitter (so format 1 cannot resume).
STATE_FORMAT = 2


@dataclass
class TrainState:
    """What :func:`~napari_histo_denoise.training.iter_train` needs to go on from ``info["step"]``.

    Attributes
    ----------
    info : dict
        JSON-serialisable: ``step``, ``settings``, ``architecture``, image names,
        ``batch_size``, the clock, the generators' states, ``val`` history, ``best``.
    tensors : dict of str to torch.Tensor
        Grouped by prefix (``model.``, ``ema.``, ``best.``, ``optimizer.``, ``rng.``,
        ``history.``); see :meth:`group`.
    """

    info: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix.``, keyed by the rest of their name."""
        start = f"{prefix}."
        return {k[len(start) :]: v for k, v in self.tensors.items() if k.startswith(start)}


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` keyed ``prefix.name``, as CPU copies (what the file stores)."""
    return {f"{prefix}.{k}": v.detach().to("cpu", copy=True) for k, v in tensors.items()}


def write_state(path: str | os.PathLike, state: TrainState) -> Path:
    """Write ``state`` to ``path`` atomically (``PATH.partial``, then renamed)."""
    from safetensors.torch import save_file

    path = Path(path)
    header = json.dumps({"format": STATE_FORMAT, **state.info})
    tensors = {k: v.contiguous() for k, v in state.tensors.items()}
    with atomic_output(path) as partial:
        save_file(tensors, partial, metadata={STATE_KEY: header})
        give_default_mode(partial)
    return path


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the JSON document of a state file (cheap: no tensor is loaded).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a training state of this format.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state file {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = (handle.metadata() or {}).get(STATE_KEY)
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"{path.name} is not a training state file: {exc}") from None
    if header is None:
        raise ValueError(
            f"{path.name} is not a training state file (weights are resumed with init_weights)"
        )
    info = json.loads(header)
    if info.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{path.name} has training state format {info.get('format')}; this version reads "
            f"format {STATE_FORMAT}"
        )
    return info


def read_state(path: str | os.PathLike) -> TrainState:
    """Read a state file written by :func:`write_state` (tensors on the CPU)."""
    from safetensors.torch import load_file

    info = read_info(path)
    return TrainState(info, load_file(str(path)))
