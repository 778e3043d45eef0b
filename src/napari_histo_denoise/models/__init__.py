"""The two seed architectures and the registry that builds them by name."""

from __future__ import annotations

from torch import nn

from .basic import HistoAutoencoder
from .blocks import SIZE_MULTIPLE
from .deep import DeepHistoAutoencoder

#: Architecture name -> model class.
MODELS: dict[str, type[nn.Module]] = {
    "basic": HistoAutoencoder,
    "deep": DeepHistoAutoencoder,
}


def is_package_model(model: object) -> bool:
    """Whether ``model`` is one of these architectures: a name, or an instance of its class."""
    if isinstance(model, str):
        return model in MODELS
    return type(model) in MODELS.values()


def build_model(name: str) -> nn.Module:
    """Build a freshly initialised model by architecture name.

    Parameters
    ----------
    name : str
        ``"basic"`` (U-Net with skip connections) or ``"deep"`` (ResNet + U-Net).

    Returns
    -------
    torch.nn.Module
        The model, in training mode, on the current default device.

    Raises
    ------
    ValueError
        If ``name`` is not a known architecture; the message lists the valid names.
    """
    try:
        cls = MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}; valid names are {', '.join(map(repr, MODELS))}"
        ) from None
    return cls()


__all__ = ["MODELS", "SIZE_MULTIPLE", "DeepHistoAutoencoder", "HistoAutoencoder", "build_model"]
