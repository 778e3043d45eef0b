"""The model a run trains: built or copied, started from given weights, and its parentage."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..lineage import parent_chunks


def prepare_model(
    model: str | nn.Module, init_weights: Any, seed: int
) -> tuple[nn.Module, str, dict[str, Any] | None]:
    """Build (or copy) the model to train and load ``init_weights`` into it.

    Returns the model, its architecture and the metadata of an ``init_weights`` file.
    """
    meta = None
    if isinstance(init_weights, (str, os.PathLike)):
        from ..checkpoint import read_weights

        state, meta = read_weights(init_weights)
    else:
        state = _init_state(init_weights)
    return (*_build(model, state, seed), meta)


def _init_state(init_weights: Any) -> dict[str, Any] | None:
    """A copy of the state of an ``init_weights`` module or state dict (None: none given)."""
    if init_weights is None:
        return None
    if not isinstance(init_weights, (nn.Module, Mapping)):
        raise ValueError(
            "init_weights must be a weights file path, a state dict or a torch.nn.Module, "
            f"got {type(init_weights).__name__}"
        )
    state = init_weights.state_dict() if isinstance(init_weights, nn.Module) else init_weights
    # Copies: the model is built around these tensors, and training must not change the
    # caller's module or state dict.
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _build(model: str | nn.Module, state: Any, seed: int) -> tuple[nn.Module, str]:
    """The model to train, from a name or a module, with ``state`` loaded when given."""
    from ..checkpoint import model_from_state_dict
    from ..models import MODELS, build_model

    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(
                f"unknown model {model!r}; valid names are {', '.join(map(repr, MODELS))}"
            )
        if state is not None:
            return model_from_state_dict(state, model).train(), model
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            return build_model(model), model
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be 'basic', 'deep' or a torch.nn.Module, got {type(model).__name__}"
        )
    net = copy.deepcopy(model).float().train()
    if state is not None:
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"init_weights do not fit the model: {exc}") from None
    return net, getattr(net, "architecture", type(net).__name__)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def describe_init(init_weights: Any) -> str | None:
    """``init_weights`` as the metadata records it: a path, or the kind of object."""
    if isinstance(init_weights, (str, os.PathLike)):
        return str(init_weights)
    return None if init_weights is None else type(init_weights).__name__


def parentage(init_weights: Any, meta: dict[str, Any] | None) -> dict[str, Any]:
    """Which weights a run started from: an ``init_weights`` file's SHA-256 and its chunks."""
    if not isinstance(init_weights, (str, os.PathLike)):
        return {"init_sha256": None, "parents": []}
    from ..files import file_sha256

    sha256 = file_sha256(init_weights)
    return {"init_sha256": sha256, "parents": parent_chunks(meta or {}, sha256)}
